"""Where training writes: unwritable locations, symbolic links, paths that leave their directory, valid JSON."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from tests import opt_ml as om
from tests.conftest import FAST, write_builtin_channels

_READ_ONLY = (
    'for d in "$RO_DIRS"; do mount --bind "$d" "$d" && mount -o remount,bind,ro "$d" "$d" || exit 97; done; exec "$@"'
)


def _can_mount_read_only(tmp_path) -> bool:
    # A private mount namespace (root, CAP_SYS_ADMIN): the way to get a read-only directory when root ignores modes.
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(
        ["unshare", "-m", "sh", "-c", _READ_ONLY, "sh", "true"], env={"RO_DIRS": str(tmp_path)}, capture_output=True
    )
    return probe.returncode == 0


def _train_read_only(job: om.OptML, algorithm: str, directory) -> om.TrainResult:
    cmd, env = job.command(algorithm, {"RO_DIRS": str(directory)})
    proc = subprocess.run(
        ["unshare", "-m", "sh", "-c", _READ_ONLY, "sh", *cmd],
        cwd=om.REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=300,
    )
    assert proc.returncode != 97, proc.stdout
    return om.TrainResult(proc.returncode, proc.stdout, job.base_dir)


@pytest.fixture
def small_job(opt_ml, car_splits):
    write_builtin_channels(opt_ml, car_splits, None, channels=("train", "test"))
    opt_ml.hyperparameters(FAST["xgboost"])
    return opt_ml


def test_read_only_model_dir_is_a_one_line_user_error(small_job, tmp_path):
    if not _can_mount_read_only(tmp_path):
        pytest.skip("cannot make a read-only bind mount here (needs unshare and CAP_SYS_ADMIN)")
    model_dir = small_job.base_dir / "model"
    model_dir.mkdir(parents=True, exist_ok=True)
    result = _train_read_only(small_job, "xgboost", model_dir)
    assert result.returncode == 1, result.output
    assert result.failure_line.startswith(f"cannot write to {model_dir}: Read-only file system"), result.failure
    assert "internal error" not in result.output


def test_read_only_output_dir_is_a_one_line_user_error(small_job, tmp_path):
    if not _can_mount_read_only(tmp_path):
        pytest.skip("cannot make a read-only bind mount here (needs unshare and CAP_SYS_ADMIN)")
    output = small_job.base_dir / "output"
    output.mkdir(parents=True, exist_ok=True)
    result = _train_read_only(small_job, "xgboost", output)
    assert result.returncode == 1, result.output
    assert "Traceback" not in result.output
    assert f"cannot write to {output / 'data'}: Read-only file system" in result.output
    assert f"cannot write {output / 'failure'}: Read-only file system" in result.output
    assert not result.failure_file.exists()


@pytest.mark.parametrize("name", ["xgboost-model.json", "schema.json", "metadata.json"])
def test_training_never_writes_through_a_link_in_model_dir(small_job, tmp_path, name):
    victim = tmp_path / "victim"
    victim.write_text("keep me\n")
    model_dir = small_job.base_dir / "model"
    model_dir.mkdir(parents=True, exist_ok=True)
    (model_dir / name).symlink_to(victim)
    result = small_job.train("xgboost")
    assert result.returncode == 1, result.output
    assert result.failure_line == f"{model_dir / name} is a symbolic link: refusing to write through it"
    assert victim.read_text() == "keep me\n"


def test_evaluation_json_is_never_written_through_a_link(small_job, tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("keep me\n")
    data = small_job.base_dir / "output" / "data"
    data.mkdir(parents=True)
    (data / "evaluation.json").symlink_to(victim)
    result = small_job.train("xgboost")
    assert result.returncode == 1, result.output
    assert "is a symbolic link: refusing to write through it" in result.failure_line
    assert victim.read_text() == "keep me\n"


@pytest.mark.parametrize("local_path", ["../../x", "checkpoints/../../x", "/opt/ml/../../tmp/x"])
def test_checkpoint_path_cannot_leave_its_directory(small_job, tmp_path, local_path):
    (small_job.config_dir / "checkpointconfig.json").write_text(json.dumps({"LocalPath": local_path}))
    result = small_job.train("xgboost")
    assert result.returncode == 1, result.output
    assert f"field 'LocalPath': {local_path!r} leaves its directory" in result.failure_line
    assert not (small_job.base_dir.parent.parent / "x").exists()


@pytest.mark.parametrize("algorithm", ["xgboost", "linear"])
def test_metadata_is_valid_json_when_r2_is_undefined(opt_ml, algorithm):
    opt_ml.channel("train", {"d.csv": "5,1,a\n5,2,b\n5,3,a\n5,4,b\n"})
    opt_ml.hyperparameters(FAST[algorithm])
    result = opt_ml.train(algorithm)
    assert result.returncode == 0, result.output

    def no_constants(name):
        raise AssertionError(f"{name} in metadata.json")

    doc = json.loads((result.model_dir / "metadata.json").read_text(), parse_constant=no_constants)
    assert doc["metrics"]["train"]["r2"] is None
    assert "channel train: metric(s) r2 undefined on this data" in result.output
