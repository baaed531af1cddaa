"""Appending to the analytics tables (analytics/): from the main job's real batch outputs and monitor runs, the
Hive layout, idempotency per run, atomicity on failure, one-line errors, and the processing-job contract."""

from __future__ import annotations

import io
import json
import re
import shutil
import tarfile
from datetime import datetime
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from analytics import ddl, scoring
from analytics.append import append_monitoring, append_scoring
from analytics.tables import DRIFT_RESULTS, MODEL_QUALITY, SCORED_RECORDS, TABLES, AnalyticsError
from tests.analytics_support import SCORED_AT, MainJob, append, main_job, rows

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def job(tmp_path_factory) -> MainJob:
    return main_job(tmp_path_factory)


def _schema(job: MainJob) -> list[dict]:
    return json.loads(job.schema.read_text())["features"]


# -- what the tables hold ----------------------------------------------------------------------------------------
def test_hive_layout_one_file_per_run_partitioned_by_date(job):
    files = sorted(p.relative_to(job.tables).as_posix() for p in job.tables.rglob("*") if p.is_file())
    assert files and all(re.fullmatch(r"(\w+)/dt=\d{4}-\d{2}-\d{2}/[\w.-]+\.parquet", f) for f in files), files
    assert {f.split("/")[0] for f in files} == set(TABLES)
    # 2 scoring runs, 4 monitor runs (each with drift rows), 2 of them with ground truth
    assert [len(list((job.tables / t).rglob("*.parquet"))) for t in TABLES] == [2, 4, 2]
    for f in files:  # the partition is the day of the row's own time
        table = pq.read_table(job.tables / f)
        column = "scored_at" if f.startswith(SCORED_RECORDS) else "monitored_at"
        days = {t.strftime("%Y-%m-%d") for t in table.column(column).to_pylist()}
        assert days == {f.split("/")[1].removeprefix("dt=")}


def test_scored_records_are_the_batch_output_with_schema_names_and_types(job):
    features = _schema(job)
    got = [r for r in rows(job.tables, SCORED_RECORDS) if r["run_id"] == "car-prices-batch-drifted"]
    lines = job.out_rows("car-prices-batch-drifted")
    assert len(got) == len(lines) == 121
    table = pq.read_table(next((job.tables / SCORED_RECORDS).rglob("car-prices-batch-drifted_*.parquet")))
    names = ["run_id", "target", "model", "record_id", *(f["name"] for f in features)]
    assert table.column_names == [*names, "prediction", "scored_at", "source_file"]
    for f in features:
        assert str(table.schema.field(f["name"]).type) == ("double" if f["type"] == "numeric" else "string")
    by_id = {r["record_id"]: r for r in got}
    for line in lines:
        r = by_id[line[0]]
        assert r["model"] == "xgboost" and r["target"] == job.target("car-prices-batch-drifted")
        assert r["prediction"] == float(line[-1])
        for f, value in zip(features, line[1:-1], strict=True):
            assert r[f["name"]] == (float(value) if f["type"] == "numeric" else value)
        assert r["scored_at"] == datetime(2026, 12, 1, 10, 0, 0) and r["source_file"] == "scoring-drifted.csv.out"


def test_drift_results_one_row_per_feature_per_run_with_the_violations(job):
    got = rows(job.tables, DRIFT_RESULTS)
    features = [f["name"] for f in _schema(job)]
    runs = {r["run_id"] for r in got}
    assert len(runs) == 4 and len(got) == 4 * len(features)
    drifted = [r for r in got if r["target"] == job.target("car-prices-batch-drifted")]
    assert sorted(r["feature"] for r in drifted) == sorted(features)
    violated = [r for r in got if r["violated"]]
    assert [(r["target"], r["feature"], r["check_type"]) for r in violated] == [
        (job.target("car-prices-batch-drifted"), "mileage", "baseline_drift_check")
    ]
    # the numbers are the monitor's own: its constraint_violations.json states distance and threshold
    (v,) = json.loads((job.runs / "batch-drifted" / "constraint_violations.json").read_text())["violations"]
    distance, threshold = map(float, re.search(r"distance: (.+) exceeds threshold: (.+)", v["description"]).groups())
    assert (violated[0]["distance"], violated[0]["threshold"]) == (distance, threshold)
    assert violated[0]["description"] == v["description"] and violated[0]["target_type"] == "batch_job"
    report = job.report("batch-drifted")
    assert violated[0]["monitored_at"].strftime("%Y-%m-%dT%H:%M:%SZ") == report["completed_at"]
    assert violated[0]["records"] == report["records"] == 121
    realtime = [r for r in got if r["target_type"] == "endpoint"]
    assert {r["target"] for r in realtime} == {"cars-xgboost", "cars-linear"}
    assert all(r["window_start"] < r["window_end"] for r in realtime)


def test_model_quality_one_row_per_metric_per_run_with_ground_truth(job):
    got = rows(job.tables, MODEL_QUALITY)
    assert sorted({r["target"] for r in got}) == ["cars-linear", "cars-xgboost"]
    for algorithm in ("xgboost", "linear"):
        stats = json.loads((job.runs / f"realtime-{algorithm}" / "model_quality" / "statistics.json").read_text())
        constraints = job.report(f"realtime-{algorithm}")["model_quality"]["constraints"]
        mine = {r["metric"]: r for r in got if r["target"] == f"cars-{algorithm}"}
        assert set(mine) == set(stats["regression_metrics"]) == {"mae", "mse", "rmse", "r2"}
        for metric, m in stats["regression_metrics"].items():
            assert mine[metric]["value"] == m["value"]
            assert mine[metric]["threshold"] == constraints[metric]["threshold"]
            assert mine[metric]["comparison_operator"] == constraints[metric]["comparison_operator"]
            assert mine[metric]["violated"] is False and mine[metric]["item_count"] == 121


# -- idempotent, atomic -----------------------------------------------------------------------------------------
def _copy(job: MainJob, tmp_path: Path) -> Path:
    tables = tmp_path / "tables"
    shutil.copytree(job.tables, tables)
    return tables


def _snapshot(tables: Path) -> dict[str, bytes]:
    return {p.relative_to(tables).as_posix(): p.read_bytes() for p in sorted(tables.rglob("*")) if p.is_file()}


def test_appending_the_same_runs_again_replaces_their_rows(job, tmp_path):
    tables = _copy(job, tmp_path)
    before = {t: len(rows(tables, t)) for t in TABLES}
    a = append_scoring(tables, job.out_file("car-prices-batch"), job.schema, run_id="car-prices-batch",
                       model="xgboost", scored_at=datetime.fromisoformat(SCORED_AT["car-prices-batch"]))  # fmt: skip
    assert (a.rows, a.replaced) == (121, 1)
    done = append_monitoring(tables, job.runs)
    assert [d.replaced for d in done] == [1] * 6
    assert {t: len(rows(tables, t)) for t in TABLES} == before
    assert sorted(_snapshot(tables)) == sorted(_snapshot(job.tables))  # same files, no extra


def test_a_rerun_on_another_day_moves_the_run_instead_of_duplicating_it(job, tmp_path):
    tables = _copy(job, tmp_path)
    append_scoring(tables, job.out_file("car-prices-batch"), job.schema, run_id="car-prices-batch", model="xgboost",
                   scored_at=datetime(2026, 12, 3, 8, 0))  # fmt: skip
    got = [r for r in rows(tables, SCORED_RECORDS) if r["run_id"] == "car-prices-batch"]
    assert len(got) == 121 and {r["scored_at"].day for r in got} == {3}
    assert not (tables / SCORED_RECORDS / "dt=2026-11-30").exists()  # the emptied partition is gone too


def test_the_same_run_id_of_the_other_model_is_another_run(job, tmp_path):
    tables = _copy(job, tmp_path)
    append_scoring(tables, job.out_file("car-prices-batch"), job.schema, run_id="car-prices-batch", model="linear")
    got = [r for r in rows(tables, SCORED_RECORDS) if r["run_id"] == "car-prices-batch"]
    assert sorted({r["model"] for r in got}) == ["linear", "xgboost"] and len(got) == 242


def test_a_bad_line_fails_naming_it_and_leaves_the_tables_as_they_were(job, tmp_path, monkeypatch):
    tables = _copy(job, tmp_path)
    before = _snapshot(tables)
    lines = job.out_file("car-prices-batch").read_text().splitlines()
    lines[100] = lines[100].replace(lines[100].split(",")[1], "lots", 1)  # mileage of line 101
    bad = tmp_path / "in" / "scoring.csv.out"
    bad.parent.mkdir()
    bad.write_text("\n".join(lines) + "\n")
    monkeypatch.setattr(scoring, "BLOCK", 1024)  # many blocks: some are written before the bad one is read
    with pytest.raises(AnalyticsError) as e:
        append_scoring(tables, bad.parent, job.schema, run_id="car-prices-batch", model="xgboost",
                       scored_at=datetime(2026, 11, 30, 10))  # fmt: skip
    assert str(e.value) == f"file {bad}, line 101, column 2 (mileage): expected a number, received 'lots'"
    assert _snapshot(tables) == before  # the run's earlier rows intact, no partial or temporary file


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (lambda f: f[:-1], "line 3: expected 10 fields (record id, 8 features as schema.json lists them, prediction), "
                           "received 9"),
        (lambda f: [*f[:-1], "inf"], "line 3, column 10 (prediction): expected a number, received 'inf'"),
        (lambda f: [*f[:-1], ""], "line 3, column 10 (prediction): the prediction is empty"),
        (lambda f: ["", *f[1:]], "line 3, column 1 (record id): the record id is empty"),
    ],
)  # fmt: skip
def test_errors_are_one_line_naming_file_line_and_column(job, tmp_path, edit, expected):
    lines = job.out_rows("car-prices-batch")[:5]
    lines[2] = edit(lines[2])
    bad = tmp_path / "x.out"
    bad.write_text("".join(",".join(r) + "\n" for r in lines))
    with pytest.raises(AnalyticsError) as e:
        append_scoring(tmp_path / "tables", bad, job.schema, run_id="r", model="xgboost")
    assert str(e.value) == f"file {bad}, {expected}"
    assert not [p for p in (tmp_path / "tables").rglob("*") if p.is_file() or p.name.startswith("dt=")]


def test_an_empty_out_file_beside_others_is_skipped_and_alone_is_refused(job, tmp_path):
    folder = tmp_path / "out"
    folder.mkdir()
    (folder / "empty.csv.out").write_text("")
    with pytest.raises(AnalyticsError, match=r"empty\.csv\.out: no records$"):
        append_scoring(tmp_path / "tables", folder, job.schema, run_id="r", model="xgboost")
    shutil.copy(job.out_file("car-prices-batch"), folder / "scoring.csv.out")
    assert append_scoring(tmp_path / "tables", folder, job.schema, run_id="r", model="xgboost").rows == 121


def test_schema_from_a_model_tarball_and_refused_schemas(job, tmp_path):
    tarball = tmp_path / "model.tar.gz"
    with tarfile.open(tarball, "w:gz") as tar:
        tar.add(job.schema, arcname="schema.json")
    assert scoring.load_schema(tarball) == scoring.load_schema(job.schema) == scoring.load_schema(job.schema.parent)
    doc = json.loads(job.schema.read_text())
    doc["features"][0]["name"] = "prediction"
    clash = tmp_path / "clash.json"
    clash.write_text(json.dumps(doc))
    with pytest.raises(AnalyticsError, match=r"^file .*clash.json: feature name 'prediction' is a column"):
        scoring.load_schema(clash)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(AnalyticsError, match=r"holds neither schema\.json nor model\.tar\.gz"):
        scoring.load_schema(empty)
    with tarfile.open(tmp_path / "other.tar.gz", "w:gz") as tar:
        info = tarfile.TarInfo("xgboost-model.json")
        tar.addfile(info, io.BytesIO(b""))
    with pytest.raises(AnalyticsError, match=r"holds no schema\.json"):
        scoring.load_schema(tmp_path / "other.tar.gz")


def test_a_monitor_run_without_new_data_appends_nothing_and_a_failed_one_is_refused(job, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(job.runs / "batch", run)
    doc = job.report("batch")
    (run / "monitoring_report.json").write_text(json.dumps({**doc, "status": "NoNewData", "features": []}))
    assert append_monitoring(tmp_path / "tables", run) == []
    assert not list((tmp_path / "tables").rglob("*.parquet"))
    (run / "monitoring_report.json").write_text(json.dumps({**doc, "status": "Failed"}))
    with pytest.raises(AnalyticsError, match=r"monitoring_report.json: status 'Failed'"):
        append_monitoring(tmp_path / "tables", run)
    with pytest.raises(AnalyticsError, match="--run-id names one run, but it holds 4 monitor runs"):
        append_monitoring(tmp_path / "tables", job.runs, run_id="x")


# -- the processing job ---------------------------------------------------------------------------------------
def _processing_tree(job: MainJob, base: Path) -> Path:
    """/opt/ml as a processing job sees it: the .out under input/scoring, the model under input/model."""
    inp = base / "processing" / "input"
    shutil.copytree(job.out_file("car-prices-batch").parent, inp / "scoring")
    shutil.copytree(job.schema.parent, inp / "model")
    shutil.copytree(job.runs / "realtime-xgboost", inp / "monitoring")
    return base


def test_processing_job_paths_and_exit_message(job, tmp_path):
    base = _processing_tree(job, tmp_path / "opt_ml")
    env = {"SAGEMAKER_BASE_DIR": str(base), "PATH": "/usr/bin:/bin"}
    proc = append("scoring", "--run-id", "job-1", "--model", "xgboost", "--scored-at", "2026-12-01T00:00:00Z", env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("scored_records: appended 121 rows -> ")
    assert (base / "output" / "message").read_text() == proc.stdout.strip()
    assert len(list((base / "processing" / "tables" / SCORED_RECORDS / "dt=2026-12-01").glob("*.parquet"))) == 1
    proc = append("monitoring", "--run-id", "monitor-1", env=env)
    assert proc.returncode == 0, proc.stderr
    assert [r["run_id"] for r in rows(base / "processing" / "tables", MODEL_QUALITY)] == ["monitor-1"] * 4


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["scoring", "--run-id", "j", "--model", "ridge"], "argument --model: invalid choice: 'ridge'"),
        (["scoring", "--model", "linear"], "the following arguments are required: --run-id"),
        (["scoring", "--run-id", "j", "--model", "linear", "--scored-at", "yesterday"], "--scored-at: expected an ISO"),
        (["monitoring", "--input", "/nonexistent/runs"], "file /nonexistent/runs: does not exist"),
    ],
)
def test_bad_arguments_exit_1_with_one_line(tmp_path, args, expected):
    (tmp_path / "output").mkdir()
    proc = append(*args, env={"SAGEMAKER_BASE_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 1 and proc.stdout == ""
    (line,) = proc.stderr.strip().splitlines()
    assert expected in line
    assert expected in (tmp_path / "output" / "message").read_text()


# -- the Athena DDL ---------------------------------------------------------------------------------------------
def test_athena_ddl_is_generated_from_the_written_schemas(job):
    checked_in = (REPO / "analytics" / "athena.sql").read_text()
    assert checked_in == ddl.ddl(job.schema), (
        "stale: python -m analytics.ddl --schema <schema.json> > analytics/athena.sql"
    )
    for table in TABLES:
        m = re.search(rf"CREATE EXTERNAL TABLE IF NOT EXISTS {table} \((.*?)\n\)", checked_in, re.S)
        declared = re.findall(r"`(\w+)` (\w+)", m.group(1))
        written = pq.read_schema(next((job.tables / table).rglob("*.parquet")))
        assert declared == [(f.name, ddl.hive_type(f.type)) for f in written]
        assert f"LOCATION 's3://<bucket>/<prefix>/{table}/'" in checked_in
    assert checked_in.count("PARTITIONED BY (dt string)") == 3 and "MSCK REPAIR TABLE" in checked_in
