"""The CLI's argument checks and its refusal to start without what local mode needs (no container started)."""

from __future__ import annotations

import pytest

from harness import run_local_mode


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--algorithms", "xgboost,forest"], "--algorithms: expected a comma-separated subset of xgboost, linear, "
                                             "received 'forest'"),
        (["--algorithms", ","], "received 'nothing'"),
        (["--image", "byoc-xgboost"], "--image: expected ALGORITHM=IMAGE with ALGORITHM in xgboost, linear, "
                                      "received 'byoc-xgboost'"),
        (["--hyperparameter", "num_round=5"], "--hyperparameter: expected ALGORITHM.NAME=VALUE (e.g. "
                                              "xgboost.num_round=300), received 'num_round=5'"),
        (["--hyperparameter", "forest.depth=5"], "received 'forest.depth=5'"),
    ],
)  # fmt: skip
def test_bad_arguments_exit_2_naming_the_option(argv, message, capsys):
    with pytest.raises(SystemExit) as exited:
        run_local_mode.main(argv)
    assert exited.value.code == 2
    assert message in capsys.readouterr().err


def test_hyperparameter_overrides_reach_only_their_algorithm():
    args = run_local_mode.parse_args(["--hyperparameter", "xgboost.num_round=7", "--image", "linear=my/linear:1"])
    assert args.hyperparameters["xgboost"]["num_round"] == "7"
    assert "num_round" not in args.hyperparameters["linear"]
    assert args.images == {"xgboost": "byoc-xgboost", "linear": "my/linear:1"}


FAKE_DOCKER = """#!/bin/sh
# A docker CLI stand-in: `info` answers as the engine named by FAKE_ENGINE, `compose version` works, no image exists.
case "$1" in
  info) [ "$FAKE_ENGINE" = up ] && { echo 27.0.0; exit 0; }; echo "Cannot connect to the Docker daemon" >&2; exit 1;;
  compose) exit 0;;
  image) echo "Error: No such image: $3" >&2; exit 1;;
esac
exit 3
"""


@pytest.fixture
def fake_docker(tmp_path, monkeypatch):
    """PATH holds only a fake `docker`, so the pre-flight check meets a known engine whatever this machine has."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "docker").write_text(FAKE_DOCKER)
    (bin_dir / "docker").chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))
    return monkeypatch


@pytest.mark.parametrize(
    ("engine", "reason"),
    [
        ("up", "image(s) not built: byoc-local-mode-test-no-such-image:never-built (scripts/build_push.sh --no-push)"),
        ("down", "no Docker engine reachable (Cannot connect to the Docker daemon)"),
        (None, "no docker CLI on PATH"),
    ],
)
def test_missing_image_engine_or_cli_exits_2_naming_it_before_anything_runs(
    engine, reason, fake_docker, tmp_path, capsys
):
    if engine is None:
        fake_docker.setenv("PATH", str(tmp_path / "empty"))
    else:
        fake_docker.setenv("FAKE_ENGINE", engine)
    image = "byoc-local-mode-test-no-such-image:never-built"
    work = tmp_path / "work"
    work.mkdir()
    code = run_local_mode.main(["--algorithms", "linear", "--image", f"linear={image}", "--work-dir", str(work)])
    assert code == 2
    assert capsys.readouterr().err == f"local-mode: error: cannot run local mode: {reason}\n"
    assert list(work.iterdir()) == []  # nothing preprocessed, no session opened
