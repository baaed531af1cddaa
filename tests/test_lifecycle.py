"""The main job end to end: `python -m lifecycle` as a subprocess on the bundled real data.

One run (session fixture) is inspected by most tests: its first step is the training state machine, executed
once per algorithm. A run with a tiny threshold has nothing deployed (exit 1). Every path of the state machine
itself is tested in tests/test_pipelines_training.py. The Docker runner runs once, marked ``container`` (skipped
without an engine or the images, except in CI).
"""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
TIMEOUT = 300


@dataclass(frozen=True)
class Run:
    returncode: int
    stdout: str
    stderr: str
    workdir: Path

    @property
    def summary(self) -> dict:
        return json.loads((self.workdir / "summary.json").read_text())


def lifecycle(workdir: Path, *args: str, env: dict[str, str] | None = None) -> Run:
    proc = subprocess.run(
        [sys.executable, "-m", "lifecycle", "--workdir", str(workdir), *args],
        cwd=REPO,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    return Run(proc.returncode, proc.stdout, proc.stderr, workdir)


@pytest.fixture(scope="session")
def first(tmp_path_factory) -> Run:
    root = tmp_path_factory.mktemp("lifecycle")
    # two instances per monitor job: the sharded monitor and the merge job run in the main test (the Docker
    # runner's run below keeps the default one)
    return lifecycle(root / "work", "--runner", "local", "--monitor-instances", "2")


def test_first_run_completes_every_step(first):
    assert first.returncode == 0, first.stdout + first.stderr
    assert "Traceback" not in first.stdout + first.stderr
    out = first.stdout
    assert "runner:   local processes (requested with --runner local)" in out
    for n in range(1, 6):
        assert f"[{n}/5] " in out
    assert out.count("      -> ") == 5  # one result line per step, with its time
    assert "Artifacts:" in out and "Done in" in out


def test_both_models_deployed_by_the_training_state_machine(first):
    pipeline = first.summary["pipeline"]
    for algorithm in ("xgboost", "linear"):
        run = pipeline[algorithm]
        assert run["status"] == "SUCCEEDED"
        assert run["notifications"] == [f"cars {algorithm} model deployed"]
        states = [name for name, _ in run["states"]]
        assert states[:4] == ["Name the run", "Another run in progress?", "Proceed?", "Preprocess data"]
        assert states[-1] == "Deployed"
        assert "Create endpoint" in states
        record = run["deployment"]
        assert record["EndpointName"] == f"cars-{algorithm}" and 0 < record["Rmse"] <= 4000
        assert f"  {'Train model':<30}" in first.stdout
    model = {"xgboost": "xgboost-model.json", "linear": "linear-model.json"}
    for algorithm, name in model.items():
        assert (first.workdir / "models" / algorithm / "model" / name).is_file()
    assert pipeline["xgboost"]["deployment"]["Rmse"] == pytest.approx(2366.1, abs=0.1)  # seeded split and training


def test_combined_answer_is_the_max_of_both(first):
    rt = first.summary["realtime"]
    preds = rt["predictions"]
    assert len(preds) == 5
    for p in preds:
        assert p["score"] == max(p["xgboost"], p["linear"])
    assert any(p["xgboost"] > p["linear"] for p in preds) or any(p["linear"] > p["xgboost"] for p in preds)
    # the printed table shows the same numbers
    rows = [line.split() for line in first.stdout.splitlines() if line.strip().startswith(("Buick", "Pontiac"))]
    assert rows, first.stdout
    for row in rows:
        xgb, lin, combined = (float(v.replace(",", "")) for v in row[-3:])
        assert combined == max(xgb, lin)


def test_realtime_requests_are_captured_where_sagemaker_would(first):
    test_rows = (first.workdir / "splits" / "test" / "test.csv").read_text().splitlines()
    for endpoint in ("cars-xgboost", "cars-linear"):
        files = sorted((first.workdir / "capture" / endpoint / "AllTraffic").rglob("*.jsonl"))
        assert files
        for f in files:  # <endpoint>/<variant>/yyyy/mm/dd/hh/
            parts = f.relative_to(first.workdir / "capture" / endpoint / "AllTraffic").parts
            assert len(parts) == 5 and [len(p) for p in parts[:4]] == [4, 2, 2, 2]
        lines = [json.loads(line) for f in files for line in f.read_text().splitlines()]
        assert len(lines) == len(test_rows) + 3  # one per test record, plus the 3 combiner requests
        ids = [rec["eventMetadata"].get("inferenceId") for rec in lines]
        labelled = sorted(i for i in ids if i and i.startswith("test-"))
        assert labelled == [f"test-{i:04d}" for i in range(1, len(test_rows) + 1)]
        # the combiner's 3 requests carry API Gateway's request id as their InferenceId
        assert len([i for i in ids if i and not i.startswith("test-")]) == 3
        encodings = {rec["captureData"]["endpointInput"]["encoding"] for rec in lines}
        assert encodings == {"CSV", "JSON"}  # the endpoint config lists JSON Lines as a JSON content type
        assert all(rec["eventVersion"] == "0" for rec in lines)
    truth = list((first.workdir / "ground_truth").rglob("*.jsonl"))
    assert len(truth) == 1 and len(truth[0].read_text().splitlines()) == len(test_rows)


def test_both_models_score_the_files_with_ids_kept(first):
    test_rows = (first.workdir / "splits" / "test" / "test.csv").read_text().splitlines()
    outputs = first.summary["batch"]
    assert sorted(outputs) == ["scoring", "scoring-drifted"]
    for models in outputs.values():
        assert sorted(models) == ["linear", "xgboost"]
        for path in models.values():
            rows = list(csv.reader(Path(path).read_text().splitlines()))
            assert [r[0] for r in rows] == [f"car-{i:04d}" for i in range(1, len(test_rows) + 1)]
            assert all(math.isfinite(float(r[-1])) for r in rows)  # the linear model may go negative on drift
    scored = list(csv.reader(Path(outputs["scoring"]["xgboost"]).read_text().splitlines()))
    assert all(float(r[-1]) > 0 for r in scored)
    assert [r[1:-1] for r in scored] == [r.split(",")[1:] for r in test_rows if '"' not in r]
    assert "car-0001," in first.stdout


def test_drift_is_found_on_the_drifted_batch_only_and_starts_the_retraining(first):
    mon = first.summary["monitoring"]

    def drifted(run: str) -> set[str]:
        return {
            v["feature_name"] for v in mon[run]["violations"] if v["constraint_check_type"] == "baseline_drift_check"
        }

    for algorithm in ("xgboost", "linear"):
        assert "mileage" in drifted(f"batch-{algorithm}-scoring-drifted")
        assert "mileage" not in drifted(f"batch-{algorithm}-scoring")
        assert "mileage" not in drifted(f"realtime-{algorithm}")
        # model quality ran on the captures joined with ground truth through the inference ids
        mq = mon[f"realtime-{algorithm}"]["model_quality"]
        assert mq["item_count"] == 121
        deployed_rmse = first.summary["pipeline"][algorithm]["deployment"]["Rmse"]
        assert mq["metrics"]["rmse"]["value"] == pytest.approx(deployed_rmse, rel=1e-4)  # = the test split's rmse
        # with the default 25 % tolerance the unchanged real-time traffic raises no model-quality violation
        assert mq["violations"] == []
        assert mon[f"batch-{algorithm}-scoring"]["model_quality"] is None
    for run in mon:  # two instances each (--monitor-instances 2), merged by the follow-up job
        hosts = first.workdir / "monitoring" / "runs" / run / "hosts"
        assert sorted(p.parent.name for p in hosts.glob("*/profile_state.json")) == ["algo-1", "algo-2"], run
    assert "drifted batch, mileage: Baseline drift distance:" in first.stdout
    execution = first.summary["monitoring_execution"]
    assert execution["drift"] is True
    drift_alerts = sorted(s.split(":")[0] for s in execution["notifications"] if s.startswith("Drift on "))
    assert [a.split("-score-")[0] for a in drift_alerts] == ["Drift on cars-linear", "Drift on cars-xgboost"]
    assert "cars monitoring: drift, retraining started" in execution["notifications"]
    assert [(r["status"], r["end"]) for r in execution["retraining"]] == [("SUCCEEDED", "Deployed")] * 2


def test_the_readme_queries_answer_on_the_main_jobs_tables(first):
    """The analytics tables the pipelines appended, queried with DuckDB as Athena would query them."""
    from analytics import query

    con = query.connect(first.workdir / "analytics")
    names = set(query.queries())
    assert {"drifted_features", "drift_alert_records", "prediction_trend", "model_quality_per_run"} <= names
    _, drifted = query.run_named(con, "drifted_features")
    assert {(r[2], r[3]) for r in drifted} == {("mileage", "baseline_drift_check")}  # the drifted batch only
    assert {r[1].split("-score-")[0] for r in drifted} == {"cars-xgboost", "cars-linear"}
    columns, records = query.run_named(con, "drift_alert_records")
    record = dict(zip(columns, records[0], strict=True))
    scored = list(csv.reader(Path(first.summary["batch"]["scoring-drifted"][record["model"]]).read_text().splitlines()))
    behind = {r[0]: r for r in scored}[record["record_id"]]
    assert float(behind[1]) == record["mileage"]  # from the alert back to the record that caused it
    assert max(float(r[1]) for r in scored) == record["mileage"]  # highest mileage first
    for name in names:  # every documented query runs on these tables
        query.run_named(con, name)
    _, quality = query.run_named(con, "model_quality_per_run")
    assert quality and all(r for r in quality)
    assert "analytics query drift_alert_records" in first.stdout


def test_report_exists(first):
    index = Path(first.summary["report"])
    assert index == first.workdir / "monitoring" / "report" / "index.html"
    html = index.read_text()
    for target in ("cars-xgboost", "cars-linear"):
        assert f"<td>{target}</td>" in html
    assert html.count("<td>cars-xgboost-score-") == 2 and html.count("<td>cars-linear-score-") == 2  # 2 files each
    assert len(list((index.parent / "runs").glob("run-*.html"))) == 6
    for name in ("realtime-xgboost", "batch-xgboost-scoring-drifted"):  # and each monitor run's own page
        assert (first.workdir / "monitoring" / "runs" / name / "report.html").is_file()
    assert str(index) in first.stdout


def test_nothing_deployed_fails_the_pipeline_step(tmp_path):
    run = lifecycle(tmp_path / "work", "--runner", "local", "--rmse-threshold", "1")
    assert run.returncode == 1
    last = run.stderr.strip().splitlines()[-1]
    assert last.startswith(
        "lifecycle: step 1 (pipeline) failed: the xgboost training pipeline deployed nothing (FAILED)"
    )
    assert "is above the threshold 1" in last
    assert "cars xgboost model rejected: RMSE above threshold" in run.stdout
    assert "Traceback" not in run.stdout + run.stderr
    assert "[2/5]" not in run.stdout


def test_bad_data_fails_the_first_step_with_the_culprit(tmp_path):
    bad = tmp_path / "cars.csv"
    bad.write_text("price,mileage,make\n1,2,Buick\n,3,Saab\n")
    run = lifecycle(tmp_path / "work", "--runner", "local", "--data", str(bad))
    assert run.returncode == 1
    last = run.stderr.strip().splitlines()[-1]
    assert last.startswith("lifecycle: step 1 (pipeline) failed: the xgboost training pipeline deployed nothing")
    # the processing job's ExitMessage, through DescribeProcessingJob and the Catch, into the SNS message
    assert "cars.csv, line 3, column 1 (price)" in last
    assert "Traceback" not in run.stderr


def test_refuses_to_wipe_a_folder_it_did_not_make(tmp_path):
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "thesis.tex").write_text("keep me")
    run = lifecycle(precious, "--runner", "local")
    assert run.returncode == 1
    assert "exists, is not empty and was not made by this command" in run.stderr.strip().splitlines()[-1]
    assert (precious / "thesis.tex").read_text() == "keep me"


# -- the Docker runner -------------------------------------------------------------------------------------------
@pytest.mark.container
def test_docker_runner_runs_the_images(tmp_path):
    from tests.container.conftest import IMAGES, unavailable

    if shutil.which("docker") is None:
        unavailable("no docker CLI on PATH")
    if subprocess.run(["docker", "info"], capture_output=True, timeout=30, check=False).returncode != 0:
        unavailable("no Docker engine reachable; start one: scripts/services.sh start docker")
    missing = [
        i
        for i in IMAGES.values()
        if subprocess.run(["docker", "image", "inspect", i], capture_output=True, check=False).returncode
    ]
    if missing:
        unavailable(f"images not built: {', '.join(missing)}; build them with scripts/build_push.sh --no-push")
    # This run's containers, by the label the Docker runner puts on each (not every container of the engine).
    run_id = f"test-{uuid.uuid4().hex}"
    label = f"byoc.lifecycle.run={run_id}"
    events = subprocess.Popen(  # --since: events from before it subscribed count too
        ["docker", "events", "--since", str(int(time.time()) - 1), "--filter", "type=container",
         "--filter", "event=create", "--filter", f"label={label}", "--format", "{{.Actor.Attributes.name}}"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        run = lifecycle(tmp_path / "work", "--runner", "docker", env={"BYOC_RUN_ID": run_id})
    finally:
        events.terminate()
    created = events.communicate(timeout=30)[0].split()

    assert run.returncode == 0, run.stdout + run.stderr
    assert "runner:   docker (Docker engine" in run.stdout
    summary = run.summary
    assert summary["runner"] == "docker"
    assert {p["status"] for p in summary["pipeline"].values()} == {"SUCCEEDED"}
    drifted = summary["monitoring"]["batch-xgboost-scoring-drifted"]["violations"]
    assert "mileage" in {v["feature_name"] for v in drifted}
    assert Path(summary["report"]).is_file()
    assert created and all(name.startswith("lifecycle-") for name in created)  # the jobs and endpoints ran there
    left = subprocess.run(["docker", "ps", "-aq", "--filter", f"label={label}"], capture_output=True, text=True)
    assert left.stdout.split() == []  # every container of this run removed
    # the same entry points in the images and as local processes: identical models
    local = lifecycle(tmp_path / "local", "--runner", "local")
    assert local.returncode == 0, local.stderr
    for algorithm, name in {"xgboost": "xgboost-model.json", "linear": "linear-model.json"}.items():
        files = [w / "models" / algorithm / "model" / name for w in (tmp_path / "work", tmp_path / "local")]
        assert files[0].read_bytes() == files[1].read_bytes()
