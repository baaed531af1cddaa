"""The README's example queries (analytics/queries.sql) run in DuckDB on the tables the main job produced, and
answer what they promise: the drifted batch's mileage violation leads back to its records."""

from __future__ import annotations

import json
import re
import shutil
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from analytics import query
from analytics.append import append_scoring
from tests.analytics_support import MainJob, main_job


@pytest.fixture(scope="module")
def job(tmp_path_factory) -> MainJob:
    return main_job(tmp_path_factory)


@pytest.fixture(scope="module")
def con(job):
    return query.connect(job.tables)


def named(con, name: str) -> list[dict]:
    columns, rows = query.run_named(con, name)
    return [dict(zip(columns, r, strict=True)) for r in rows]


def _mileage(row: list[str]) -> float:
    return float(row[1])  # mileage is the first feature: the .out is id, features in schema order, prediction


def test_views_are_the_tables_with_dt_as_a_string(con):
    assert [r[0] for r in con.execute("SHOW TABLES").fetchall()] == ["drift_results", "model_quality", "scored_records"]
    assert con.execute("SELECT DISTINCT typeof(dt) FROM scored_records").fetchall() == [("VARCHAR",)]
    assert con.execute("SELECT COUNT(*) FROM scored_records").fetchone() == (242,)


def test_drifted_features(con, job):
    (v,) = json.loads((job.runs / "batch-drifted" / "constraint_violations.json").read_text())["violations"]
    distance = float(re.search(r"distance: (\S+) exceeds", v["description"]).group(1))
    got = named(con, "drifted_features")
    assert [(r["target"], r["feature"], r["check_type"], r["distance"], r["threshold"]) for r in got] == [
        (job.target("car-prices-batch-drifted"), "mileage", "baseline_drift_check", round(distance, 4), 0.1)
    ]
    assert got[0]["monitored_at"].strftime("%Y-%m-%dT%H:%M:%SZ") == job.report("batch-drifted")["completed_at"]


def test_drift_over_time(con, job):
    got = {r["feature"]: r for r in named(con, "drift_over_time")}
    assert set(got) == {f["name"] for f in json.loads(job.schema.read_text())["features"]}
    assert (got["mileage"]["violating_runs"], got["mileage"]["runs"]) == (1, 4)
    assert got["mileage"]["max_distance"] > 0.5 and got["mileage"]["threshold"] == 0.1
    assert all(r["violating_runs"] == 0 for f, r in got.items() if f != "mileage")


def test_drift_alert_leads_back_to_the_drifted_batch_records(con, job):
    got = named(con, "drift_alert_records")
    lines = job.out_rows("car-prices-batch-drifted")
    top = sorted(lines, key=lambda r: (-_mileage(r), r[0]))[:10]
    assert [(r["record_id"], r["mileage"], r["prediction"]) for r in got] == [
        (line[0], _mileage(line), round(float(line[-1]), 2)) for line in top
    ]
    assert {(r["target"], r["model"]) for r in got} == {(job.target("car-prices-batch-drifted"), "xgboost")}


def test_mileage_by_batch(con, job):
    run_of = {job.target(run_id): run_id for run_id in ("car-prices-batch", "car-prices-batch-drifted")}
    got = {run_of[r["target"]]: r for r in named(con, "mileage_by_batch")}
    assert {k: (r["model"], r["records"], r["mileage_drifted"]) for k, r in got.items()} == {
        "car-prices-batch": ("xgboost", 121, False),
        "car-prices-batch-drifted": ("xgboost", 121, True),
    }
    for run_id, r in got.items():
        lines = job.out_rows(run_id)
        assert r["mean_mileage"] == round(sum(map(_mileage, lines)) / len(lines))
    # the drift: mileage x2 + 15,000
    assert got["car-prices-batch-drifted"]["mean_mileage"] > 2 * got["car-prices-batch"]["mean_mileage"]


def test_prediction_trend(con, job):
    got = named(con, "prediction_trend")
    assert [(r["model"], r["day"], r["records"]) for r in got] == [
        ("xgboost", "2026-11-30", 121),
        ("xgboost", "2026-12-01", 121),
    ]
    predictions = [float(line[-1]) for line in job.out_rows("car-prices-batch")]
    assert got[0]["mean_prediction"] == round(sum(predictions) / len(predictions))
    assert (got[0]["min_prediction"], got[0]["max_prediction"]) == (round(min(predictions)), round(max(predictions)))


def test_model_quality_per_run(con, job):
    got = named(con, "model_quality_per_run")
    assert [(r["target"], r["metric"]) for r in got] == [
        (t, m) for t in ("cars-linear", "cars-xgboost") for m in ("mae", "mse", "r2", "rmse")
    ]
    for algorithm in ("xgboost", "linear"):
        stats = json.loads((job.runs / f"realtime-{algorithm}" / "model_quality" / "statistics.json").read_text())
        rmse = next(r for r in got if r["target"] == f"cars-{algorithm}" and r["metric"] == "rmse")
        assert rmse["value"] == round(stats["regression_metrics"]["rmse"]["value"], 4) and rmse["violated"] is False


def test_the_alert_join_keeps_to_the_monitoring_window(job, tmp_path):
    """A real-time run has a window: only records scored inside it are the ones behind its drift."""
    tables = tmp_path / "tables"
    shutil.copytree(job.tables, tables)
    report = job.report("realtime-xgboost")
    start, end = (datetime.fromisoformat(report["window"][k]).replace(tzinfo=None) for k in ("start", "end"))
    for run_id, when in (("inside", start), ("before", start - timedelta(days=1)), ("after", end + timedelta(days=1))):
        append_scoring(tables, job.out_file("car-prices-batch-drifted"), job.schema, run_id=run_id,
                       model="xgboost", target="cars-xgboost", scored_at=when)  # fmt: skip
    con = query.connect(tables)
    # flag the real-time run's mileage as violated, as a drifted endpoint would
    con.execute(
        "CREATE TABLE flagged AS SELECT * REPLACE (violated OR (feature = 'mileage' AND target = 'cars-xgboost') "
        "AS violated) FROM drift_results"
    )
    con.execute("CREATE OR REPLACE VIEW drift_results AS SELECT * FROM flagged")
    sql = query.queries()["drift_alert_records"].sql.replace("LIMIT 10", "")
    got = query.run(con, sql)[1]
    per_target = {t: sum(1 for r in got if r[1] == t) for t in {r[1] for r in got}}
    # the drifted batch's records, and the endpoint's scored inside its window only (not "before", not "after")
    assert per_target == {job.target("car-prices-batch-drifted"): 121, "cars-xgboost": 121}


def test_every_documented_query_has_a_test_here():
    assert set(query.queries()) == {
        "drifted_features", "drift_over_time", "drift_alert_records", "mileage_by_batch", "prediction_trend",
        "model_quality_per_run",
    }  # fmt: skip


def test_query_cli_prints_every_named_query(job, capsys):
    assert query.main(["--tables", str(job.tables)]) == 0
    out = capsys.readouterr().out
    for name in query.queries():
        assert f"-- {name}: " in out
    assert job.target("car-prices-batch-drifted") in out


def test_the_readme_documents_every_query_and_the_ddl_file():
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = readme[readme.index("## Analytics tables") : readme.index("## Benchmarks")]
    for name in query.queries():
        assert f"| `{name}` |" in section
    assert "`analytics/athena.sql`" in section and "| `analytics/` |" in readme
