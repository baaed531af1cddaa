"""`docker run byoc-monitor tables ...` as a SageMaker Processing job: the main job's batch output and monitor run
mounted under /opt/ml/processing/input, the tables written to /opt/ml/processing/tables, ExitMessage in
/opt/ml/output/message. The image carries no duckdb: the tables it writes are read back here, on the host."""

from __future__ import annotations

import shutil

import pytest

from analytics import query
from tests.analytics_support import main_job

pytestmark = pytest.mark.container


def volumes(base):
    return [
        (base / "input", "/opt/ml/processing/input", "ro"),
        (base / "tables", "/opt/ml/processing/tables", "rw"),
        (base / "message", "/opt/ml/output", "rw"),
    ]


@pytest.fixture
def job_dirs(tmp_path_factory, tmp_path):
    job = main_job(tmp_path_factory)
    for d in ("tables", "message"):
        (tmp_path / d).mkdir()
    shutil.copytree(job.out_file("car-prices-batch-drifted").parent, tmp_path / "input" / "scoring")
    shutil.copytree(job.schema.parent, tmp_path / "input" / "model")
    shutil.copytree(job.runs / "batch-drifted", tmp_path / "input" / "monitoring")
    (tmp_path / "target").write_text(job.target("car-prices-batch-drifted"))
    return tmp_path


def main_job_target(job_dirs) -> str:
    """The batch job the monitor named for the drifted batch, so the scored records join its drift rows."""
    return (job_dirs / "target").read_text()


def test_tables_jobs_in_the_monitor_image(images, containers, job_dirs):
    target = main_job_target(job_dirs)
    scoring = ["tables", "scoring", "--run-id", "car-prices-batch-drifted", "--model", "xgboost",
               "--scored-at", "2026-12-01T10:00:00Z", "--target", target]  # fmt: skip
    for args in (scoring, ["tables", "monitoring"]):
        run = containers.run(images["monitor"], args, volumes=volumes(job_dirs))
        assert run.returncode == 0, run.output
        assert (job_dirs / "message" / "message").read_text() == run.stdout.strip()
    columns, rows = query.run_named(query.connect(job_dirs / "tables"), "drift_alert_records")
    assert len(rows) == 10 and {r[columns.index("target")] for r in rows} == {target}


def test_a_bad_file_exits_1_with_the_culprit_in_the_exit_message(images, containers, job_dirs):
    out = next((job_dirs / "input" / "scoring").glob("*.out"))
    out.write_text(out.read_text().replace(",sedan,", ",sedan,extra,", 1))
    run = containers.run(images["monitor"], ["tables", "scoring", "--run-id", "r", "--model", "linear"],
                         volumes=volumes(job_dirs))  # fmt: skip
    assert run.returncode == 1, run.output
    message = (job_dirs / "message" / "message").read_text()
    assert message.startswith(f"file /opt/ml/processing/input/scoring/{out.name}, line ") and "received 11" in message
    assert not list((job_dirs / "tables").rglob("*.parquet"))
