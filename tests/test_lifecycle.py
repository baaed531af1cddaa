"""The main job end to end: `python -m lifecycle` as a subprocess on the bundled real data.

One run with a fresh registry (session fixture) is inspected by most tests; a second run on the same registry
shows the gate keeping the identical model, a run with a tiny threshold shows rejections (served: the registry's
best, exit 0), and a fresh registry with a tiny threshold has nothing to serve (exit 1). The Docker runner runs
once, marked ``container`` (skipped without an engine or the images, except in CI).
"""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
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
    registry: Path

    @property
    def summary(self) -> dict:
        return json.loads((self.workdir / "summary.json").read_text())


def lifecycle(workdir: Path, registry: Path, *args: str) -> Run:
    proc = subprocess.run(
        [sys.executable, "-m", "lifecycle", "--workdir", str(workdir), "--registry", str(registry), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    return Run(proc.returncode, proc.stdout, proc.stderr, workdir, registry)


@pytest.fixture(scope="session")
def first(tmp_path_factory) -> Run:
    root = tmp_path_factory.mktemp("lifecycle")
    return lifecycle(root / "work", root / "registry.json", "--runner", "local")


@pytest.fixture(scope="session")
def second(first, tmp_path_factory) -> Run:
    """The same command again, on the registry of the first run."""
    assert first.returncode == 0, first.stderr
    return lifecycle(tmp_path_factory.mktemp("second") / "work", first.registry, "--runner", "local")


def test_first_run_completes_every_step(first):
    assert first.returncode == 0, first.stdout + first.stderr
    assert "Traceback" not in first.stdout + first.stderr
    out = first.stdout
    assert "runner:   local processes (requested with --runner local)" in out
    for n in range(1, 9):
        assert f"[{n}/8] " in out
    assert out.count("      -> ") == 8  # one result line per step, with its time
    assert "Artifacts:" in out and "Done in" in out


def test_both_models_approved_and_registered(first):
    assert "xgboost  APPROVED  test RMSE" in first.stdout
    assert "linear   APPROVED  test RMSE" in first.stdout
    gate = first.summary["gate"]
    assert {a: g["status"] for a, g in gate.items()} == {"xgboost": "approved", "linear": "approved"}
    doc = json.loads(first.registry.read_text())
    assert doc["best"] == {"xgboost": 1, "linear": 1}
    for entry in doc["entries"]:
        model_dir = first.registry.parent / entry["model_dir"]
        assert (model_dir / "schema.json").is_file()
        assert entry["metrics"]["rmse"] <= 4000
    assert (first.registry.parent / "registry-models" / "xgboost" / "v0001" / "model" / "xgboost-model.json").is_file()
    assert (first.registry.parent / "registry-models" / "linear" / "v0001" / "model" / "linear-model.json").is_file()


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
    for endpoint in ("car-prices-xgboost", "car-prices-linear"):
        files = sorted((first.workdir / "capture" / endpoint / "AllTraffic").rglob("*.jsonl"))
        assert files
        for f in files:  # <endpoint>/<variant>/yyyy/mm/dd/hh/
            parts = f.relative_to(first.workdir / "capture" / endpoint / "AllTraffic").parts
            assert len(parts) == 5 and [len(p) for p in parts[:4]] == [4, 2, 2, 2]
        lines = [json.loads(line) for f in files for line in f.read_text().splitlines()]
        assert len(lines) == len(test_rows) + 3  # one per test record, plus the 3 combiner requests
        ids = [rec["eventMetadata"].get("inferenceId") for rec in lines]
        assert sorted(i for i in ids if i) == [f"test-{i:04d}" for i in range(1, len(test_rows) + 1)]
        encodings = {rec["captureData"]["endpointInput"]["encoding"] for rec in lines}
        assert encodings == {"CSV", "JSON", "BASE64"}  # application/jsonlines is not a listed content type
        assert all(rec["eventVersion"] == "0" for rec in lines)
    truth = list((first.workdir / "ground_truth").rglob("*.jsonl"))
    assert len(truth) == 1 and len(truth[0].read_text().splitlines()) == len(test_rows)


def test_batch_output_has_ids_and_one_line_per_record(first):
    test_rows = (first.workdir / "splits" / "test" / "test.csv").read_text().splitlines()
    out = first.workdir / "batch" / "output" / "scoring.csv.out"
    rows = list(csv.reader(out.read_text().splitlines()))
    assert len(rows) == len(test_rows)
    assert [r[0] for r in rows] == [f"car-{i:04d}" for i in range(1, len(test_rows) + 1)]
    assert all(len(r) == 2 and float(r[1]) > 0 for r in rows)
    assert "car-0001," in first.stdout
    joined = list(csv.reader((first.workdir / "batch" / "joined" / "scoring.csv.out").read_text().splitlines()))
    assert [r[-1] for r in joined] == [r[1] for r in rows]  # same predictions, whole record kept for the monitor
    assert [r[1:-1] for r in joined] == [r.split(",")[1:] for r in test_rows if '"' not in r]


def test_drift_is_found_on_the_drifted_batch_only(first):
    mon = first.summary["monitoring"]

    def drifted(run: str) -> set[str]:
        return {
            v["feature_name"] for v in mon[run]["violations"] if v["constraint_check_type"] == "baseline_drift_check"
        }

    assert "mileage" in drifted("batch-drifted")
    assert "mileage" not in drifted("batch")
    assert "mileage" not in drifted("realtime-xgboost")
    assert "drifted batch, mileage: Baseline drift distance:" in first.stdout
    # model quality ran on the captures joined with ground truth through the inference ids
    for algorithm in ("xgboost", "linear"):
        mq = mon[f"realtime-{algorithm}"]["model_quality"]
        assert mq["item_count"] == 121
        gate_rmse = first.summary["gate"][algorithm]["rmse"]
        assert mq["metrics"]["rmse"]["value"] == pytest.approx(gate_rmse, rel=1e-4)  # = the test split's rmse
    assert mon["batch"]["model_quality"] is None
    # with the default 25 % tolerance the unchanged real-time traffic raises no model-quality violation
    assert mon["realtime-xgboost"]["model_quality"]["violations"] == []
    assert mon["realtime-xgboost"]["violations"] == [] and mon["batch"]["violations"] == []
    evaluated = {e["run"]: e for e in first.summary["evaluate"]}
    assert evaluated["batch-drifted"]["drift_detected"] and "mileage" in evaluated["batch-drifted"]["features"]
    assert (first.workdir / "monitoring" / "runs" / "batch-drifted" / "sns_message.json").is_file()


def test_report_exists(first):
    index = Path(first.summary["report"])
    assert index == first.workdir / "monitoring" / "report" / "index.html"
    html = index.read_text()
    for target in ("car-prices-xgboost", "car-prices-linear", "car-prices-batch", "car-prices-batch-drifted"):
        assert f"<td>{target}</td>" in html
    assert len(list((index.parent / "runs").glob("run-*.html"))) == 4
    for name in ("realtime-xgboost", "batch-drifted"):  # and each monitor run's own page
        assert (first.workdir / "monitoring" / "runs" / name / "report.html").is_file()
    assert str(index) in first.stdout


def test_second_run_keeps_the_identical_models(second):
    assert second.returncode == 0, second.stdout + second.stderr
    assert "xgboost  KEPT      equal to the best (v1, same model files): kept the existing one" in second.stdout
    assert "linear   KEPT      equal to the best (v1, same model files): kept the existing one" in second.stdout
    doc = json.loads(second.registry.read_text())
    assert doc["best"] == {"xgboost": 1, "linear": 1}
    assert [e["status"] for e in doc["entries"]][-2:] == ["kept", "kept"]
    assert not (second.registry.parent / "registry-models" / "xgboost" / "v0002").exists()


def test_tiny_threshold_rejects_and_serves_the_registry_best(second, tmp_path):
    # --quality-tolerance 0 in the same run: Model Monitor's own suggestion (the validation metrics) as thresholds
    args = ("--runner", "local", "--rmse-threshold", "1", "--quality-tolerance", "0")
    run = lifecycle(tmp_path / "work", second.registry, *args)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "xgboost  REJECTED  test RMSE" in run.stdout and "exceeds the threshold 1.0; serving v1" in run.stdout
    assert "notification (the pipeline's SNS topic): xgboost model rejected: test RMSE" in run.stdout
    assert run.summary["gate"]["xgboost"]["serving_version"] == 1
    doc = json.loads(second.registry.read_text())
    assert doc["best"] == {"xgboost": 1, "linear": 1}
    assert [e["status"] for e in doc["entries"]][-2:] == ["rejected", "rejected"]
    # the test split's xgboost rmse (~2,366) is above its validation rmse (~2,063): flagged without tolerance
    mq = run.summary["monitoring"]["realtime-xgboost"]["model_quality"]
    assert "rmse" in {v["metric_name"] for v in mq["violations"]}
    evaluated = {e["run"]: e for e in run.summary["evaluate"]}
    assert evaluated["realtime-xgboost"]["alerted"] and "rmse" in evaluated["realtime-xgboost"]["features"]


def test_no_approved_model_fails_the_gate_step(tmp_path):
    run = lifecycle(tmp_path / "work", tmp_path / "registry.json", "--runner", "local", "--rmse-threshold", "1")
    assert run.returncode == 1
    last = run.stderr.strip().splitlines()[-1]
    assert last.startswith("lifecycle: step 3 (gate) failed: no approved xgboost or linear model: xgboost test RMSE")
    assert "holds no earlier approved one" in last
    assert "Traceback" not in run.stdout + run.stderr
    assert "[4/8]" not in run.stdout


def test_bad_data_fails_the_first_step_with_the_culprit(tmp_path):
    bad = tmp_path / "cars.csv"
    bad.write_text("price,mileage,make\n1,2,Buick\n,3,Saab\n")
    run = lifecycle(tmp_path / "work", tmp_path / "registry.json", "--runner", "local", "--data", str(bad))
    assert run.returncode == 1
    last = run.stderr.strip().splitlines()[-1]
    assert last.startswith("lifecycle: step 1 (preprocess) failed: file ")
    assert "cars.csv, line 3, column 1 (price)" in last
    assert "Traceback" not in run.stderr


def test_refuses_to_wipe_a_folder_it_did_not_make(tmp_path):
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "thesis.tex").write_text("keep me")
    run = lifecycle(precious, tmp_path / "registry.json", "--runner", "local")
    assert run.returncode == 1
    assert "exists, is not empty and was not made by this command" in run.stderr.strip().splitlines()[-1]
    assert (precious / "thesis.tex").read_text() == "keep me"


def test_registry_inside_the_workdir_is_a_usage_error(tmp_path):
    run = lifecycle(tmp_path / "work", tmp_path / "work" / "registry.json", "--runner", "local")
    assert run.returncode == 2
    assert "is inside --workdir" in run.stderr


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
    before = set(subprocess.run(["docker", "ps", "-aq"], capture_output=True, text=True, check=True).stdout.split())

    run = lifecycle(tmp_path / "work", tmp_path / "registry.json", "--runner", "docker")

    assert run.returncode == 0, run.stdout + run.stderr
    assert "runner:   docker (Docker engine" in run.stdout
    summary = run.summary
    assert summary["runner"] == "docker"
    assert {g["status"] for g in summary["gate"].values()} == {"approved"}
    assert "mileage" in {v["feature_name"] for v in summary["monitoring"]["batch-drifted"]["violations"]}
    assert Path(summary["report"]).is_file()
    after = set(subprocess.run(["docker", "ps", "-aq"], capture_output=True, text=True, check=True).stdout.split())
    assert after <= before  # every container removed
    # the same entry points in the images and as local processes: byte-identical models
    local = lifecycle(tmp_path / "local", tmp_path / "registry.json", "--runner", "local")
    assert local.returncode == 0, local.stderr
    assert {g["status"] for g in local.summary["gate"].values()} == {"kept"}
