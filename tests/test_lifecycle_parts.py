"""The lifecycle's small parts without running it: job path mapping, the data files."""

from __future__ import annotations

import json
from pathlib import Path

from lifecycle import data
from pipelines.local.jobs import JobResult, ProcessingJob


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
    assert path.read_text() == 'id,mileage,make\ncar-0001,8221,Buick\ncar-0002,,"Saab, Inc"\n'
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
