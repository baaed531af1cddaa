"""The monitor image on two hosts, as SageMaker Processing runs a job with InstanceCount 2 and a ShardedByS3Key
dataset input: two byoc-monitor containers, each with its own /opt/ml/config (resourceconfig.json naming both
hosts, processingjobconfig.json) and its share of the capture files, run at the same time; their output folders
are uploaded to one prefix (here: copied into one folder, which fails on any file both would write); then the
image's ``merge`` over that prefix, compared with one container that read every file."""

from __future__ import annotations

import json
import shutil
import time
from datetime import timedelta
from pathlib import Path

import pytest

from harness import capturegen
from tests.container.conftest import IMAGES, RUN_TIMEOUT, Containers, docker, logs, state, unavailable
from tests.test_monitoring_support import (
    PROCESSING,
    PROCESSING_ENV,
    START,
    assert_same_result,
    cars,
    features,
    make_baseline,
    predictions,
    read,
)

pytestmark = pytest.mark.container

HOSTS = ("algo-1", "algo-2")
K = "128"  # small enough that 2,400 records compact the sketches: the comparison is against the bound
ENV = {**PROCESSING_ENV, "kll_k": K}


@pytest.fixture
def monitor_image(docker_engine) -> str:
    image = IMAGES["monitor"]
    if docker("image", "inspect", image, check=False).returncode:
        unavailable(f"image not built: {image}; build it with scripts/build_push.sh --no-push --images monitor")
    return image


def _frame():
    frame = cars().sample(n=2400, replace=True, random_state=5).reset_index(drop=True)
    frame["mileage"] = frame["mileage"] * 2 + 15_000  # drifted, so that there are violations to compare
    return frame


def _job(root: Path, host: str, hosts: tuple[str, ...], files: list[Path], capture_root: Path, base: Path) -> Path:
    """One host's /opt/ml as SageMaker Processing lays it out for this job."""
    config = root / "config"
    config.mkdir(parents=True)
    (config / "resourceconfig.json").write_text(json.dumps({"current_host": host, "hosts": list(hosts)}))
    inputs = [
        {"InputName": name, "S3Input": {"LocalPath": path, "S3DataDistributionType": kind}}
        for name, path, kind in (
            ("dataset", ENV["dataset_source"], "ShardedByS3Key"),
            ("baseline", f"{PROCESSING}/input/baseline", "FullyReplicated"),
        )
    ]
    (config / "processingjobconfig.json").write_text(json.dumps({"ProcessingInputs": inputs}))
    for f in files:
        dest = root / "input" / "dataset" / f.relative_to(capture_root)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(f, dest)
    shutil.copytree(base, root / "input" / "baseline")
    for sub in ("resultdata", "output"):
        (root / sub).mkdir()
    return root


def _volumes(job: Path) -> list[tuple[Path, str, str]]:
    return [
        (job / "config", "/opt/ml/config", "ro"),
        (job / "input", f"{PROCESSING}/input", "ro"),
        (job / "resultdata", f"{PROCESSING}/resultdata", "rw"),
        (job / "output", "/opt/ml/output", "rw"),
    ]


def _wait(name: str) -> int:
    deadline = time.monotonic() + RUN_TIMEOUT
    while time.monotonic() < deadline:
        s = state(name)
        if not s["Running"]:
            return s["ExitCode"]
        time.sleep(0.3)
    raise AssertionError(f"{name} still running after {RUN_TIMEOUT} s:\n{logs(name)[-3000:]}")


def _upload(result: Path, prefix: Path) -> None:
    """What the end of the job does with each instance's output LocalPath: into the same S3 prefix."""
    for f in sorted(p for p in result.rglob("*") if p.is_file()):
        dest = prefix / f.relative_to(result)
        assert not dest.exists(), f"two hosts wrote {dest.relative_to(prefix)}: the later upload would replace it"
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(f, dest)


def test_two_hosts_then_merge_equal_one_host(monitor_image, containers: Containers, tmp_path, monkeypatch) -> None:
    frame = _frame()
    base = make_baseline(tmp_path, monkeypatch)
    shutil.copyfile(tmp_path / "train" / "schema.json", base / "schema.json")
    capture_root = tmp_path / "captures"
    capturegen.write_captures(
        capture_root, features(frame), predictions(frame), START, spacing=timedelta(seconds=3), lines_per_file=300
    )
    files = sorted(capture_root.rglob("*.jsonl"))
    assert len(files) == 8

    # ShardedByS3Key: each host receives a disjoint share of the objects
    jobs = [_job(tmp_path / h, h, HOSTS, files[i::2], capture_root, base) for i, h in enumerate(HOSTS)]
    names = [containers.start(monitor_image, ["monitor"], volumes=_volumes(j), env=ENV) for j in jobs]
    codes = [_wait(n) for n in names]
    assert codes == [0, 0], "\n".join(logs(n)[-2000:] for n in names)
    prefix = tmp_path / "s3-resultdata"
    for job in jobs:
        _upload(job / "resultdata", prefix)
    assert sorted(str(p.relative_to(prefix)) for p in prefix.rglob("*") if p.is_file()) == [
        f"hosts/{h}/profile_state.json" for h in HOSTS
    ]

    # the follow-up job: one instance, the hosts' prefix as its input
    merge_job = tmp_path / "merge"
    (merge_job / "input").mkdir(parents=True)
    shutil.copytree(prefix, merge_job / "input" / "shards")
    shutil.copytree(base, merge_job / "input" / "baseline")
    for sub in ("resultdata", "output"):
        (merge_job / sub).mkdir()
    merged = containers.run(
        monitor_image,
        ["merge", "--states", f"{PROCESSING}/input/shards"],
        volumes=[v for v in _volumes(merge_job) if v[1] != "/opt/ml/config"],
        env=ENV,
    )
    assert merged.returncode == 0, merged.output
    assert "merged 2 shards: 2400 records" in merged.output

    single_job = _job(tmp_path / "single", "algo-1", ("algo-1",), files, capture_root, base)
    single = containers.run(monitor_image, ["monitor"], volumes=_volumes(single_job), env=ENV)
    assert single.returncode == 0, single.output

    out, one = merge_job / "resultdata", single_job / "resultdata"
    summary, single_summary = read(out / "monitoring_report.json"), read(one / "monitoring_report.json")
    assert summary["records"] == single_summary["records"] == len(frame)
    assert summary["files_read"] == single_summary["files_read"] == len(files)
    assert_same_result(out, one, features(frame))
