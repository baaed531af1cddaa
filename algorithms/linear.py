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

Several hosts (algorithms.distributed) fit the same model as one host on all their rows: every statistic (imputation
means, scaler, ridge sufficient statistics, each mini-batch gradient, the monitored loss) is a sum over all hosts'
rows, computed exactly (Collective.dot) so that neither the split of rows among hosts nor their order changes a
bit; row i of rank r is global row offset_r + i for the scaler sample and the epoch permutations.

The model file ``linear-model.json`` is a plain JSON document whose coefficients are in the original feature
units, so a prediction is ``intercept + sum(coefficient * column)``; the scaler is recorded for information.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import numpy as np

from algorithms.base import Algorithm, Dataset, MetricLog, TrainingContext
from algorithms.distributed import SINGLE, Collective, ExactProducts
from algorithms.hyperparameters import Hyperparameter, HyperparameterSpec, OnlyWith, Tune
from algorithms.metrics import regression_metrics_across
from core.errors import DataError, HyperparameterError
from core.schema import FILENAME as SCHEMA_FILE
from core.schema import Schema

MODEL_FILE = "linear-model.json"
FORMAT = "sagemaker-byoc-linear-regressor"
FORMAT_VERSION = 1
_NO_CONTEXT = TrainingContext()  # one host
_SEED = 0  # LL has no seed hyperparameter; a fixed one makes every run reproducible


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


def _check_matrix(X: np.ndarray, schema: Schema, what: str) -> np.ndarray:
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
            f"{what}: row {i + 1}, feature {schema.names[numeric[k]]!r}: expected a finite number or a missing "
            f"value, received {X[i, numeric[k]]}"
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
        X = _check_matrix(train.X, self.schema, f"channel {train.name}")
        y = np.asarray(train.y, dtype=np.float64)
        if not np.isfinite(y).all():
            raise DataError(f"channel {train.name}: the label has missing or non-finite values")
        # Several hosts: every statistic below is a sum over all hosts' rows (comm.allreduce), row i of host r
        # being global row offset+i, so N hosts fit the model one host fits on the rows concatenated in rank order.
        n_local = len(y)
        counts = comm.counts(n_local)
        n, offset = int(counts.sum()), int(counts[: comm.rank].sum())
        if n == 0:
            raise DataError(f"channel {train.name}: no rows to train on")
        columns = _columns(self.schema)
        rng = np.random.default_rng(_SEED)  # the same draws on every host

        # Scaler and imputation means from at most num_point_for_scaler rows, as LL does.
        sample = None
        if n > s.num_point_for_scaler:
            sample = _local_rows(np.sort(rng.choice(n, s.num_point_for_scaler, replace=False)), offset, n_local)
        Xs, ys = (X, y) if sample is None else (X[sample], y[sample])
        numeric = np.array([level is None for _, level in columns])
        feature_of = np.array([j for j, _ in columns], dtype=np.intp)
        observed = ~np.isnan(Xs[:, feature_of[numeric]])
        n_sample = min(n, s.num_point_for_scaler)
        values = np.where(observed, Xs[:, feature_of[numeric]], 0.0)
        sums = _column_sums(np.hstack([values, observed]), comm, n_sample)
        k = int(numeric.sum())
        impute = np.zeros(len(columns))
        impute[numeric] = np.divide(sums[:k], sums[k:], out=np.zeros(k), where=sums[k:] > 0)
        center, scale = _scaler(_design(Xs, columns, impute), s.use_bias, s.normalize_data, comm)
        y_center, y_scale = _scaler(ys[:, None], s.use_bias, s.normalize_label, comm)
        # The scaled design with a column of ones beside it (the bias's gradient), without a second copy.
        p = len(columns)
        Z1 = np.empty((n_local, p + 1))
        _design(X, columns, impute, out=Z1[:, :p])
        Z1[:, :p] -= center
        Z1[:, :p] /= scale
        Z1[:, p] = 1.0
        Z = Z1[:, :p]
        t = (y - y_center[0]) / y_scale[0]

        # A column constant over the training data carries no information (a level never seen, a constant
        # numeric): its weight stays 0 so that it cannot pick up an arbitrary value. Without a bias a nonzero
        # constant column is the intercept, so it is kept.
        high = comm.allreduce(Z.max(axis=0) if n_local else np.full(p, -np.inf), "max")
        low = comm.allreduce(Z.min(axis=0) if n_local else np.full(p, np.inf), "min")
        first = comm.allreduce(Z[0] if offset == 0 and n_local else np.zeros(p))  # global row 0
        active = (high - low > 0) | ((not s.use_bias) & (np.abs(first) > 0))

        val = None
        n_val = int(comm.allreduce([len(validation) if validation is not None else 0])[0])
        if validation is not None and n_val:
            Xv = _check_matrix(validation.X, self.schema, f"channel {validation.name}")
            yv = np.asarray(validation.y, dtype=np.float64)
            if not np.isfinite(yv).all():
                raise DataError(f"channel {validation.name}: the label has missing or non-finite values")
            val = ((_design(Xv, columns, impute) - center) / scale, yv, (yv - y_center[0]) / y_scale[0])

        design = ExactProducts(comm, Z1, n)
        w, b = _initial_weights(Z, t, active, s, rng, comm, n, design)
        trainer = _Trainer(s, active, design)

        def evaluate(epoch: int) -> float:
            pt = Z @ w + b
            log("train", regression_metrics_across(y, y_center[0] + y_scale[0] * pt, comm), iteration=epoch)
            if val is None:
                return _mean_loss(pt - t, s, comm, n)
            pv = val[0] @ w + b
            log("validation", regression_metrics_across(val[1], y_center[0] + y_scale[0] * pv, comm), iteration=epoch)
            return _mean_loss(pv - val[2], s, comm, n_val)

        # The initial weights compete with the epochs only when they already minimise the training objective
        # (ridge start, squared loss, no L1); otherwise returning them would ignore the loss or l1 asked for.
        loss0 = evaluate(0)
        best_loss, best = (loss0, (w.copy(), b, 0)) if s.init_is_optimum else (math.inf, (w, b, 0))
        wait, epoch = 0, 0
        with np.errstate(over="ignore", invalid="ignore"):  # divergence is detected and reported below
            for epoch in range(1, s.epochs + 1):
                order = rng.permutation(n)
                for start in range(0, n, s.mini_batch_size):
                    idx = order[start : start + s.mini_batch_size]
                    size = len(idx)
                    if comm.distributed:
                        idx = _local_rows(idx, offset, n_local)
                    w, b = trainer.step(idx, Z[idx], t[idx], w, b, size)
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


def _mean_loss(r: np.ndarray, s: _Settings, comm: Collective, n: int) -> float:
    return float(_column_sums(_row_loss(r, s.loss, s.huber_delta)[:, None], comm, n)[0] / n)


def _initial_weights(
    Z: np.ndarray,
    t: np.ndarray,
    active: np.ndarray,
    s: _Settings,
    rng: np.random.Generator,
    comm: Collective = SINGLE,
    n: int | None = None,
    design: ExactProducts | None = None,
) -> tuple[np.ndarray, float]:
    """``design``: the exact-sum preparation of [Z, 1] (the trainer's), reused for the sufficient statistics."""
    p = Z.shape[1]
    n = len(t) if n is None else n  # every host's rows together
    w: np.ndarray = np.zeros(p)
    d = int(active.sum())
    if s.init_method == "uniform":
        w = rng.uniform(-s.init_scale, s.init_scale, (p,))
    elif s.init_method == "normal":
        w = rng.normal(0.0, s.init_sigma, (p,))
    elif d > len(t) and not getattr(comm, "distributed", False):
        # Minimiser of mean(0.5 r^2) + wd/2 |w|^2; lstsq gives the minimum-norm solution when one-hot columns
        # are collinear with the bias. Wide data on one host: the same solution from the n x n system,
        # O(n^2 d) instead of O(d^3); (A'A/n + wd I)^-1 A' = A' (AA'/n + wd I)^-1, and with wd = 0 both give the
        # minimum-norm solution.
        A = Z[:, active]
        A, tc = (A - A.mean(axis=0), t - t.mean()) if s.use_bias else (A, t)
        kernel = A @ A.T / n + s.wd * np.eye(len(t))
        w[active] = A.T @ np.linalg.lstsq(kernel, tc / n, rcond=None)[0]
    elif d:
        # Sufficient statistics [Z 1]'[Z 1] and [Z 1]'t in one exact pass over every host's rows. Z is centred by
        # the scaler (on a sample), so taking the remaining column means out of the uncentred sums loses nothing.
        if design is None:
            design = ExactProducts(comm, np.hstack([Z, np.ones((len(Z), 1))]), n)
        gram, zt = design.gram() / n, design.tdot(t[:, None])[:, 0] / n
        a = np.flatnonzero(active)
        means, t_mean = gram[a, p], zt[p]
        if s.use_bias:
            cov, rhs = gram[np.ix_(a, a)] - np.outer(means, means), zt[a] - means * t_mean
        else:
            cov, rhs = gram[np.ix_(a, a)], zt[a]
        w[active] = np.linalg.lstsq(cov + s.wd * np.eye(d), rhs, rcond=None)[0]
        if s.use_bias:
            return w, float(t_mean - means @ w[a])
    w = np.where(active, w, 0.0)
    b = float(_column_sums((t - Z @ w)[:, None], comm, n)[0] / n) if s.use_bias and s.init_method == "ridge" else 0.0
    return w, b


class _Trainer:
    """One mini-batch step of Adam or SGD on mean loss + wd/2 |w|^2 + l1 |w|_1.

    L1 uses the minimum-norm subgradient (a weight at zero stays there while |gradient| <= l1) and a weight
    whose step crosses zero stops at zero, so weights reach exactly 0.
    """

    def __init__(self, s: _Settings, active: np.ndarray, design: ExactProducts):
        self.s, self.active, self.design = s, active, design  # design: [Z, 1], for exact gradient sums
        p = len(active)
        self.m, self.v, self.mb, self.vb, self.t = np.zeros(p), np.zeros(p), 0.0, 0.0, 0

    def step(
        self, idx: np.ndarray, Zb: np.ndarray, tb: np.ndarray, w: np.ndarray, b: float, size: int
    ) -> tuple[np.ndarray, float]:
        """One step on a mini-batch of ``size`` rows over all hosts, of which rows ``idx`` are this host's."""
        s = self.s
        g_row = _loss_grad(Zb @ w + b - tb, s.loss, s.huber_delta)
        summed = self.design.tdot(g_row[:, None], idx)[:, 0] / size  # Z'g and sum(g), over every host
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
