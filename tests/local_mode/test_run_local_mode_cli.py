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


def test_missing_image_or_engine_exits_2_before_anything_runs(tmp_path, capsys):
    image = "byoc-local-mode-test-no-such-image:never-built"
    code = run_local_mode.main(["--algorithms", "linear", "--image", f"linear={image}", "--work-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("local-mode: error: cannot run local mode: ")
    # Either no engine here, or the engine answers and the image is missing: both named.
    assert f"image(s) not built: {image}" in err or "Docker" in err or "docker" in err
    assert list(tmp_path.iterdir()) == []  # nothing preprocessed, no session opened
