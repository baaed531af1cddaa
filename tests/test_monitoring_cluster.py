"""The monitor job on several hosts, as SageMaker Processing runs it with InstanceCount > 1: each host has its own
/opt/ml/config (resourceconfig.json, processingjobconfig.json) and its share of the files, all hosts upload the
same output prefix (here: write the same folder), and ``merge`` over that prefix gives the single-host result."""

from __future__ import annotations

import json
import shutil
from datetime import timedelta
from pathlib import Path

import pandas as pd
import pytest

from harness import capturegen
from monitoring import datacapture, merge, monitor
from tests.test_monitoring_support import (
    START,
    WINDOW,
    assert_same_result,
    cars,
    features,
    make_baseline,
    monitor_args,
    predictions,
    read,
    run,
)

HOSTS = ("algo-1", "algo-2")
SMALL_K = ("--kll-k", "128")


@pytest.fixture
def base(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return make_baseline(tmp_path, monkeypatch)


def _frame() -> pd.DataFrame:
    frame = cars().sample(n=2400, replace=True, random_state=3).reset_index(drop=True)
    frame["mileage"] = frame["mileage"] * 2 + 15_000  # drifted: the runs have violations to compare
    return frame


def _captures(tmp: Path) -> list[Path]:
    frame = _frame()
    root = tmp / "all"
    capturegen.write_captures(
        root, features(frame), predictions(frame), START, spacing=timedelta(seconds=3), lines_per_file=300
    )
    return sorted(root.rglob("*.jsonl"))


def _host_config(tmp: Path, host: str, dataset: Path, distribution: str, hosts=HOSTS, **inputs: tuple) -> Path:
    """The host's /opt/ml (SAGEMAKER_BASE_DIR) with the two config files SageMaker Processing writes."""
    opt_ml = tmp / f"opt_ml_{host}"
    config = opt_ml / "config"
    config.mkdir(parents=True, exist_ok=True)
    (config / "resourceconfig.json").write_text(json.dumps({"current_host": host, "hosts": list(hosts)}))
    items = {"dataset": (dataset, distribution), **inputs}
    job = {
        "ProcessingInputs": [
            {"InputName": name, "S3Input": {"LocalPath": str(path), "S3DataDistributionType": kind}}
            for name, (path, kind) in items.items()
        ]
    }
    (config / "processingjobconfig.json").write_text(json.dumps(job))
    return opt_ml


def _share(files: list[Path], dest: Path) -> Path:
    for f in files:
        target = dest / f.relative_to(f.parents[5])  # keep <endpoint>/<variant>/yyyy/mm/dd/hh/
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(f, target)
    return dest


def _run_host(tmp, mp, base, host, dataset, out, distribution="ShardedByS3Key", *extra, **inputs) -> int:
    opt_ml = _host_config(tmp, host, dataset, distribution, **inputs)
    return run(monitor.main, monitor_args(tmp, dataset, base, out, *WINDOW, *extra), mp, opt_ml)


def _merge(tmp, mp, base, states: Path, out: Path, *extra: str) -> int:
    argv = ["--states", str(states), "--output-path", str(out), "--baseline-statistics", str(base / "statistics.json")]
    argv += ["--baseline-constraints", str(base / "constraints.json"), "--report", "Disabled", *extra]
    return run(merge.main, argv, mp, tmp)


def _single(tmp, mp, base, files, *extra: str) -> Path:
    out = tmp / "single"
    src = _share(files, tmp / "single-in")
    assert run(monitor.main, monitor_args(tmp, src, base, out, *WINDOW, "--bookmark", "Disabled", *extra), mp, tmp) == 0
    return out


def test_sharded_hosts_write_apart_and_merge_into_the_single_run(tmp_path, monkeypatch, base) -> None:
    files = _captures(tmp_path)
    prefix = tmp_path / "s3-output"  # every host uploads here: the same S3Uri
    for rank, host in enumerate(HOSTS):
        dataset = _share(files[rank::2], tmp_path / f"in-{host}")
        # a small k, so that the sketches compact and the comparison is against the bound, not exact data
        assert _run_host(tmp_path, monkeypatch, base, host, dataset, prefix, "ShardedByS3Key", *SMALL_K) == 0
    written = sorted(str(p.relative_to(prefix)) for p in prefix.rglob("*") if p.is_file())
    # nothing two hosts would both upload, and no partial result that could pass for the run's
    assert written == ["hosts/algo-1/profile_state.json", "hosts/algo-2/profile_state.json"]
    shard = read(prefix / "hosts/algo-2/profile_state.json")["shard"]
    assert shard["host"] == "algo-2" and shard["hosts"] == list(HOSTS) and shard["distribution"] == "ShardedByS3Key"
    merged = tmp_path / "merged"
    assert _merge(tmp_path, monkeypatch, base, prefix, merged) == 0
    single = _single(tmp_path, monkeypatch, base, files, *SMALL_K)
    assert_same_result(merged, single, features(_frame()))
    summary = read(merged / "monitoring_report.json")
    assert summary["records"] == 2400 and summary["files_read"] == len(files)


def test_replicated_input_is_split_by_rank_not_counted_twice(tmp_path, monkeypatch, base) -> None:
    files = _captures(tmp_path)
    prefix = tmp_path / "s3-output"
    for host in HOSTS:
        dataset = _share(files, tmp_path / f"in-{host}")  # FullyReplicated: every host gets every file
        assert _run_host(tmp_path, monkeypatch, base, host, dataset, prefix, "FullyReplicated") == 0
    counts = [read(prefix / "hosts" / h / "profile_state.json")["profile"]["item_count"] for h in HOSTS]
    assert 0 < counts[0] < 2400 and sum(counts) == 2400
    merged = tmp_path / "merged"
    assert _merge(tmp_path, monkeypatch, base, prefix, merged) == 0
    assert_same_result(merged, _single(tmp_path, monkeypatch, base, files))


def test_a_missing_host_fails_the_merge_naming_it(tmp_path, monkeypatch, base) -> None:
    files = _captures(tmp_path)
    prefix = tmp_path / "s3-output"
    dataset = _share(files[::2], tmp_path / "in-algo-1")
    assert _run_host(tmp_path, monkeypatch, base, "algo-1", dataset, prefix) == 0
    assert _merge(tmp_path, monkeypatch, base, prefix, tmp_path / "merged") == 1
    failure = (tmp_path / "output" / "failure").read_text()
    assert failure.startswith("the job ran on hosts algo-1, algo-2 but no state of algo-2 was given")
    assert not (tmp_path / "merged" / "statistics.json").exists()


def test_a_host_without_files_succeeds_and_the_merge_decides(tmp_path, monkeypatch, base) -> None:
    files = _captures(tmp_path)[:1]
    prefix = tmp_path / "s3-output"
    assert _run_host(tmp_path, monkeypatch, base, "algo-1", _share(files, tmp_path / "in-1"), prefix) == 0
    empty = tmp_path / "in-2"
    empty.mkdir()
    assert _run_host(tmp_path, monkeypatch, base, "algo-2", empty, prefix) == 0  # more hosts than files
    assert read(prefix / "hosts/algo-2/profile_state.json")["profile"]["item_count"] == 0
    assert _merge(tmp_path, monkeypatch, base, prefix, tmp_path / "merged") == 0
    assert read(tmp_path / "merged" / "monitoring_report.json")["records"] == 300
    # no host had a record: the merge fails as a single run would, unless told otherwise
    prefix2 = tmp_path / "s3-output-2"
    for host in HOSTS:
        assert _run_host(tmp_path, monkeypatch, base, host, empty, prefix2) == 0
    assert _merge(tmp_path, monkeypatch, base, prefix2, tmp_path / "m2") == 1
    assert (tmp_path / "output" / "failure").read_text().startswith("Job inputs had no data")
    assert _merge(tmp_path, monkeypatch, base, prefix2, tmp_path / "m3", "--fail-on-no-data", "Disabled") == 0
    assert read(tmp_path / "m3" / "monitoring_report.json")["status"] == "NoNewData"


def test_settings_that_cannot_work_on_several_hosts_are_refused(tmp_path, monkeypatch, base) -> None:
    dataset = _share(_captures(tmp_path)[:1], tmp_path / "in")
    truth = tmp_path / "truth"
    truth.mkdir()
    out = tmp_path / "out"
    code = _run_host(
        tmp_path, monkeypatch, base, "algo-1", dataset, out, "ShardedByS3Key", "--ground-truth-source", str(truth),
        truth=(truth, "ShardedByS3Key"),
    )  # fmt: skip
    assert code == 1
    failure = (tmp_path / "opt_ml_algo-1" / "output" / "failure").read_text()
    assert failure.startswith(f"ground_truth_source {truth} is ShardedByS3Key on 2 hosts")
    assert (
        _run_host(tmp_path, monkeypatch, base, "algo-1", dataset, out, "ShardedByS3Key", "--bookmark", "Enabled") == 1
    )
    assert "bookmark: not supported on 2 hosts" in (tmp_path / "opt_ml_algo-1" / "output" / "failure").read_text()
    opt_ml = _host_config(tmp_path, "algo-3", dataset, "ShardedByS3Key")
    assert run(monitor.main, monitor_args(tmp_path, dataset, base, out, *WINDOW), monkeypatch, opt_ml) == 1
    assert "current_host 'algo-3' is not in hosts" in (opt_ml / "output" / "failure").read_text()
    assert not (out / "hosts").exists()


def test_replicated_ground_truth_counts_once(tmp_path, monkeypatch, base) -> None:
    files = _captures(tmp_path)
    truth = tmp_path / "truth"
    frame_truth = truth / "2024" / "01" / "01" / "10"
    frame_truth.mkdir(parents=True)
    first = [json.loads(line) for line in files[0].read_text().splitlines()[:50]]
    (frame_truth / "labels.jsonl").write_text(
        "".join(datacapture.ground_truth_line(r["eventMetadata"]["eventId"], 1.0) + "\n" for r in first)
    )
    prefix = tmp_path / "s3-output"
    for rank, host in enumerate(HOSTS):
        dataset = _share(files[rank::2], tmp_path / f"in-{host}")
        code = _run_host(
            tmp_path, monkeypatch, base, host, dataset, prefix, "ShardedByS3Key", "--ground-truth-source", str(truth),
            truth=(truth, "FullyReplicated"),
        )  # fmt: skip
        assert code == 0
    assert _merge(tmp_path, monkeypatch, base, prefix, tmp_path / "merged") == 0
    summary = read(tmp_path / "merged" / "monitoring_report.json")
    assert summary["ground_truth_records"] == 50 and summary["labelled_records"] == 50
