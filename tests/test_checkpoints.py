"""XGBoost checkpoints: saved atomically every N rounds, resumed after a hard kill with only the remaining rounds."""

from __future__ import annotations

import json
import re
import signal
import time

import numpy as np
import pandas as pd
import pytest

from algorithms.base import Dataset, TrainingContext
from algorithms.xgboost_regressor import CHECKPOINTS_KEPT, HYPERPARAMETERS, XGBoostRegressor, xgb
from core.schema import Feature, Schema


def _synthetic(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4))
    cat = rng.choice(["a", "b", "c"], size=n)
    y = x @ [3.0, -2.0, 1.0, 0.5] + np.sin(3 * x[:, 0]) + pd.Series(cat).map({"a": 0, "b": 2, "c": -1}).to_numpy()
    frame = pd.DataFrame(x, columns=["x0", "x1", "x2", "x3"])
    frame.insert(0, "y", y + rng.normal(scale=0.3, size=n))
    frame["cat"] = cat
    return frame


def _trees(model_file) -> int:
    doc = json.loads(model_file.read_text())
    return int(doc["learner"]["gradient_booster"]["model"]["gbtree_model_param"]["num_trees"])


def _checkpoints(directory) -> list:
    return sorted(directory.glob("xgboost-checkpoint-*.ubj"), key=lambda p: int(re.findall(r"\d+", p.name)[0]))


def test_killed_job_resumes_from_the_newest_checkpoint(opt_ml):
    num_round, every = 1000, 20
    opt_ml.channel("train", {"part-0.csv": _synthetic(5000).to_csv(index=False, header=False)})
    opt_ml.hyperparameters(
        num_round=num_round, checkpoint_frequency=every, max_depth=6, eta=0.05, train_metric_frequency=1
    )
    ckpt = opt_ml.checkpoints()

    proc = opt_ml.popen("xgboost")
    try:
        while len(_checkpoints(ckpt)) < 2 and proc.poll() is None:
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)  # a spot interruption gives no chance to clean up
        first_output = proc.communicate(timeout=60)[0]
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL, "the first run finished before it could be interrupted:\n" + first_output
    assert not (opt_ml.base_dir / "model" / "xgboost-model.json").exists()

    result = opt_ml.train("xgboost")
    assert result.returncode == 0, result.output
    resumed = re.search(r"resuming from round (\d+): training (\d+) more round\(s\) of (\d+)", result.output)
    assert resumed, result.output
    done, more = int(resumed.group(1)), int(resumed.group(2))
    assert done >= 2 * every and done % every == 0 and done < num_round
    assert more == num_round - done
    iterations = [int(i) for i in re.findall(r"^#metrics iteration=(\d+) train:", result.output, re.M)]
    assert iterations == list(range(done, num_round))  # the second run trained only the remaining rounds
    assert _trees(result.model_dir / "xgboost-model.json") == num_round
    names = [p.name for p in _checkpoints(ckpt)]
    assert len(names) <= CHECKPOINTS_KEPT and names[-1] == f"xgboost-checkpoint-{num_round}.ubj"
    assert not list(ckpt.glob(".*")), "temporary checkpoint files left behind"


# -- in-process: the Checkpoints logic ---------------------------------------------------------------------------------
SCHEMA = Schema(
    (Feature("x0"), Feature("x1"), Feature("x2"), Feature("x3"), Feature("cat", "categorical", ("a", "b", "c")))
)


def _dataset(n=400, seed=0) -> Dataset:
    frame = _synthetic(n, seed)
    return Dataset("train", SCHEMA.encode(frame[SCHEMA.names]), frame["y"].to_numpy())


def _fit(tmp_path, num_round, dataset=None, validation=None, **params):
    lines = []

    def log(split, metrics, iteration=None):
        lines.append((split, iteration))

    p = {**HYPERPARAMETERS.defaults(), "num_round": num_round, "checkpoint_frequency": 5, "train_metric_frequency": 1}
    p.update(params)
    model = XGBoostRegressor(p, SCHEMA).fit(
        dataset or _dataset(), validation, log=log, context=TrainingContext(checkpoint_dir=tmp_path / "ckpt")
    )
    return model, [i for s, i in lines if s == "train"]


def test_saves_every_n_rounds_and_keeps_the_last_few(tmp_path):
    model, iterations = _fit(tmp_path, 23)
    assert iterations == list(range(23))
    names = [p.name for p in _checkpoints(tmp_path / "ckpt")]
    assert names == [f"xgboost-checkpoint-{n}.ubj" for n in (15, 20, 23)][-CHECKPOINTS_KEPT:]
    assert model.booster.num_boosted_rounds() == 23


def test_resume_trains_only_the_remaining_rounds(tmp_path):
    _fit(tmp_path, 10)
    model, iterations = _fit(tmp_path, 17)
    assert iterations == list(range(10, 17))
    assert model.booster.num_boosted_rounds() == 17
    _, iterations = _fit(tmp_path, 17)  # already complete: nothing left to train
    assert iterations == []


def test_unreadable_newest_checkpoint_falls_back_to_the_previous(tmp_path, caplog):
    _fit(tmp_path, 10)
    newest = tmp_path / "ckpt" / "xgboost-checkpoint-10.ubj"
    newest.write_bytes(newest.read_bytes()[:50])  # torn by a crash of the file system, not by us
    model, iterations = _fit(tmp_path, 12)
    assert iterations == [5, 6, 7, 8, 9, 10, 11]
    assert "ignoring checkpoint" in caplog.text and "unreadable" in caplog.text
    assert model.booster.num_boosted_rounds() == 12


def test_checkpoint_of_other_features_is_ignored(tmp_path, caplog):
    other = xgb.train({"nthread": 1}, xgb.DMatrix(np.ones((5, 2)), label=np.ones(5)), 5)
    (tmp_path / "ckpt").mkdir()
    other.save_model(str(tmp_path / "ckpt" / "xgboost-checkpoint-5.ubj"))
    _, iterations = _fit(tmp_path, 3)
    assert iterations == [0, 1, 2]
    assert "ignoring checkpoint" in caplog.text


def test_early_stopping_state_survives_a_resume(tmp_path):
    held_out = _dataset(200, 1)
    train, validation = _dataset(400, 0), Dataset("validation", held_out.X, held_out.y)
    # A learning rate so high that the validation error stops improving early.
    full, _ = _fit(tmp_path / "a", 200, train, validation, eta=0.9, early_stopping_rounds=5)
    best = full.best_iteration
    assert 5 < best < 150
    # Interrupted after best + 3 rounds (iterations 0..best+2): the resumed run must remember the best and stop
    # when 5 rounds have passed without improvement, at iteration best + 5, exactly as the uninterrupted run did.
    _fit(tmp_path / "b", best + 3, train, validation, eta=0.9, early_stopping_rounds=5)
    resumed, iterations = _fit(tmp_path / "b", 200, train, validation, eta=0.9, early_stopping_rounds=5)
    assert iterations == [best + 3, best + 4, best + 5]
    assert resumed.best_iteration == best
    assert resumed.booster.num_boosted_rounds() == best + 1
    np.testing.assert_allclose(resumed.predict(validation.X), full.predict(validation.X), rtol=1e-5)


@pytest.mark.parametrize("rows", [1, 7])
def test_inplace_predict_matches_dmatrix_predict_with_categorical_codes(tmp_path, rows):
    model, _ = _fit(tmp_path, 20, max_cat_to_onehot=1)  # partition splits on the categorical feature
    X = _dataset(rows, 3).X
    X[0, 4] = np.nan  # missing category
    dm = xgb.DMatrix(X, feature_types=SCHEMA.xgboost_feature_types(), enable_categorical=True)
    np.testing.assert_array_equal(model.predict(X), model.booster.predict(dm).astype(np.float64))
