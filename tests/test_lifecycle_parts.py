"""The lifecycle's small parts without running it: the gate and registry, job path mapping, the data files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lifecycle import data
from lifecycle.progress import StepFailed
from lifecycle.registry import APPROVED, KEPT, REJECTED, Registry
from pipelines.local.jobs import JobResult, ProcessingJob


def training_dir(root: Path, model_bytes: bytes, rmse: float) -> tuple[Path, dict]:
    (root / "model").mkdir(parents=True)
    (root / "model" / "xgboost-model.json").write_bytes(model_bytes)
    (root / "model" / "schema.json").write_text("{}")
    (root / "model" / "metadata.json").write_text(json.dumps({"trained_at": str(root)}))  # differs per run
    evaluation = {
        "regression_metrics": {m: {"value": rmse if m == "rmse" else 1.0} for m in ("rmse", "mae", "mse", "r2")}
    }
    (root / "output" / "data").mkdir(parents=True)
    (root / "output" / "data" / "evaluation.json").write_text(json.dumps(evaluation))
    return root, evaluation


def gate(registry: Registry, root: Path, model: bytes, rmse: float, threshold: float = 4000, data_hash: str = "d1"):
    path, evaluation = training_dir(root, model, rmse)
    return registry.gate("xgboost", path, evaluation, threshold=threshold, data_hash=data_hash, runner="local")


def test_first_model_is_approved_and_copied_into_a_version_folder(tmp_path):
    reg = Registry(tmp_path / "reg" / "registry.json")
    d = gate(reg, tmp_path / "run1", b"model-a", 2500)
    assert d.status == APPROVED and "first model" in d.reason
    assert d.version_dir == tmp_path / "reg" / "registry-models" / "xgboost" / "v0001"
    assert (d.version_dir / "model" / "xgboost-model.json").read_bytes() == b"model-a"
    assert (d.version_dir / "evaluation.json").is_file()
    doc = json.loads((tmp_path / "reg" / "registry.json").read_text())
    assert doc["best"] == {"xgboost": 1}
    [entry] = doc["entries"]
    assert entry["model_dir"] == "registry-models/xgboost/v0001/model"  # relative to the registry file
    assert entry["metrics"]["rmse"] == 2500 and entry["data_hash"] == "d1" and entry["status"] == APPROVED
    assert entry["model_hash"].startswith("sha256:") and entry["time"].endswith("Z")


def test_identical_model_is_kept_without_a_new_version(tmp_path):
    reg = Registry(tmp_path / "registry.json")
    gate(reg, tmp_path / "run1", b"model-a", 2500)
    d = gate(Registry(tmp_path / "registry.json"), tmp_path / "run2", b"model-a", 2500)  # metadata.json differs
    assert d.status == KEPT
    assert d.reason == "equal to the best (v1, same model files): kept the existing one"
    assert d.serving["version"] == 1
    assert not (tmp_path / "registry-models" / "xgboost" / "v0002").exists()
    doc = json.loads((tmp_path / "registry.json").read_text())
    assert [e["status"] for e in doc["entries"]] == [APPROVED, KEPT]


def test_better_or_equal_model_becomes_the_new_best(tmp_path):
    reg = Registry(tmp_path / "registry.json")
    gate(reg, tmp_path / "run1", b"model-a", 2500)
    d = gate(reg, tmp_path / "run2", b"model-b", 2500)
    assert d.status == APPROVED and "not worse than the previous best v1 (2,500.0)" in d.reason
    assert d.serving["version"] == 2
    d = gate(reg, tmp_path / "run3", b"model-c", 2400, data_hash="d2")
    assert d.status == APPROVED and d.serving["version"] == 3
    assert "(the best was trained on other data)" in d.reason


def test_worse_model_is_rejected_and_the_best_stays(tmp_path):
    reg = Registry(tmp_path / "registry.json")
    gate(reg, tmp_path / "run1", b"model-a", 2500)
    d = gate(reg, tmp_path / "run2", b"model-b", 2600)
    assert d.status == REJECTED
    assert d.reason == "test RMSE 2,600.0 is worse than the previous best v1 (2,500.0)"
    assert d.serving["version"] == 1
    doc = json.loads((tmp_path / "registry.json").read_text())
    assert doc["best"] == {"xgboost": 1}
    assert doc["entries"][-1]["model_dir"] == str(tmp_path / "run2" / "model")  # not copied


def test_threshold_rejects_even_the_first_model(tmp_path):
    reg = Registry(tmp_path / "registry.json")
    d = gate(reg, tmp_path / "run1", b"model-a", 2500, threshold=1)
    assert d.status == REJECTED and d.reason == "test RMSE 2,500.0 exceeds the threshold 1.0"
    assert d.serving is None and d.version_dir is None


def test_versions_never_reuse_a_folder_left_behind(tmp_path):
    (tmp_path / "registry-models" / "xgboost" / "v0004").mkdir(parents=True)  # the registry file was deleted
    d = gate(Registry(tmp_path / "registry.json"), tmp_path / "run1", b"model-a", 2500)
    assert d.serving["version"] == 5


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "line 1, column 2: not valid JSON"),
        ('{"best": []}', "expected an object with 'best' and 'entries'"),
    ],
)
def test_unreadable_registry_is_one_line(tmp_path, content, message):
    path = tmp_path / "registry.json"
    path.write_text(content)
    with pytest.raises(StepFailed, match=message):
        Registry(path)


def test_missing_model_folder_of_the_best_is_reported(tmp_path):
    reg = Registry(tmp_path / "registry.json")
    d = gate(reg, tmp_path / "run1", b"model-a", 2500)
    import shutil

    shutil.rmtree(d.version_dir)
    with pytest.raises(StepFailed, match=r"xgboost v1's model folder .* is gone"):
        Registry(tmp_path / "registry.json").best("xgboost")


def test_processing_paths_map_to_host_folders(tmp_path):
    job = ProcessingJob(
        "monitor",
        tmp_path / "opt_ml",
        inputs={"dataset": tmp_path / "capture", "baseline": tmp_path / "base"},
        outputs={"resultdata": tmp_path / "out"},
    )
    assert job.to_host("/opt/ml/processing/input/dataset") == str(tmp_path / "capture")
    assert job.to_host("/opt/ml/processing/input/baseline/statistics.json") == str(tmp_path / "base/statistics.json")
    assert job.to_host("/opt/ml/processing/resultdata") == str(tmp_path / "out")
    assert job.to_host("/opt/ml/output/failure") == str(tmp_path / "opt_ml/output/failure")
    assert job.to_host("/opt/ml/processing/input/datasetX") == str(tmp_path / "opt_ml/processing/input/datasetX")
    assert job.to_host('{"csv": {"header": false}}') == '{"csv": {"header": false}}'
    job.prepare()  # host folders and the mount points inside /opt/ml exist before docker would create them
    assert (tmp_path / "out").is_dir() and (tmp_path / "opt_ml/processing/input/dataset").is_dir()
    assert not (tmp_path / "capture").exists()  # inputs are never created


def test_job_reason_names_host_paths(tmp_path):
    (tmp_path / "output").mkdir()
    (tmp_path / "output" / "failure").write_text("file /opt/ml/processing/input/data/x.csv, line 3: bad\ntrace\n")
    result = JobResult("preprocess", 1, "log", tmp_path, ((Path("/home/u/raw"), "/opt/ml/processing/input/data"),))
    assert result.reason() == "file /home/u/raw/x.csv, line 3: bad"
    assert JobResult("x", 1, "a\nlast words\n\n", tmp_path / "none").reason() == "last words"


def test_scoring_and_drifted_rows(tmp_path):
    split_dir = tmp_path / "test"
    split_dir.mkdir()
    schema = {
        "version": 1,
        "target": "price",
        "features": [
            {"name": "mileage", "type": "numeric"},
            {"name": "make", "type": "categorical", "levels": ["Buick", "Saab, Inc"]},
        ],
    }
    (split_dir / "schema.json").write_text(json.dumps(schema))
    (split_dir / "test.csv").write_text('100.5,8221,Buick\n200,,"Saab, Inc"\n')
    split = data.Split.read(split_dir, "test")
    assert split.labels == ["100.5", "200"]
    assert split.records() == [{"mileage": 8221, "make": "Buick"}, {"mileage": None, "make": "Saab, Inc"}]
    path = data.write_scoring(split, tmp_path / "scoring.csv")
    assert path.read_text() == 'car-0001,8221,Buick\ncar-0002,,"Saab, Inc"\n'
    assert data.drifted_rows(split) == [["31442", "Buick"], ["", "Saab, Inc"]]  # 8221 * 2 + 15000


def test_ground_truth_layout(tmp_path):
    from datetime import UTC, datetime

    path = data.write_ground_truth({"test-0001": "16339.17"}, tmp_path, datetime(2024, 3, 5, 7, 5, tzinfo=UTC))
    assert path.parent == tmp_path / "2024" / "03" / "05" / "07"
    assert json.loads(path.read_text()) == {
        "groundTruthData": {"data": "16339.17", "encoding": "CSV"},
        "eventMetadata": {"eventId": "test-0001"},
        "eventVersion": "0",
    }
