"""`python -m emulators.transform --image`: the runner starts the built serving image itself, and removes it.

Needs a Docker engine and the built byoc-xgboost image (scripts/build_push.sh --no-push); skipped without them,
except in CI (CI=true), where the container tests must run.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import subprocess

import pytest

from emulators.local_server import LocalServer
from emulators.transform import main
from tests import opt_ml as om

pytestmark = [pytest.mark.container, pytest.mark.slow]

IMAGE = f"byoc-xgboost:{os.environ.get('BYOC_TEST_IMAGE_TAG', 'latest')}"
CSV_ARGS = ["--content-type", "text/csv", "--accept", "text/csv", "--split-type", "Line", "--assemble-with", "Line"]
MAIN_JOB = ["--input-filter", "$[1:]", "--join-source", "Input", "--output-filter", "$[0,-1]"]


def docker(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=60, check=False)


@pytest.fixture(scope="module")
def image() -> str:
    reason = None
    if shutil.which("docker") is None:
        reason = "no docker CLI on PATH"
    elif docker("info").returncode != 0:
        reason = "no Docker engine reachable"
    elif docker("image", "inspect", IMAGE).returncode != 0:
        reason = f"image {IMAGE} not built (scripts/build_push.sh --no-push)"
    if reason:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{reason} (CI=true: container tests must run, not skip)", pytrace=False)
        pytest.skip(reason)
    return IMAGE


@pytest.fixture
def started(monkeypatch) -> list[str]:
    """The names of the containers the runner starts in this test (its own, whatever else the engine runs)."""
    from emulators import serving_container

    names: list[str] = []
    real = serving_container._docker

    def spy(*args: str, **kwargs):
        if args[:1] == ("run",) and "--name" in args:
            names.append(args[args.index("--name") + 1])
        return real(*args, **kwargs)

    monkeypatch.setattr(serving_container, "_docker", spy)
    return names


def gone(names: list[str]) -> bool:
    return bool(names) and all(docker("container", "inspect", name).returncode != 0 for name in names)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    base = tmp_path_factory.mktemp("xgboost") / "opt_ml"
    job = om.OptML(base)
    frame = om.car_prices()
    splits = om.split(frame)
    schema = json.dumps(om.schema_doc(frame))
    for name in ("train", "validation"):
        job.channel(name, {"part-0.csv": om.label_first_csv(splits[name]), "schema.json": schema})
    result = job.hyperparameters(num_round=30).train("xgboost")
    assert result.returncode == 0, result.output
    return base, splits["test"]


def test_image_mode_scores_like_the_local_server_and_leaves_no_container(image, model, started, tmp_path, capsys):
    base, test = model
    features = [c for c in test.columns if c != om.TARGET]
    buffer = io.StringIO()
    rows = [[f"car-{i:04d}", *row] for i, row in enumerate(test[features].itertuples(index=False), start=1)]
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    inp = tmp_path / "scoring.csv"
    inp.write_text(buffer.getvalue())
    args = ["--input", str(inp), *CSV_ARGS, *MAIN_JOB]
    code = main(["--image", image, "--model-dir", str(base / "model"), "--output", str(tmp_path / "img"), *args,
                 "--max-concurrent-transforms", "2", "--env", "SAGEMAKER_MODEL_SERVER_WORKERS=2"])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    assert gone(started)
    with LocalServer("xgboost", base) as server:
        assert main(["--endpoint", server.url, "--output", str(tmp_path / "local"), *args]) == 0
    image_out = (tmp_path / "img" / "scoring.csv.out").read_text()
    assert image_out == (tmp_path / "local" / "scoring.csv.out").read_text()
    assert image_out.splitlines()[0].startswith("car-0001,")
    assert "MaxConcurrentTransforms=2" in capsys.readouterr().out


def test_image_mode_reports_a_model_that_cannot_load_and_removes_the_container(image, started, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    inp = tmp_path / "in.csv"
    inp.write_text("x,1\n")
    code = main(["--image", image, "--model-dir", str(tmp_path / "empty"), "--input", str(inp),
                 "--output", str(tmp_path / "out"), "--startup-timeout", "5"])  # fmt: skip
    assert code == 1
    err = capsys.readouterr().err
    assert "was not healthy within 5 s (/ping answered 500); container log:" in err
    assert "xgboost-model.json not found" in err
    assert gone(started)
    assert not (tmp_path / "out").exists()
