"""Linear regressor plug-in, modelled on SageMaker's Linear Learner with ``predictor_type=regressor``.

Training, in the Linear Learner way:

* numeric features: missing values imputed with the training mean; categorical features one-hot encoded
  (one column per level; a missing or unknown level is all zeros, so it contributes nothing);
* a scaler fitted on ``num_point_for_scaler`` training rows centres every column and the label when
  ``use_bias`` (LL's ``unbias_*`` default) and scales them to unit deviation when ``normalize_data`` /
  ``normalize_label``;
* the weights start from the closed-form ridge solution of the squared loss (``init_method=ridge``, this
  image's default; LL's ``uniform`` and ``normal`` are there too), then ``epochs`` passes of mini-batch Adam or
  SGD minimise ``mean loss + wd/2 |w|^2 + l1 |w|_1`` (the bias is not penalised, as in LL);
* after every epoch train and validation RMSE/MAE/R^2/MSE are logged; early stopping watches the loss on the
  validation channel (on the training data when there is none, as LL does) and the best epoch's weights
  are kept. Iteration 0 is the initial weights.

Memory does not grow with the rows: training reads the channels only through ``Dataset.rows`` (never ``X`` or
``y`` whole), at most ``BLOCK_ROWS`` rows per call, and computes every statistic span by span (a span: about
``BLOCK_ROWS`` consecutive rows). Passes over the training rows: one for the checks, the scaler's sample, each
column's range and the label's mean; one for the ridge start's sufficient statistics and the label's variance;
one for the iteration-0 metrics; then, per epoch, one of mini-batch steps and one for the metrics and the
monitored loss. The validation channel: two passes (checks and mean; variance), then one per evaluation. What
stays in memory besides a span and the shuffle buffer (below; at most ~32 MiB of features): the scaler's sample
(``num_point_for_scaler`` rows) and, while it is drawn, numpy's choice of ``num_point_for_scaler`` of the ``n``
row numbers, which permutes all ``n`` (8 bytes per row, freed at once) when ``n`` <= 50 * ``num_point_for_scaler``
(500,000 rows by default) and takes O(``num_point_for_scaler``) above. No other array has a row's worth per row.

Mini-batches (changed from a permutation of all rows, which needs them all in memory): the rows, numbered
globally, are cut into pieces of whole mini-batches (``_PIECE_ROWS``: about 4,096 rows; one mini-batch when it is
larger). Each epoch visits the pieces in a seeded random order, about ``_SHUFFLE_ROWS`` (262,144) rows' worth at a
time (~64 pieces), permutes the rows of those pieces together and cuts them into mini-batches. So each
mini-batch mixes rows from ~64 random places of the channel rather than from all rows (Linear Learner also
shuffles within a buffer); on data that fits in one buffer this is a full shuffle. Every epoch has the same
number of steps as before and one short mini-batch at most.

Several hosts (algorithms.distributed) fit the same model as one host on all their rows: every statistic (imputation
means, scaler, ridge sufficient statistics, each mini-batch gradient, the metrics and the monitored loss) is a sum
over all hosts' rows, computed exactly (fixed-point grids: distributed.FixedGrid, BlockSums) so that neither the
split of rows among hosts nor their order changes a bit. Row i of rank r is global row offset_r + i for the scaler
sample, the spans, the pieces and the epoch permutations; every host draws the same permutations and keeps its own
rows of each mini-batch.

The model file ``linear-model.json`` is a plain JSON document whose coefficients are in the original feature
units, so a prediction is ``intercept + sum(coefficient * column)``; the scaler is recorded for information.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import numpy as np

from algorithms.base import BLOCK_ROWS, Algorithm, Dataset, MetricLog, TrainingContext
from algorithms.distributed import SINGLE, BlockSums, Collective, FixedGrid
from algorithms.hyperparameters import Hyperparameter, HyperparameterSpec, OnlyWith, Tune
from algorithms.metrics import r2_from_mse
from core.errors import DataError, HyperparameterError
from core.schema import FILENAME as SCHEMA_FILE
from core.schema import Schema

MODEL_FILE = "linear-model.json"
FORMAT = "sagemaker-byoc-linear-regressor"
FORMAT_VERSION = 1
_NO_CONTEXT = TrainingContext()  # one host
_SEED = 0  # LL has no seed hyperparameter; a fixed one makes every run reproducible
_PIECE_ROWS = 4096  # about this many rows (whole mini-batches) per piece, the unit an epoch shuffles
_SHUFFLE_ROWS = 1 << 18  # an epoch permutes the rows of this many rows' worth of random pieces together
_BUFFER_BYTES = 32 << 20  # at most about this many bytes of features in that buffer (very wide rows: fewer rows)
_CHUNK_ROWS = 4096  # rows of the design built at a time within a block (cache-sized; 2x faster than whole blocks)


@dataclass(frozen=True)
class _Param(Hyperparameter):
    """A Hyperparameter that may also accept Linear Learner's ``auto`` and explain a refusal."""

    auto: bool = False  # "auto" is accepted and passed on as the string "auto"
    hint: str = ""  # appended to the error message

    def allowed(self) -> str:
        return f"'auto' or {super().allowed()}" if self.auto else super().allowed()

    def parse(self, raw: Any) -> Any:
        text = raw if isinstance(raw, str) else str(raw)
        if self.auto and text.strip().lower() == "auto":
            return "auto"
        try:
            return super().parse(raw)
        except HyperparameterError as e:
            if not self.hint:
                raise
            raise HyperparameterError(f"{e}; {self.hint}") from None


# Linear Learner's names, defaults and ranges (docs: "Linear learner hyperparameters"); tuning ranges as LL's
# tunable hyperparameters (docs: "Tune a linear learner model").
HYPERPARAMETERS = HyperparameterSpec(
    [
        _Param(
            "predictor_type", str, "regressor", choices=("regressor",),
            hint="this image trains regressors only (binary_classifier and multiclass_classifier are not supported)",
            description="Only regressor is supported.",
        ),
        _Param("feature_dim", int, "auto", min=1, auto=True,
               description="Number of feature columns; checked against the data ('auto': taken from the data)."),
        Hyperparameter("epochs", int, 15, min=1, description="Maximum number of passes over the training data."),
        Hyperparameter("mini_batch_size", int, 1000, min=1, description="Rows per optimisation step.",
                       tune=Tune(100, 5000)),
        Hyperparameter("optimizer", str, "auto", choices=("auto", "adam", "sgd"), description="'auto' is adam."),
        _Param("learning_rate", float, "auto", min=0, min_exclusive=True, auto=True,
               description="Step size ('auto': sgd 0.05; adam 0.001 from the ridge optimum, else 0.01).",
               tune=Tune(1e-5, 1, "Logarithmic")),
        _Param("beta_1", float, "auto", min=0, max=1, max_exclusive=True, auto=True,
               description="Adam first-moment decay ('auto': 0.9)."),
        _Param("beta_2", float, "auto", min=0, max=1, max_exclusive=True, auto=True,
               description="Adam second-moment decay ('auto': 0.999)."),
        _Param("l1", float, "auto", min=0, auto=True, description="L1 penalty ('auto': 0; LL tunes it across "
               "parallel models, this image trains one).", tune=Tune(1e-7, 1, "Logarithmic")),
        _Param("wd", float, "auto", min=0, auto=True, description="L2 penalty (weight decay) ('auto': 0).",
               tune=Tune(1e-7, 1, "Logarithmic")),
        Hyperparameter("use_bias", bool, True, description="Fit an intercept (and centre data and label).",
                       tune=Tune()),
        _Param("normalize_data", bool, True, auto=True,
               description="Scale features to unit standard deviation ('auto': true)."),
        _Param("normalize_label", bool, "auto", auto=True,
               description="Scale the label to unit standard deviation ('auto': true for regression)."),
        Hyperparameter("num_point_for_scaler", int, 10000, min=1,
                       description="Training rows sampled to fit the scaler and the imputation means."),
        Hyperparameter("loss", str, "auto", choices=("auto", "squared_loss", "absolute_loss", "huber_loss"),
               description="'auto' is squared_loss."),
        Hyperparameter("huber_delta", float, 1.0, min=0, min_exclusive=True,
                       description="Huber loss threshold, in (normalised) label units."),
        Hyperparameter("init_method", str, "ridge", choices=("ridge", "uniform", "normal"),
               description="Initial weights: closed-form ridge solution (this image's default), or LL's "
               "uniform / normal draws."),
        Hyperparameter("init_scale", float, 0.07, min=0, min_exclusive=True,
                       description="Half-width of the uniform initial distribution (init_method=uniform)."),
        Hyperparameter("init_sigma", float, 0.01, min=0, min_exclusive=True,
                       description="Standard deviation of the normal initial distribution (init_method=normal)."),
        Hyperparameter("early_stopping_patience", int, 3, min=1,
                       description="Epochs without relative improvement before stopping (> epochs disables)."),
        Hyperparameter("early_stopping_tolerance", float, 0.001, min=0, min_exclusive=True,
                       description="Relative loss improvement below which an epoch counts as no improvement."),
    ],
    # Linear Learner's docs: beta_1/beta_2 apply to adam only, init_scale/init_sigma to their init_method; huber_delta
    # is the huber_loss threshold. Elsewhere the value would be ignored without a word.
    rules=[
        OnlyWith("beta_1", (("optimizer", ("auto", "adam")),)),
        OnlyWith("beta_2", (("optimizer", ("auto", "adam")),)),
        OnlyWith("huber_delta", (("loss", ("huber_loss",)),)),
        OnlyWith("init_scale", (("init_method", ("uniform",)),)),
        OnlyWith("init_sigma", (("init_method", ("normal",)),)),
    ],
)  # fmt: skip


@dataclass(frozen=True)
class _Settings:
    """The hyperparameters with every 'auto' resolved; what training actually used."""

    epochs: int
    mini_batch_size: int
    optimizer: str
    learning_rate: float
    beta_1: float
    beta_2: float
    l1: float
    wd: float
    use_bias: bool
    normalize_data: bool
    normalize_label: bool
    num_point_for_scaler: int
    loss: str
    huber_delta: float
    init_method: str
    init_scale: float
    init_sigma: float
    early_stopping_patience: int
    early_stopping_tolerance: float

    @classmethod
    def resolve(cls, params: Mapping[str, Any], schema: Schema) -> _Settings:
        p = {**HYPERPARAMETERS.defaults(), **params}
        if p["predictor_type"] != "regressor":
            # Reached only when params bypass HYPERPARAMETERS.validate (direct construction).
            raise HyperparameterError(
                f"hyperparameter 'predictor_type': received {p['predictor_type']!r}, expected regressor; "
                "this image trains regressors only"
            )
        if p["feature_dim"] != "auto" and p["feature_dim"] != schema.n_features:
            raise HyperparameterError(
                f"hyperparameter 'feature_dim': received {p['feature_dim']!r}, expected 'auto' or "
                f"{schema.n_features} (the number of feature columns: {', '.join(schema.names)})"
            )
        optimizer = "adam" if p["optimizer"] == "auto" else p["optimizer"]
        loss = "squared_loss" if p["loss"] == "auto" else p["loss"]

        def auto(name: str, value: Any) -> Any:
            return value if p[name] == "auto" else p[name]

        l1 = float(auto("l1", 0.0))
        if optimizer == "sgd":
            lr = 0.05
        elif _start_is_optimum(p["init_method"], loss, l1):
            # Adam moves every weight by about learning_rate per step however small the gradient, so from a
            # start that is already the optimum it only adds noise: keep that noise small.
            lr = 0.001
        else:
            lr = 0.01
        return cls(
            epochs=p["epochs"],
            mini_batch_size=p["mini_batch_size"],
            optimizer=optimizer,
            learning_rate=float(auto("learning_rate", lr)),
            beta_1=float(auto("beta_1", 0.9)),
            beta_2=float(auto("beta_2", 0.999)),
            l1=l1,
            wd=float(auto("wd", 0.0)),
            use_bias=bool(p["use_bias"]),
            normalize_data=bool(auto("normalize_data", True)),
            normalize_label=bool(auto("normalize_label", True)),
            num_point_for_scaler=p["num_point_for_scaler"],
            loss=loss,
            huber_delta=float(p["huber_delta"]),
            init_method=p["init_method"],
            init_scale=float(p["init_scale"]),
            init_sigma=float(p["init_sigma"]),
            early_stopping_patience=p["early_stopping_patience"],
            early_stopping_tolerance=float(p["early_stopping_tolerance"]),
        )

    @property
    def init_is_optimum(self) -> bool:
        """The closed-form start already minimises the training objective (squared loss + wd, no l1)."""
        return _start_is_optimum(self.init_method, self.loss, self.l1)

    def to_dict(self) -> dict[str, Any]:
        return {"predictor_type": "regressor", **self.__dict__}


def _start_is_optimum(init_method: str, loss: str, l1: float) -> bool:
    return init_method == "ridge" and loss == "squared_loss" and l1 == 0


# -- the one-hot layout ------------------------------------------------------------------------------------


def _columns(schema: Schema) -> list[tuple[int, int | None]]:
    """Design-matrix columns in schema order: (feature index, level index or None for a numeric feature)."""
    cols: list[tuple[int, int | None]] = []
    for j, f in enumerate(schema.features):
        if f.is_categorical:
            cols.extend((j, level) for level in range(len(f.levels)))
        else:
            cols.append((j, None))
    return cols


class _Design:
    """The scaled design [(design - center) / scale, 1] of a few rows at a time, (rows, p + 1), built column by
    column (column-major): each value is computed exactly as ``(_design(X) - center) / scale`` computes it."""

    def __init__(
        self, columns: list[tuple[int, int | None]], impute: np.ndarray, center: np.ndarray, scale: np.ndarray
    ):
        self.p = len(columns)
        self.numeric = [(k, j, float(impute[k]), float(center[k]), float(scale[k]))
                        for k, (j, level) in enumerate(columns) if level is None]  # fmt: skip
        # One-hot: table[:, code] holds the scaled columns of a row with that level; the last entry (a missing,
        # unknown or fractional code) is all indicators 0.
        self.onehot: list[tuple[int, int, np.ndarray]] = []
        for k, (j, level) in enumerate(columns):
            if level == 0:
                n_levels = sum(1 for jj, lv in columns if jj == j and lv is not None)
                c, s = center[k : k + n_levels, None], scale[k : k + n_levels, None]
                self.onehot.append((j, k, (np.eye(n_levels, n_levels + 1) - c) / s))

    def scaled(self, X: np.ndarray) -> np.ndarray:
        m = X.shape[0]
        AT = np.empty((self.p + 1, m), dtype=np.float64)
        for k, j, impute, c, s in self.numeric:
            col = X[:, j]
            if np.isnan(col).any():
                col = np.where(np.isnan(col), impute, col)
            np.subtract(col, c, out=AT[k])
            AT[k] /= s
        for j, k, table in self.onehot:
            AT[k : k + table.shape[0]] = table[:, _codes(X[:, j], table.shape[0])]
        AT[self.p] = 1.0
        return AT.T

    def predict(self, X: np.ndarray, w: np.ndarray, b: float) -> np.ndarray:
        """Z w + b (normalised label units), the design built _CHUNK_ROWS rows at a time."""
        out = np.empty(len(X))
        for start in range(0, len(X), _CHUNK_ROWS):
            out[start : start + _CHUNK_ROWS] = self.scaled(X[start : start + _CHUNK_ROWS])[:, : self.p] @ w + b
        return out


class _RawRanges:
    """Each design column's range over a channel's rows, from the raw values, block by block: numeric columns'
    largest and smallest value and whether any is missing (imputed), each level's row count; the label's range."""

    def __init__(self, columns: list[tuple[int, int | None]]):
        self.numeric = [(k, j) for k, (j, level) in enumerate(columns) if level is None]
        self.onehot = [(k, j, sum(1 for jj, lv in columns if jj == j and lv is not None))
                       for k, (j, level) in enumerate(columns) if level == 0]  # fmt: skip
        self.p = len(columns)
        self.high, self.low = np.full(self.p, -np.inf), np.full(self.p, np.inf)
        self.missing = np.zeros(self.p)
        self.counts = [np.zeros(n_levels + 1) for _, _, n_levels in self.onehot]
        self.y_high, self.y_low = -math.inf, math.inf

    def add(self, X: np.ndarray, y: np.ndarray) -> None:
        if not len(y):
            return
        for k, j in self.numeric:
            col = X[:, j]
            self.high[k] = max(self.high[k], float(np.fmax.reduce(col, initial=-np.inf)))
            self.low[k] = min(self.low[k], float(np.fmin.reduce(col, initial=np.inf)))
            self.missing[k] += float(np.isnan(col).any())
        for i, (_, j, n_levels) in enumerate(self.onehot):
            self.counts[i] += np.bincount(_codes(X[:, j], n_levels), minlength=n_levels + 1)
        self.y_high, self.y_low = max(self.y_high, float(y.max())), min(self.y_low, float(y.min()))

    def reduce(self, comm: Collective) -> None:
        self.high, self.low = comm.allreduce(self.high, "max"), comm.allreduce(self.low, "min")
        self.missing = comm.allreduce(self.missing)
        self.counts = [comm.allreduce(c) for c in self.counts]
        self.y_high = float(comm.allreduce([self.y_high], "max")[0])
        self.y_low = float(comm.allreduce([self.y_low], "min")[0])

    def scaled(self, design: _Design) -> tuple[np.ndarray, np.ndarray]:
        """The largest and smallest value of each column of [Z 1] (after ``reduce``: over every host's rows)."""
        high, low = np.ones(self.p + 1), np.ones(self.p + 1)
        for k, _, impute, c, s in design.numeric:
            top, bottom = self.high[k], self.low[k]
            if self.missing[k]:
                top, bottom = max(top, impute), min(bottom, impute)
            high[k], low[k] = (top - c) / s, (bottom - c) / s
        for (k, _, n_levels), counts, (_, _, table) in zip(self.onehot, self.counts, design.onehot, strict=True):
            total = counts.sum()
            for level in range(n_levels):
                one, zero = table[level, level], table[level, n_levels]  # the column's value for 1 and 0
                high[k + level] = one if counts[level] else zero
                low[k + level] = zero if total - counts[level] else one
        return high, low


def _codes(col: np.ndarray, n_levels: int) -> np.ndarray:
    """Level codes as indices; a missing (NaN), out-of-range or fractional code is ``n_levels``."""
    valid = (col >= 0) & (col < n_levels) & (col == np.floor(col))
    return np.where(valid, col, n_levels).astype(np.intp)


def _design(
    X: np.ndarray, columns: list[tuple[int, int | None]], impute: np.ndarray, out: np.ndarray | None = None
) -> np.ndarray:
    """The raw (unscaled) design matrix: numeric values with NaN imputed, one-hot indicators."""
    Z = np.empty((X.shape[0], len(columns)), dtype=np.float64) if out is None else out
    for k, (j, level) in enumerate(columns):
        if level is None:
            col = X[:, j]
            Z[:, k] = np.where(np.isnan(col), impute[k], col)
        else:
            Z[:, k] = X[:, j] == level  # NaN codes compare False: a missing level is all zeros
    return Z


def _check_matrix(X: np.ndarray, schema: Schema, what: str, first_row: int = 0) -> np.ndarray:
    """``first_row``: the row number of X's first row in its channel (0-based), for the error message."""
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or X.shape[1] != schema.n_features:
        raise DataError(
            f"{what}: expected a matrix with {schema.n_features} feature columns ({', '.join(schema.names)}), "
            f"received shape {X.shape}"
        )
    # An infinite number would silently turn every prediction (or the whole fit) into inf or NaN.
    numeric = [j for j, f in enumerate(schema.features) if not f.is_categorical]
    infinite = np.isinf(X[:, numeric])
    if infinite.any():
        i, k = np.argwhere(infinite)[0]
        raise DataError(
            f"{what}: row {first_row + i + 1}, feature {schema.names[numeric[k]]!r}: expected a finite number or a "
            f"missing value, received {X[i, numeric[k]]}"
        )
    return X


# -- losses and metrics ------------------------------------------------------------------------------------


def _row_loss(r: np.ndarray, kind: str, delta: float) -> np.ndarray:
    if kind == "squared_loss":
        return 0.5 * r * r
    if kind == "absolute_loss":
        return np.abs(r)
    a = np.abs(r)
    return np.where(a <= delta, 0.5 * r * r, delta * (a - 0.5 * delta))


def _loss_grad(r: np.ndarray, kind: str, delta: float) -> np.ndarray:
    """d loss / d prediction, per row."""
    if kind == "squared_loss":
        return r
    if kind == "absolute_loss":
        return np.sign(r)
    return np.clip(r, -delta, delta)


# -- the plug-in -------------------------------------------------------------------------------------------


class LinearRegressor(Algorithm):
    name = "linear"
    hyperparameters = HYPERPARAMETERS
    MODEL_FILES = (MODEL_FILE,)

    def __init__(self, params: Mapping[str, Any], schema: Schema):
        super().__init__(params, schema)
        self.document: dict[str, Any] | None = None  # the model file's content, once fitted or loaded
        self.best_epoch: int | None = None
        self.epochs_run: int | None = None

    # -- training ----------------------------------------------------------------------------------------
    def fit(
        self,
        train: Dataset,
        validation: Dataset | None = None,
        *,
        log: MetricLog,
        context: TrainingContext = _NO_CONTEXT,
    ) -> Self:
        s = _Settings.resolve(self.params, self.schema)
        comm = context.collective
        # Several hosts: every statistic below is a sum over all hosts' rows, row i of host r being global row
        # offset+i, so N hosts fit the model one host fits on the rows concatenated in rank order. Rows are read a
        # block at a time (Dataset.rows): memory does not grow with the rows.
        block = _piece_rows(s.mini_batch_size)
        tr = _Rows(train, comm, block, self.schema)
        n, offset, n_local = tr.n, tr.offset, tr.n_local
        if n == 0:
            raise DataError(f"channel {train.name}: no rows to train on")
        columns = _columns(self.schema)
        p = len(columns)
        rng = np.random.default_rng(_SEED)  # the same draws on every host

        # Pass 1: checks; the scaler's sample, at most num_point_for_scaler rows (the same global rows as LL draws
        # them: a seeded sample of all rows); the label's mean; each column's range (which columns carry
        # information, and the exact-sum grid), from the raw values: centring and scaling are monotone, so the
        # scaled design's range is the scaled raw range, bit for bit.
        sample = None
        if n > s.num_point_for_scaler:
            sample = _local_rows(np.sort(rng.choice(n, s.num_point_for_scaler, replace=False)), offset, n_local)
        picked: list[tuple[np.ndarray, np.ndarray]] = []
        y_sum = BlockSums(comm, 1, tr.span)
        ranges = _RawRanges(columns)
        first_row = None
        for lo, X, y in tr.blocks():
            if sample is None:
                picked.append((X, y))
            else:
                a, z = np.searchsorted(sample, [lo, lo + len(y)])
                picked.append((X[sample[a:z] - lo], y[sample[a:z] - lo]))
            y_sum.add([y])
            ranges.add(X, y)
            if offset == 0 and lo == 0 and len(y):
                first_row = X[:1].copy()  # global row 0
        ranges.reduce(comm)
        Xs = np.concatenate([x for x, _ in picked]) if picked else np.empty((0, self.schema.n_features))
        ys = np.concatenate([v for _, v in picked]) if picked else np.empty(0)
        del picked
        y_mean = float(y_sum.result()[0]) / n

        # Scaler and imputation means from the sample, as LL does.
        numeric = np.array([level is None for _, level in columns])
        feature_of = np.array([j for j, _ in columns], dtype=np.intp)
        observed = ~np.isnan(Xs[:, feature_of[numeric]])
        n_sample = min(n, s.num_point_for_scaler)
        values = np.where(observed, Xs[:, feature_of[numeric]], 0.0)
        sums = _column_sums(np.hstack([values, observed]), comm, n_sample)
        k = int(numeric.sum())
        impute = np.zeros(p)
        impute[numeric] = np.divide(sums[:k], sums[k:], out=np.zeros(k), where=sums[k:] > 0)
        center, scale = _scaler(_design(Xs, columns, impute), s.use_bias, s.normalize_data, comm)
        y_center, y_scale = _scaler(ys[:, None], s.use_bias, s.normalize_label, comm)
        del Xs, ys
        yc, ysc = float(y_center[0]), float(y_scale[0])
        design = _Design(columns, impute, center, scale)  # [Z 1] of any rows: the scaled design, a column of ones

        high, low = ranges.scaled(design)
        first = comm.allreduce(design.scaled(first_row)[0, :p] if first_row is not None else np.zeros(p))
        t_top = max(abs((ranges.y_high - yc) / ysc), abs((ranges.y_low - yc) / ysc))
        # A column constant over the training data carries no information (a level never seen, a constant
        # numeric): its weight stays 0 so that it cannot pick up an arbitrary value. Without a bias a nonzero
        # constant column is the intercept, so it is kept.
        active = (high[:p] - low[:p] > 0) | ((not s.use_bias) & (np.abs(first) > 0))
        grid = FixedGrid(comm, np.maximum(np.abs(high), np.abs(low)), n)

        val = None
        n_val = int(comm.allreduce([len(validation) if validation is not None else 0])[0])
        if n_val:
            val = _Rows(validation, comm, block, self.schema)
            v_sum = BlockSums(comm, 1, val.span)
            for _, _, yv in val.blocks():
                v_sum.add([yv])
            v_mean = float(v_sum.result()[0]) / n_val
            v_ss = BlockSums(comm, 1, val.span)
            for _, _, yv in val.blocks(check=False):
                v_ss.add([(yv - v_mean) ** 2])
            v_var = float(v_ss.result()[0]) / n_val

        # Pass 2: the label's variance (R^2) and, for the ridge start, its sufficient statistics.
        d = int(active.sum())
        ridge = s.init_method == "ridge"
        wide = ridge and d > n and not comm.distributed
        gram, zt, ssy = _statistics(tr, design, grid, (yc, ysc), t_top, y_mean, comm, ridge and not wide)
        y_var = ssy / n
        if wide:
            # Wide data on one host (fewer rows than columns): the n x n dual system, from the rows in memory
            # (n x p, smaller than the p x p primal system).
            Zw = np.concatenate([design.scaled(X)[:, :p] for _, X, _ in tr.blocks(check=False)])
            tw = np.concatenate([(y - yc) / ysc for _, _, y in tr.blocks(check=False)])
            w, b = _initial_weights(Zw, tw, active, s, rng, comm, n)
            del Zw, tw
        elif ridge:
            w, b = _ridge(gram / n, zt / n, active, s)
        else:
            w, b = _initial_weights(np.empty((0, p)), np.empty(0), active, s, rng, comm, n)
        trainer = _Trainer(s, active, grid)

        def measure(rows: _Rows, variance: float, w: np.ndarray, b: float) -> tuple[float, dict[str, float]]:
            """Mean loss (normalised units) and metrics (label units) over every host's rows of a channel."""
            sums = BlockSums(comm, 3, rows.span)
            for _, X, y in rows.blocks(check=False):
                pt = design.predict(X, w, b)
                err = (yc + ysc * pt) - y
                loss = _row_loss(pt - (y - yc) / ysc, s.loss, s.huber_delta)
                sums.add([loss, err * err, np.abs(err)])
            loss_sum, sse, sae = sums.result() / rows.n
            mse = float(sse)
            return float(loss_sum), {"rmse": math.sqrt(mse), "mae": float(sae), "r2": r2_from_mse(mse, variance),
                                     "mse": mse}  # fmt: skip

        def evaluate(epoch: int) -> float:
            loss, metrics = measure(tr, y_var, w, b)
            log("train", metrics, iteration=epoch)
            if val is None:
                return loss
            loss, metrics = measure(val, v_var, w, b)
            log("validation", metrics, iteration=epoch)
            return loss

        # The initial weights compete with the epochs only when they already minimise the training objective
        # (ridge start, squared loss, no L1); otherwise returning them would ignore the loss or l1 asked for.
        loss0 = evaluate(0)
        best_loss, best = (loss0, (w.copy(), b, 0)) if s.init_is_optimum else (math.inf, (w, b, 0))
        wait, epoch = 0, 0
        with np.errstate(over="ignore", invalid="ignore"):  # divergence is detected and reported below
            for epoch in range(1, s.epochs + 1):
                for Xb, tb, batches in _shuffled(tr, rng, s.mini_batch_size, (yc, ysc)):
                    for rows, size in batches:
                        w, b = trainer.step(design.scaled(Xb[rows]), tb[rows], w, b, size)
                monitored = evaluate(epoch) if np.isfinite(w).all() and math.isfinite(b) else math.inf
                if not math.isfinite(monitored):
                    raise HyperparameterError(
                        f"hyperparameter 'learning_rate': training diverged at epoch {epoch} with learning_rate="
                        f"{s.learning_rate:g} ({s.optimizer}); use a smaller learning_rate or normalize_data=true"
                    )
                # LL: an improvement counts only if it is at least `tolerance` of the previous best loss.
                significant = monitored < best_loss and (
                    best_loss == math.inf
                    or (best_loss > 0 and (best_loss - monitored) / best_loss >= s.early_stopping_tolerance)
                )
                if monitored < best_loss:
                    best_loss, best = monitored, (w.copy(), b, epoch)
                wait = 0 if significant else wait + 1
                if wait >= s.early_stopping_patience:
                    break

        w, b, self.best_epoch = best
        self.epochs_run = epoch
        # Back to original units: y = yc + ys * (b + sum w_k (x_k - c_k) / s_k).
        coef = np.where(active, y_scale[0] * w / scale, 0.0)
        intercept = float(y_center[0] + y_scale[0] * b - coef @ center)
        self.document = _document(
            self.schema, columns, coef, intercept, impute, center, scale, (y_center[0], y_scale[0]), s,
            best_epoch=self.best_epoch, epochs_run=self.epochs_run, monitored="train" if val is None else "validation",
        )  # fmt: skip
        self._compile()
        return self

    # -- prediction ----------------------------------------------------------------------------------------
    def _compile(self) -> None:
        """Dense weights for numeric columns and one lookup table per categorical feature (last entry: unknown)."""
        doc = self.document
        assert doc is not None
        cols = doc["columns"]
        num_idx, num_w, num_impute, tables = [], [], [], []
        k = 0
        for j, f in enumerate(self.schema.features):
            if f.is_categorical:
                coefs = [c["coefficient"] for c in cols[k : k + len(f.levels)]]
                tables.append((j, np.array([*coefs, 0.0], dtype=np.float64)))
                k += len(f.levels)
            else:
                num_idx.append(j)
                num_w.append(cols[k]["coefficient"])
                num_impute.append(cols[k]["impute"])
                k += 1
        self._intercept = float(doc["intercept"])
        self._num_idx = np.array(num_idx, dtype=np.intp)
        self._num_w = np.array(num_w, dtype=np.float64)
        self._num_impute = np.array(num_impute, dtype=np.float64)
        self._tables = tables

    def predict(self, X: np.ndarray) -> np.ndarray:
        if self.document is None:
            raise RuntimeError("predict() before fit() or load()")
        X = _check_matrix(X, self.schema, "prediction input")
        out = np.full(X.shape[0], self._intercept)
        if self._num_idx.size:
            Xn = X[:, self._num_idx]
            missing = np.isnan(Xn)
            if missing.any():
                Xn = np.where(missing, self._num_impute, Xn)
            out += Xn @ self._num_w
        for j, table in self._tables:
            code = X[:, j]
            unknown = len(table) - 1
            # NaN fails every comparison, so missing, out-of-range and fractional codes all land on `unknown`.
            valid = (code >= 0) & (code < unknown) & (code == np.floor(code))
            out += table[np.where(valid, code, unknown).astype(np.intp)]
        return out

    # -- artifacts -----------------------------------------------------------------------------------------
    def save(self, model_dir: Path) -> list[Path]:
        if self.document is None:
            raise RuntimeError("save() before fit()")
        model_dir = Path(model_dir)
        model_dir.mkdir(parents=True, exist_ok=True)
        path = model_dir / MODEL_FILE
        # allow_nan=False: a non-finite number must never reach a file that load() would then refuse.
        path.write_text(json.dumps(self.document, indent=2, allow_nan=False) + "\n")
        return [path, self.schema.save(model_dir / SCHEMA_FILE)]

    @classmethod
    def load(cls, model_dir: Path, *, threads: int | None = None) -> Self:
        # `threads` is accepted for the interface; prediction is one matrix-vector product and table lookups.
        model_dir = Path(model_dir)
        schema = Schema.load(model_dir / SCHEMA_FILE)
        path = model_dir / MODEL_FILE
        try:
            doc = json.loads(path.read_text())
        except OSError as e:
            raise DataError(f"cannot read the linear model: {e.strerror}", file=str(path)) from e
        except UnicodeDecodeError as e:
            raise DataError(f"not a JSON text: {e.reason}", file=str(path)) from e
        except json.JSONDecodeError as e:
            raise DataError(
                f"not valid JSON (truncated or corrupted?): {e.msg}", file=str(path), line=e.lineno, column=e.colno
            ) from e
        _validate_document(doc, schema, str(path))
        model = cls(doc["training"]["hyperparameters"], schema)
        model.document = doc
        model.best_epoch = doc["training"]["best_epoch"]
        model.epochs_run = doc["training"]["epochs_run"]
        model._compile()
        return model


# -- training helpers --------------------------------------------------------------------------------------


def _local_rows(global_rows: np.ndarray, offset: int, n_local: int) -> np.ndarray:
    """The global row numbers that are this host's (rows offset .. offset+n_local-1), as local indices."""
    mine = (global_rows >= offset) & (global_rows < offset + n_local)
    return global_rows[mine] - offset


def _piece_rows(mini_batch_size: int) -> int:
    """Rows per piece: whole mini-batches (at least one), about _PIECE_ROWS rows. The same on every host: piece g
    is global rows [g * piece, (g + 1) * piece)."""
    return max(1, _PIECE_ROWS // mini_batch_size) * mini_batch_size


class _Rows:
    """This host's rows of a channel within the global row numbering: host rank r holds global rows
    [offset, offset + n_local) (the hosts' rows concatenated in rank order). Passes over the rows go by spans of
    whole pieces (about BLOCK_ROWS rows): span g is global rows [g * span, (g + 1) * span)."""

    def __init__(self, ds: Dataset | None, comm: Collective, piece: int, schema: Schema):
        self.ds, self.schema, self.piece = ds, schema, piece
        self.span = piece * max(1, BLOCK_ROWS // piece)
        self.name = ds.name if ds is not None else ""
        self.n_local = len(ds) if ds is not None else 0
        if ds is not None and ds.n_features != schema.n_features:
            raise DataError(
                f"channel {ds.name}: expected a matrix with {schema.n_features} feature columns "
                f"({', '.join(schema.names)}), received shape ({len(ds)}, {ds.n_features})"
            )
        counts = comm.counts(self.n_local)
        self.n, self.offset = int(counts.sum()), int(counts[: comm.rank].sum())

    def local(self, start: int, stop: int) -> tuple[int, int]:
        """This host's rows [lo, hi) (local numbers) of global rows [start, stop); empty when it holds none."""
        lo = max(start, self.offset) - self.offset
        hi = min(stop, self.n, self.offset + self.n_local) - self.offset
        return lo, max(lo, hi)

    def read(self, lo: int, hi: int, check: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Local rows [lo, hi), never more than BLOCK_ROWS per Dataset.rows call."""
        if hi <= lo or self.ds is None:
            return np.empty((0, self.schema.n_features)), np.empty(0)
        parts = [self.ds.rows(a, min(hi, a + BLOCK_ROWS)) for a in range(lo, hi, BLOCK_ROWS)]
        X = np.asarray(parts[0][0] if len(parts) == 1 else np.concatenate([x for x, _ in parts]), dtype=np.float64)
        y = np.asarray(parts[0][1] if len(parts) == 1 else np.concatenate([v for _, v in parts]), dtype=np.float64)
        if check:
            _check_matrix(X, self.schema, f"channel {self.name}", first_row=lo)
            if not np.isfinite(y).all():
                raise DataError(f"channel {self.name}: the label has missing or non-finite values")
        return X, y

    def blocks(self, check: bool = True) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
        """(lo, X, y) of this host's rows of every span in order, possibly none: every host sees every span, so
        that collective calls made per span line up."""
        for start in range(0, self.n, self.span):
            lo, hi = self.local(start, start + self.span)
            yield (lo, *self.read(lo, hi, check))


def _shuffled(
    rows: _Rows, rng: np.random.Generator, mini_batch_size: int, label: tuple[float, float]
) -> Iterator[tuple[np.ndarray, np.ndarray, list[tuple[np.ndarray, int]]]]:
    """One epoch's mini-batches, a buffer at a time: (X, t, [(rows of X, global batch size), ...]).

    The global pieces (whole mini-batches, about _PIECE_ROWS rows) are visited in a seeded random order, about
    _SHUFFLE_ROWS rows' worth at a time; the rows of those pieces are permuted together and cut into mini-batches
    (only the buffer holding the last, shorter piece has a short batch). So a mini-batch mixes rows from ~64 places
    of the channel. Every host draws the same permutations over global rows and keeps its own rows of each batch:
    a batch is the same set of global rows however they are split.
    """
    yc, ys = label
    piece, n_features = rows.piece, rows.schema.n_features
    per_buffer = max(1, min(_SHUFFLE_ROWS, _BUFFER_BYTES // (8 * n_features)) // piece)
    n_pieces = -(-rows.n // piece)
    # One buffer for the whole epoch, filled piece by piece: the yielded X and t are views of it, overwritten by
    # the next buffer (the caller is done with them by then).
    size = min(rows.n_local, per_buffer * piece)
    X_buffer, t_buffer = np.empty((size, n_features)), np.empty(size)
    order = rng.permutation(n_pieces)
    for first in range(0, n_pieces, per_buffer):
        where, held = [], 0
        for g in order[first : first + per_buffer]:
            start, stop = int(g) * piece, min(rows.n, (int(g) + 1) * piece)
            lo, hi = rows.local(start, stop)
            mine = np.full(stop - start, -1, dtype=np.intp)  # buffer position -> row of X (-1: another host's)
            if hi > lo:
                X, y = rows.read(lo, hi, check=False)
                X_buffer[held : held + hi - lo] = X
                np.subtract(y, yc, out=t_buffer[held : held + hi - lo])
                at = rows.offset + lo - start
                mine[at : at + hi - lo] = np.arange(held, held + hi - lo)
                held += hi - lo
                del X, y
            where.append(mine)
        positions = np.concatenate(where)
        del where
        t_buffer[:held] /= ys
        perm = rng.permutation(len(positions))
        batches = []
        for start in range(0, len(perm), mini_batch_size):
            pos = positions[perm[start : start + mini_batch_size]]
            batches.append((pos[pos >= 0], len(pos)))
        del positions, perm
        yield X_buffer[:held], t_buffer[:held], batches


def _statistics(
    rows: _Rows,
    design: _Design,
    grid: FixedGrid,
    label: tuple[float, float],
    t_top: float,
    y_mean: float,
    comm: Collective,
    products: bool,
) -> tuple[np.ndarray, np.ndarray, float]:
    """One pass: the label's sum of squared deviations from ``y_mean`` and, with ``products``, the sufficient
    statistics [Z 1]'[Z 1] and [Z 1]'t over every host's rows, exactly (the fixed grid of [Z 1]'s columns, t's
    from its largest magnitude), summed block by block in int64: independent of how the rows are split or ordered."""
    yc, ys = label
    p1 = design.p + 1
    t_grid = FixedGrid(comm, np.array([t_top]), rows.n)
    exact = grid.exponent is not None and t_grid.exponent is not None  # else not finite: the caller reports it
    g_total = np.zeros((3, p1, p1), dtype=np.int64) if exact else np.zeros((p1, p1))
    t_total = np.zeros((3, p1, 1), dtype=np.int64) if exact else np.zeros((p1, 1))
    ssy = BlockSums(comm, 1, rows.span)
    for _, X, y in rows.blocks(check=False):
        ssy.add([(y - y_mean) ** 2])
        if not products or not len(y):
            continue
        for start in range(0, len(y), _CHUNK_ROWS):  # a few thousand rows at a time: they stay in cache
            A, t = design.scaled(X[start : start + _CHUNK_ROWS]), ((y[start : start + _CHUNK_ROWS] - yc) / ys)[:, None]
            if exact:
                gram_parts, t_parts = grid.local_products(A, *t_grid.split(t))
                g_total += gram_parts
                t_total += t_parts
            else:
                g_total += A.T @ A
                t_total += A.T @ t
    if not products:
        return np.zeros((p1, p1)), np.zeros(p1), float(ssy.result()[0])
    if not exact:
        return comm.allreduce(g_total), comm.allreduce(t_total)[:, 0], float(ssy.result()[0])
    assert grid.exponent is not None and t_grid.exponent is not None
    gram = grid.combine(comm.allreduce(g_total), grid.exponent, grid.exponent)
    zt = grid.combine(comm.allreduce(t_total), grid.exponent, t_grid.exponent)[:, 0]
    return gram, zt, float(ssy.result()[0])


def _ridge(gram: np.ndarray, zt: np.ndarray, active: np.ndarray, s: Any) -> tuple[np.ndarray, float]:
    """The ridge start from the mean sufficient statistics [Z 1]'[Z 1]/n and [Z 1]'t/n. Z is centred by the
    scaler (on a sample), so taking the remaining column means out of the uncentred sums loses nothing."""
    p = len(active)
    w: np.ndarray = np.zeros(p)
    a = np.flatnonzero(active)
    means, t_mean = gram[a, p], zt[p]
    if len(a):
        if s.use_bias:
            cov, rhs = gram[np.ix_(a, a)] - np.outer(means, means), zt[a] - means * t_mean
        else:
            cov, rhs = gram[np.ix_(a, a)], zt[a]
        w[a] = np.linalg.lstsq(cov + s.wd * np.eye(len(a)), rhs, rcond=None)[0]
    return w, (float(t_mean - means @ w[a]) if s.use_bias else 0.0)


def _scaler(Z: np.ndarray, centre: bool, normalise: bool, comm: Collective = SINGLE) -> tuple[np.ndarray, np.ndarray]:
    """Per-column centre and scale. Without centring, scale to unit root-mean-square instead of unit deviation."""
    p = Z.shape[1]
    n = int(comm.allreduce([len(Z)])[0])
    center = _column_sums(Z, comm, n) / n if centre else np.zeros(p)
    if normalise:
        scale = np.sqrt(_column_sums((Z - center) ** 2, comm, n) / n)
        scale = np.where(np.isfinite(scale) & (scale > 0), scale, 1.0)
    else:
        scale = np.ones(p)
    return center, scale


def _column_sums(M: np.ndarray, comm: Collective, rows: int) -> np.ndarray:
    """Column sums over every host's rows, independent of how rows are split (Collective.column_sums)."""
    return comm.column_sums(M, rows)


def _initial_weights(
    Z: np.ndarray,
    t: np.ndarray,
    active: np.ndarray,
    s: _Settings,
    rng: np.random.Generator,
    comm: Collective = SINGLE,
    n: int | None = None,
) -> tuple[np.ndarray, float]:
    """The initial weights of the uniform and normal draws, and the ridge start of wide data on one host from
    its rows in memory (fit computes the other ridge starts from streamed sufficient statistics: _ridge)."""
    p = Z.shape[1]
    n = len(t) if n is None else n  # every host's rows together
    w: np.ndarray = np.zeros(p)
    d = int(active.sum())
    if s.init_method == "uniform":
        w = rng.uniform(-s.init_scale, s.init_scale, (p,))
    elif s.init_method == "normal":
        w = rng.normal(0.0, s.init_sigma, (p,))
    elif d:
        # Ridge, only for wide data on one host: fit takes every other ridge start from _ridge over streamed sums.
        assert d > len(t) and not getattr(comm, "distributed", False), "narrow or multi-host ridge start: _ridge"
        # Minimiser of mean(0.5 r^2) + wd/2 |w|^2; lstsq gives the minimum-norm solution when one-hot columns
        # are collinear with the bias. Wide data on one host: the same solution from the n x n system,
        # O(n^2 d) instead of O(d^3); (A'A/n + wd I)^-1 A' = A' (AA'/n + wd I)^-1, and with wd = 0 both give the
        # minimum-norm solution.
        A = Z[:, active]
        A, tc = (A - A.mean(axis=0), t - t.mean()) if s.use_bias else (A, t)
        kernel = A @ A.T / n + s.wd * np.eye(len(t))
        w[active] = A.T @ np.linalg.lstsq(kernel, tc / n, rcond=None)[0]
    w = np.where(active, w, 0.0)
    b = float(_column_sums((t - Z @ w)[:, None], comm, n)[0] / n) if s.use_bias and s.init_method == "ridge" else 0.0
    return w, b


class _Trainer:
    """One mini-batch step of Adam or SGD on mean loss + wd/2 |w|^2 + l1 |w|_1.

    L1 uses the minimum-norm subgradient (a weight at zero stays there while |gradient| <= l1) and a weight
    whose step crosses zero stops at zero, so weights reach exactly 0.
    """

    def __init__(self, s: _Settings, active: np.ndarray, grid: FixedGrid):
        self.s, self.active, self.grid = s, active, grid  # grid: [Z 1]'s, for exact gradient sums over hosts
        p = len(active)
        self.m, self.v, self.mb, self.vb, self.t = np.zeros(p), np.zeros(p), 0.0, 0.0, 0

    def step(self, A: np.ndarray, tb: np.ndarray, w: np.ndarray, b: float, size: int) -> tuple[np.ndarray, float]:
        """One step on a mini-batch of ``size`` rows over all hosts, of which this host's are ``A`` ([Z 1])."""
        s = self.s
        g_row = _loss_grad(A[:, :-1] @ w + b - tb, s.loss, s.huber_delta)
        summed = self.grid.tdot(A, g_row[:, None])[:, 0] / size  # Z'g and sum(g), over every host
        g = summed[:-1] + s.wd * w
        gb = float(summed[-1]) if s.use_bias else 0.0
        if s.l1 > 0:
            at_zero = w == 0
            g = np.where(at_zero, np.sign(g) * np.maximum(np.abs(g) - s.l1, 0.0), g + s.l1 * np.sign(w))
        g = np.where(self.active, g, 0.0)
        if s.optimizer == "adam":
            self.t += 1
            b1, b2, eps = s.beta_1, s.beta_2, 1e-8
            self.m = b1 * self.m + (1 - b1) * g
            self.v = b2 * self.v + (1 - b2) * g * g
            self.mb = b1 * self.mb + (1 - b1) * gb
            self.vb = b2 * self.vb + (1 - b2) * gb * gb
            c1, c2 = 1 - b1**self.t, 1 - b2**self.t
            dw = s.learning_rate * (self.m / c1) / (np.sqrt(self.v / c2) + eps)
            db = s.learning_rate * (self.mb / c1) / (math.sqrt(self.vb / c2) + eps)
        else:
            dw, db = s.learning_rate * g, s.learning_rate * gb
        new = w - dw
        if s.l1 > 0:
            # Stop at zero instead of crossing it; keep a zero weight whose subgradient is zero where it is.
            crossed = (w != 0) & (np.sign(new) != np.sign(w))
            new = np.where(crossed | ((w == 0) & (g == 0)), 0.0, new)
        new = np.where(self.active, new, 0.0)
        return new, (b - db if s.use_bias else 0.0)


# -- the model document ------------------------------------------------------------------------------------


def _document(
    schema: Schema,
    columns: list[tuple[int, int | None]],
    coef: np.ndarray,
    intercept: float,
    impute: np.ndarray,
    center: np.ndarray,
    scale: np.ndarray,
    label: tuple[float, float],
    s: _Settings,
    *,
    best_epoch: int,
    epochs_run: int,
    monitored: str,
) -> dict[str, Any]:
    cols = []
    for k, (j, level) in enumerate(columns):
        f = schema.features[j]
        col: dict[str, Any] = {"feature": f.name}
        if level is None:
            col.update(type="numeric", coefficient=float(coef[k]), impute=float(impute[k]))
        else:
            col.update(type="one_hot", level=f.levels[level], coefficient=float(coef[k]))
        col.update(center=float(center[k]), scale=float(scale[k]))
        cols.append(col)
    return {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "predictor_type": "regressor",
        "prediction": "intercept + sum(coefficient * value); one_hot value is 1 for its level, else 0 "
        "(missing or unknown level: 0); a missing numeric value is replaced by impute",
        "intercept": intercept,
        "columns": cols,
        "label": {"center": float(label[0]), "scale": float(label[1])},
        "training": {
            "hyperparameters": s.to_dict(),
            "best_epoch": best_epoch,
            "epochs_run": epochs_run,
            "early_stopping_monitor": f"{monitored} {s.loss}",
        },
    }


def _validate_document(doc: Any, schema: Schema, source: str) -> None:
    """Raise DataError naming the first field of ``doc`` that does not describe a model for ``schema``."""

    def bad(field: str, expected: str, received: Any) -> DataError:
        shown = repr(received)
        if len(shown) > 80:
            shown = shown[:77] + "..."
        return DataError(f"field '{field}': expected {expected}, received {shown}", file=source)

    def number(obj: Mapping[str, Any], key: str, where: str) -> float:
        v = obj.get(key)
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            raise bad(f"{where}{key}", "a finite number", v)
        return float(v)

    if not isinstance(doc, dict):
        raise DataError(f"expected a JSON object, received {type(doc).__name__}", file=source)
    if doc.get("format") != FORMAT:
        raise bad("format", repr(FORMAT), doc.get("format"))
    if doc.get("version") != FORMAT_VERSION or isinstance(doc.get("version"), bool):
        raise bad("version", str(FORMAT_VERSION), doc.get("version"))
    number(doc, "intercept", "")
    expected = _columns(schema)
    cols = doc.get("columns")
    if not isinstance(cols, list) or len(cols) != len(expected):
        received = f"{len(cols)} entries" if isinstance(cols, list) else cols
        raise bad(
            "columns", f"a list of {len(expected)} entries (one per numeric feature and per categorical level "
            f"in {SCHEMA_FILE})", received
        )  # fmt: skip
    for k, (j, level) in enumerate(expected):
        f, c, where = schema.features[j], cols[k], f"columns[{k}]."
        if not isinstance(c, dict):
            raise bad(f"columns[{k}]", "an object", c)
        if c.get("feature") != f.name:
            raise bad(f"{where}feature", f"{f.name!r} (from {SCHEMA_FILE})", c.get("feature"))
        kind = "numeric" if level is None else "one_hot"
        if c.get("type") != kind:
            raise bad(f"{where}type", repr(kind), c.get("type"))
        if level is not None and c.get("level") != f.levels[level]:
            raise bad(f"{where}level", f"{f.levels[level]!r} (from {SCHEMA_FILE})", c.get("level"))
        for key in ("coefficient", "center", "scale", *(("impute",) if level is None else ())):
            number(c, key, where)
    label = doc.get("label")
    if not isinstance(label, dict):
        raise bad("label", "an object with center and scale", label)
    for key in ("center", "scale"):
        number(label, key, "label.")
    training = doc.get("training")
    if not isinstance(training, dict) or not isinstance(training.get("hyperparameters"), dict):
        raise bad("training.hyperparameters", "an object", None if not isinstance(training, dict) else
                  training.get("hyperparameters"))  # fmt: skip
    for key in ("best_epoch", "epochs_run"):
        v = training.get(key)
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise bad(f"training.{key}", "a non-negative integer", v)
