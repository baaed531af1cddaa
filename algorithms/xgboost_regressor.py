"""XGBoost regression plug-in: native categorical features, early stopping, checkpoints with resume.

Hyperparameters use the built-in SageMaker XGBoost names. Differences from the built-in algorithm, on purpose:
``num_round`` defaults to 300 (the built-in requires it) and ``early_stopping_rounds`` to 30 (it applies only
when there is a validation channel; 0 turns it off); the defaults are tuned for small tabular data (shallow
trees, eta 0.1). Under early stopping the saved model holds the best iteration's trees only.

Model file: ``xgboost-model.json`` (XGBoost's JSON format: loading it runs no code).

Checkpoints (when checkpointconfig.json is present): ``xgboost-checkpoint-<rounds>.ubj`` every
``checkpoint_frequency`` rounds and at the end, written to a temporary name then renamed (a spot interruption
never leaves a torn file behind), the last few kept. A restarted job resumes from the newest readable one and
trains only the remaining rounds; the early-stopping state travels in the checkpoint's attributes.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Self

import numpy as np
import xgboost as xgb

from algorithms import xgboost_predict
from algorithms.base import Algorithm, Dataset, MetricLog, TrainingContext
from algorithms.hyperparameters import Hyperparameter, HyperparameterSpec, OnlyWith, Tune
from algorithms.metrics import r2_from_mse, variance_across
from core import schema as schema_mod
from core.errors import UserError
from core.schema import Schema

logger = logging.getLogger(__name__)

MODEL_FILE = "xgboost-model.json"
CHECKPOINT_PATTERN = re.compile(r"^xgboost-checkpoint-(\d+)\.ubj$")
CHECKPOINTS_KEPT = 3
# Below this many training rows, nthread=0 means one thread: more only add synchronisation (and on a busy host
# OpenMP's spinning threads made small jobs several times slower, measured).
PARALLEL_ROWS = 50_000
OBJECTIVES = (
    "reg:squarederror",
    "reg:absoluteerror",
    "reg:pseudohubererror",
    "reg:squaredlogerror",
    "reg:gamma",
    "reg:tweedie",
)
EVAL_METRICS = ("rmse", "mae", "mape", "mphe", "rmsle")
_ALWAYS = ("rmse", "mae")  # computed every round; r2 and mse derive from rmse
# The labels each objective takes (XGBoost's parameter docs): XGBoost checks them in C++ and would end the job with
# a stack trace. objective -> (bound, bound excluded, in words)
LABEL_DOMAINS = {
    "reg:gamma": (0.0, True, "labels > 0"),
    "reg:tweedie": (0.0, False, "labels >= 0"),
    "reg:squaredlogerror": (-1.0, True, "labels > -1"),
}


def _h(name, type_, default, **kw) -> Hyperparameter:
    return Hyperparameter(name, type_, default, **kw)


# Tuning ranges (`tune`) follow the built-in XGBoost algorithm's tunable hyperparameters, shifted towards this
# image's small-data defaults; Logarithmic where the range is positive and spans orders of magnitude.
HYPERPARAMETERS = HyperparameterSpec(
    [
        _h("num_round", int, 300, min=1, max=100_000, description="boosting rounds (upper bound under early stopping)",
           tune=Tune(10, 2000, "Logarithmic")),
        _h("eta", float, 0.1, min=0, max=1, min_exclusive=True, description="learning rate",
           tune=Tune(0.01, 0.5, "Logarithmic")),
        _h("max_depth", int, 3, min=0, max=30, description="tree depth (0: no limit)", tune=Tune(1, 10)),
        _h("min_child_weight", float, 1.0, min=0, description="minimum hessian sum in a leaf", tune=Tune(0, 120)),
        _h("subsample", float, 1.0, min=0, max=1, min_exclusive=True, description="row sampling per tree",
           tune=Tune(0.5, 1)),
        _h("colsample_bytree", float, 1.0, min=0, max=1, min_exclusive=True, description="column sampling per tree",
           tune=Tune(0.5, 1)),
        _h("colsample_bylevel", float, 1.0, min=0, max=1, min_exclusive=True, description="per tree level",
           tune=Tune(0.1, 1)),
        _h("colsample_bynode", float, 1.0, min=0, max=1, min_exclusive=True, description="per split",
           tune=Tune(0.1, 1)),
        _h("lambda", float, 1.0, min=0, description="L2 regularisation of leaf weights", tune=Tune(0, 1000)),
        _h("alpha", float, 0.0, min=0, description="L1 regularisation of leaf weights", tune=Tune(0, 1000)),
        _h("gamma", float, 0.0, min=0, description="minimum loss reduction to split", tune=Tune(0, 5)),
        _h("max_delta_step", float, 0.0, min=0, description="cap on leaf weight steps (0: none)", tune=Tune(0, 10)),
        _h("objective", str, "reg:squarederror", choices=OBJECTIVES, description="regression objective"),
        _h("eval_metric", str, "rmse", choices=EVAL_METRICS, description="metric for early stopping"),
        _h("early_stopping_rounds", int, 30, min=0, description="patience on validation (0: off)"),
        _h("tree_method", str, "hist", choices=("hist", "approx"), description="categorical support needs these"),
        _h("max_bin", int, 256, min=2, description="histogram bins"),
        _h("max_cat_to_onehot", int, 4, min=1, description="one-hot splits below this many levels"),
        _h("tweedie_variance_power", float, 1.5, min=1, max=2, min_exclusive=True, max_exclusive=True,
           description="for reg:tweedie"),
        _h("huber_slope", float, 1.0, min=0, min_exclusive=True,
           description="for reg:pseudohubererror and the mphe metric"),
        _h("seed", int, 0, min=0, max=2**31 - 1, description="random seed"),
        _h("nthread", int, 0, min=0, description="threads (0: all CPUs, or 1 below 50,000 training rows)"),
        _h("checkpoint_frequency", int, 10, min=1, description="rounds between checkpoints"),
        _h("train_metric_frequency", int, 10, min=1,
           description="rounds between metric lines of the train channel (first and last always; validation: every)"),
        _h("verbosity", int, 1, min=0, max=3, description="XGBoost's own logging"),
    ],
    # XGBoost reads these only with their objective (huber_slope also for the mphe metric); elsewhere a value would
    # be ignored without a word. (max_depth=0 needs a tree method other than `exact`, which is not offered.)
    rules=[
        OnlyWith("tweedie_variance_power", (("objective", ("reg:tweedie",)),)),
        OnlyWith("huber_slope", (("objective", ("reg:pseudohubererror",)), ("eval_metric", ("mphe",)))),
    ],
)  # fmt: skip
# Ours, not XGBoost's booster parameters.
_NOT_BOOSTER = {"num_round", "early_stopping_rounds", "checkpoint_frequency", "train_metric_frequency"}


class XGBoostRegressor(Algorithm):
    name = "xgboost"
    hyperparameters = HYPERPARAMETERS
    MODEL_FILES = (MODEL_FILE,)

    def __init__(self, params, schema: Schema, booster: Any = None):
        super().__init__(params, schema)
        self.booster = booster
        self.best_iteration: int | None = None
        self._predict: tuple[Any, xgboost_predict.Predict] | None = None  # (booster, its prepared predictor)

    # -- training ---------------------------------------------------------------------------------------------
    def _booster_params(self, nthread: int) -> dict[str, Any]:
        p = {k: v for k, v in self.params.items() if k not in _NOT_BOOSTER}
        # Objective-specific parameters only with their objective (XGBoost warns about unused ones).
        if p["objective"] != "reg:tweedie":
            p.pop("tweedie_variance_power", None)
        if p["objective"] != "reg:pseudohubererror" and p["eval_metric"] != "mphe":
            p.pop("huber_slope", None)
        p["nthread"] = nthread
        # Early stopping watches the last metric; rmse and mae are always computed for the metric log.
        p["eval_metric"] = [m for m in _ALWAYS if m != p["eval_metric"]] + [p["eval_metric"]]
        return p

    def _dmatrix(self, ds: Dataset, nthread: int, ref=None):
        types = self.schema.xgboost_feature_types()
        if self.params["tree_method"] == "approx":
            # approx re-sketches with the hessian every round: XGBoost refuses it a QuantileDMatrix, so the channel
            # is materialised (bounded memory needs hist, the default).
            return xgb.DMatrix(
                ds.X, label=ds.y, feature_types=types, enable_categorical=True, missing=np.nan, nthread=nthread
            )
        # Built from the channel's blocks: XGBoost quantises each block as it comes, so the float matrix is never
        # whole in memory (the channel may be on disk: algorithms.store).
        return xgb.QuantileDMatrix(
            _Blocks(ds, types),
            max_bin=self.params["max_bin"],
            ref=ref,
            enable_categorical=True,
            missing=np.nan,
            nthread=nthread,
        )

    def fit(
        self,
        train: Dataset,
        validation: Dataset | None = None,
        *,
        log: MetricLog,
        context: TrainingContext = TrainingContext(),  # noqa: B008 (frozen dataclass, as in base.Algorithm)
    ) -> Self:
        params = {**HYPERPARAMETERS.defaults(), **self.params}
        for ds in (train, validation):
            if ds is not None:
                _check_labels(ds, params["objective"])
        self.params = params
        nthread = params["nthread"] or (context.num_cpus if len(train) >= PARALLEL_ROWS else 1)
        booster_params = self._booster_params(nthread)
        dtrain = self._dmatrix(train, nthread)
        matrices = [(dtrain, "train")]
        if validation is not None:
            matrices.append((self._dmatrix(validation, nthread, ref=dtrain), "validation"))
        # XGBoost evaluates its evals every round: the train channel only every train_metric_frequency rounds
        # (_Monitor), since its metrics over every row cost ~17% of the boosting time (benchmarks/README.md).
        evals = matrices[1:]
        comm = context.collective  # several hosts: xgb.train runs inside its communicator, metrics are global
        variances = {"train": variance_across(train.y, comm)}
        if validation is not None:
            variances["validation"] = variance_across(validation.y, comm)

        patience = params["early_stopping_rounds"] if validation is not None else 0
        checkpoints = Checkpoints(context.checkpoint_dir, params["checkpoint_frequency"], self.schema)
        start = checkpoints.resume() if context.checkpoint_dir is not None else None
        if comm.distributed:
            # Every host restores its own checkpoint directory; resume only when they all hold the same round.
            rounds = start.num_boosted_rounds() if start is not None else -1
            low, high = comm.allreduce([rounds], "min")[0], comm.allreduce([rounds], "max")[0]
            if low != high:
                logger.warning("hosts hold checkpoints of rounds %d to %d: starting afresh", low, high)
                start = None
        done = start.num_boosted_rounds() if start is not None else 0
        monitor = _Monitor(log, variances, params["eval_metric"], patience, checkpoints, start, matrices)
        monitor.train_every, monitor.last_round = params["train_metric_frequency"], params["num_round"] - 1
        remaining = max(params["num_round"] - done, 0)
        if monitor.stopped:
            remaining = 0
        if start is not None:
            logger.info("resuming from round %d: training %d more round(s) of %d", done, remaining, params["num_round"])
        if remaining or start is None:
            booster = xgb.train(
                booster_params,
                dtrain,
                num_boost_round=remaining,
                evals=evals,
                callbacks=[monitor],
                xgb_model=start,
                verbose_eval=False,
            )
        else:
            booster = start
        checkpoints.save(booster, final=True)

        best = monitor.best_iteration if patience else None
        if best is not None and best + 1 < booster.num_boosted_rounds():
            logger.info(
                "early stopping: best iteration %d (%s %s=%.6g); keeping %d of %d rounds",
                best,
                "validation",
                params["eval_metric"],
                monitor.best_score,
                best + 1,
                booster.num_boosted_rounds(),
            )
            booster = booster[: best + 1]
        self.best_iteration = booster.num_boosted_rounds() - 1
        booster.set_param({"nthread": nthread})
        self.booster = booster
        # Predictions of the unsliced final model, taken from XGBoost's cache before xgb.train released it.
        self._fitted = monitor.fitted if booster.num_boosted_rounds() == monitor.fitted_rounds else {}
        return self

    def fitted_predictions(self):
        return dict(getattr(self, "_fitted", {}))

    # -- inference ----------------------------------------------------------------------------------------------
    def predict(self, X: np.ndarray) -> np.ndarray:
        # The dense predictor takes the float64 codes of categorical features directly (feature types live in the
        # model), without building a DMatrix: the fast path for one record and for big batches alike.
        X = np.ascontiguousarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.schema.n_features:
            raise ValueError(f"expected a (n, {self.schema.n_features}) matrix, received shape {X.shape}")
        if not len(X):
            return np.empty(0, dtype=np.float64)
        if self._predict is None or self._predict[0] is not self.booster:
            self._predict = (self.booster, xgboost_predict.predictor(self.booster))
        return self._predict[1](X)

    # -- artifacts ------------------------------------------------------------------------------------------------
    def save(self, model_dir: Path) -> list[Path]:
        model_dir = Path(model_dir)
        model_dir.mkdir(parents=True, exist_ok=True)
        model_path = model_dir / MODEL_FILE
        self.booster.save_model(str(model_path))
        return [model_path, self.schema.save(model_dir / schema_mod.FILENAME)]

    @classmethod
    def load(cls, model_dir: Path, *, threads: int | None = None) -> Self:
        model_dir = Path(model_dir)
        path = model_dir / MODEL_FILE
        schema_path = model_dir / schema_mod.FILENAME
        for p in (path, schema_path):
            if not p.is_file():
                raise UserError(
                    f"model file {p} not found (an xgboost model directory holds {MODEL_FILE} and "
                    f"{schema_mod.FILENAME})"
                )
        schema = Schema.load(schema_path)
        booster = xgb.Booster()
        try:
            booster.load_model(str(path))
        except xgb.core.XGBoostError:
            # XGBoost's message quotes the file's first byte: never echo a file's contents.
            raise UserError(f"model file {path}: not a readable XGBoost model (XGBoost's JSON format)") from None
        if booster.num_features() != schema.n_features:
            raise UserError(
                f"model file {path}: expects {booster.num_features()} features, but {schema_path} "
                f"declares {schema.n_features}"
            )
        if threads:
            booster.set_param({"nthread": threads})
        config = json.loads(booster.save_config())
        params = {"objective": config["learner"]["objective"]["name"]}
        model = cls(params, schema, booster)
        model.best_iteration = booster.num_boosted_rounds() - 1
        return model


class _Blocks(xgb.DataIter):
    """A Dataset's rows a block at a time, for XGBoost's iterator-built QuantileDMatrix (it reads them a few times)."""

    ROWS = 1 << 17

    def __init__(self, ds: Dataset, feature_types: list[str]):
        self._ds, self._types = ds, feature_types
        self._blocks: Iterator[tuple[np.ndarray, np.ndarray]] | None = None
        super().__init__(release_data=True)

    def reset(self) -> None:
        self._blocks = None

    def next(self, input_data: Callable[..., None]) -> bool:
        if self._blocks is None:
            self._blocks = self._ds.blocks(self.ROWS)
        block = next(self._blocks, None)
        if block is None:
            return False
        X, y = block
        input_data(data=X, label=y, feature_types=self._types)
        return True


def _check_labels(ds: Dataset, objective: str) -> None:
    if objective not in LABEL_DOMAINS:
        return
    bound, excluded, words = LABEL_DOMAINS[objective]
    outside = np.flatnonzero(ds.y <= bound if excluded else ds.y < bound)
    if outside.size:
        row = int(outside[0])
        raise UserError(
            f"channel '{ds.name}': objective {objective} takes {words}, but row {row + 1} (in file order) has label "
            f"{ds.y[row]:.10g} ({outside.size} of {len(ds)} rows)"
        )


class _Monitor(xgb.callback.TrainingCallback):
    """Per-round metrics to the MetricLog, early stopping, and checkpoints, in one pass over XGBoost's evals log.

    Validation metrics every round (early stopping watches them); train metrics on the first round, every
    ``train_every`` rounds and the last. r2 = 1 - rmse^2 / var(y) and mse = rmse^2 come free from XGBoost's own
    rmse, computed on its cached predictions.
    """

    def __init__(
        self,
        log: MetricLog,
        variances,
        metric: str,
        patience: int,
        checkpoints: Checkpoints,
        start,
        evals=(),
        *,
        train_every: int = 1,
        last_round: int = -1,
    ):
        super().__init__()
        self.evals = evals  # (matrix, split) of train, then validation if any
        self.train_every, self.last_round = train_every, last_round
        self.fitted: dict[str, np.ndarray] = {}
        self.fitted_rounds = -1
        self.log, self.variances, self.metric, self.patience = log, variances, metric, patience
        self.checkpoints = checkpoints
        self.best_iteration: int | None = None
        self.best_score = float("inf")
        self.since_best = 0
        self.offset = 0
        if start is not None:  # continue the early-stopping state of the interrupted run
            attrs = start.attributes()
            if "best_iteration" in attrs:
                self.best_iteration = int(attrs["best_iteration"])
                self.best_score = float(attrs["best_score"])
                self.since_best = int(attrs.get("rounds_since_best", 0))

    @property
    def stopped(self) -> bool:
        return bool(self.patience) and self.since_best >= self.patience

    def before_training(self, model):
        self.offset = model.num_boosted_rounds()  # XGBoost counts epochs from 0 again when continuing
        return model

    def after_iteration(self, model, epoch: int, evals_log) -> bool:
        iteration = self.offset + epoch
        stopping = self._early_stopping(model, iteration, evals_log)
        if iteration % self.train_every == 0 or iteration >= self.last_round or stopping:
            # XGBoost's own evaluation, on the predictions it caches for the training matrix (every host's rows)
            text = model.eval_set([(self.evals[0][0], "train")], iteration)
            values = dict(item.split(":", 1) for item in text.split()[1:])
            self._log("train", float(values["train-rmse"]), float(values["train-mae"]), iteration)
        for split, history in evals_log.items():
            self._log(split, float(history["rmse"][-1]), float(history["mae"][-1]), iteration)
        self.checkpoints.save(model)
        return stopping

    def _log(self, split: str, rmse: float, mae: float, iteration: int) -> None:
        mse = rmse * rmse
        metrics = {"rmse": rmse, "mae": mae, "r2": r2_from_mse(mse, self.variances[split]), "mse": mse}
        self.log(split, metrics, iteration)

    def _early_stopping(self, model, iteration: int, evals_log) -> bool:
        if self.patience and "validation" in evals_log:
            score = float(evals_log["validation"][self.metric][-1])
            if score < self.best_score:
                self.best_score, self.best_iteration, self.since_best = score, iteration, 0
            else:
                self.since_best += 1
            model.set_attr(
                best_iteration=str(self.best_iteration),
                best_score=repr(self.best_score),
                rounds_since_best=str(self.since_best),
            )
        return self.stopped

    def after_training(self, model):
        # xgb.train ends with Booster.reset(), which drops the prediction cache of the training matrices: read it
        # here, where it costs a copy (predicting 1M training rows afresh took ~10% of a job, benchmarks/training).
        self.fitted = {split: model.predict(dmatrix).astype(np.float64) for dmatrix, split in self.evals}
        self.fitted_rounds = model.num_boosted_rounds()
        return model


class Checkpoints:
    """xgboost-checkpoint-<rounds>.ubj files in the checkpoint directory, written atomically."""

    def __init__(self, directory: Path | None, frequency: int, schema: Schema):
        self.directory, self.frequency, self.schema = directory, frequency, schema

    def _existing(self) -> list[tuple[int, Path]]:
        found: list[tuple[int, Path]] = []
        if self.directory is None:
            return found
        for p in self.directory.iterdir() if self.directory.is_dir() else ():
            m = CHECKPOINT_PATTERN.match(p.name)
            if m:
                found.append((int(m.group(1)), p))
        return sorted(found, reverse=True)

    def resume(self):
        """The newest readable checkpoint that fits this job's features, or None."""
        for stale in self.directory.glob(".xgboost-checkpoint-*.tmp-*") if self.directory.is_dir() else ():
            stale.unlink(missing_ok=True)  # a write the interruption cut short
        for rounds, path in self._existing():
            booster = xgb.Booster()
            try:
                booster.load_model(str(path))
            except xgb.core.XGBoostError as e:
                logger.warning("ignoring checkpoint %s: unreadable (%s)", path, str(e).splitlines()[0])
                continue
            if booster.num_boosted_rounds() != rounds or booster.num_features() != self.schema.n_features:
                logger.warning(
                    "ignoring checkpoint %s: %d rounds, %d features; expected %d rounds, %d features",
                    path,
                    booster.num_boosted_rounds(),
                    booster.num_features(),
                    rounds,
                    self.schema.n_features,
                )
                continue
            if list(booster.feature_types or []) != self.schema.xgboost_feature_types():
                logger.warning("ignoring checkpoint %s: its feature types differ from this job's schema", path)
                continue
            logger.info("found checkpoint %s (%d rounds)", path, rounds)
            return booster
        return None

    def save(self, booster, *, final: bool = False) -> None:
        if self.directory is None:
            return
        rounds = booster.num_boosted_rounds()
        if not rounds or (not final and rounds % self.frequency):
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / f"xgboost-checkpoint-{rounds}.ubj"
        if final and path.exists():
            return
        tmp = self.directory / f".{path.name}.tmp-{os.getpid()}.ubj"  # the suffix picks XGBoost's UBJ format
        booster.save_model(str(tmp))
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
        for _, old in self._existing()[CHECKPOINTS_KEPT:]:
            old.unlink(missing_ok=True)
