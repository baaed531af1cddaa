"""The plug-in interface every algorithm implements, shaped like scikit-learn's estimators.

    model = Algo(params, schema).fit(train, validation, log=log)
    model.predict(X)               # X: the schema-encoded float64 matrix (see core.schema)
    model.save(model_dir)          # writes exactly MODEL_FILES (+ schema.json); runs no code on load
    Algo.load(model_dir).predict(X)

Training (algorithms.train) and serving (serving.model) only ever talk to this interface.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol, Self

import numpy as np

from algorithms.distributed import SINGLE, Collective
from algorithms.hyperparameters import HyperparameterSpec
from core.schema import Schema

METADATA_FILE = "metadata.json"  # written by the training entry point beside the model; never loaded as one


def linked_files(directory: Path, names: Iterable[str]) -> list[Path]:
    """Those of ``directory/name`` that are symbolic links, or the directory itself when it is one.

    Training never writes through a link, and serving never reads one: a link can point anywhere (/etc/passwd).
    """
    directory = Path(directory)
    found = [directory] if directory.is_symlink() else []
    return found + [directory / n for n in names if (directory / n).is_symlink()]


BLOCK_ROWS = 1 << 16  # rows per block when a channel is read block by block


class Dataset:
    """One channel, encoded: float64 features (n, n_features) in schema order and a float64 label (n,).

    Algorithms read it in row blocks (``blocks``, ``rows``): a channel larger than memory stays on disk
    (algorithms.data spills it) and only a block at a time is in memory. ``X`` and ``y`` materialise the whole
    channel, for small data and for tests. ``window`` is a contiguous range of the same rows, without a copy.
    """

    def __init__(self, name: str, X: np.ndarray, y: np.ndarray):
        self.name = name
        self._X, self._y = X, y

    def __len__(self) -> int:
        return int(self._X.shape[0])

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, rows={len(self)}, features={self.n_features})"

    @property
    def n_features(self) -> int:
        return int(self._X.shape[1])

    def rows(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        """Features and label of rows [start, stop) (clipped to the channel)."""
        return self._X[start:stop], self._y[start:stop]

    def blocks(self, size: int = BLOCK_ROWS) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(X, y) of consecutive blocks of at most ``size`` rows, every row once, in row order."""
        for start in range(0, len(self), size):
            yield self.rows(start, start + size)

    @property
    def X(self) -> np.ndarray:
        return self._X

    @property
    def y(self) -> np.ndarray:
        return self._y

    def window(self, start: int, stop: int) -> Dataset:
        """Rows [start, stop) of this channel as a Dataset of their own."""
        return _Window(self, start, stop)


class _Window(Dataset):
    def __init__(self, base: Dataset, start: int, stop: int):
        n = len(base)
        self.name, self._base = base.name, base
        self._start, self._stop = min(max(start, 0), n), min(max(stop, 0), n)
        self._start = min(self._start, self._stop)

    def __len__(self) -> int:
        return self._stop - self._start

    @property
    def n_features(self) -> int:
        return self._base.n_features

    def rows(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        start, stop = self._start + max(start, 0), min(self._start + max(stop, 0), self._stop)
        return self._base.rows(start, max(start, stop))

    @property
    def X(self) -> np.ndarray:
        return self.rows(0, len(self))[0]

    @property
    def y(self) -> np.ndarray:
        return self.rows(0, len(self))[1]


class MetricLog(Protocol):
    """Where algorithms report metrics; the training entry point prints them in the MetricDefinitions format."""

    def __call__(self, split: str, metrics: Mapping[str, float], iteration: int | None = None) -> None: ...


@dataclass(frozen=True)
class TrainingContext:
    """What an algorithm may use from the environment besides its hyperparameters (never re-read from disk)."""

    checkpoint_dir: Path | None = None  # set when checkpointconfig.json configures checkpoints
    num_cpus: int = 1
    hosts: tuple[str, ...] = ("algo-1",)
    current_host: str = "algo-1"
    # The hosts training together (algorithms.distributed): sums of arrays over hosts. One host: the identity.
    collective: Collective = SINGLE


class Algorithm(ABC):
    name: ClassVar[str]
    hyperparameters: ClassVar[HyperparameterSpec]
    MODEL_FILES: ClassVar[tuple[str, ...]]  # exactly what save() writes and load() reads, besides schema.json

    def __init__(self, params: Mapping[str, Any], schema: Schema):
        self.params = dict(params)
        self.schema = schema

    @abstractmethod
    def fit(
        self,
        train: Dataset,
        validation: Dataset | None = None,
        *,
        log: MetricLog,
        context: TrainingContext = TrainingContext(),
    ) -> Self:
        """Train; report metrics through ``log`` (per iteration where the algorithm iterates)."""

    def fitted_predictions(self) -> Mapping[str, np.ndarray]:
        """Predictions of the final model on the channels it was fitted with (split -> array), where the
        algorithm has them for free; the training entry point predicts the rest."""
        return {}

    @abstractmethod
    def predict(self, X: np.ndarray) -> np.ndarray:
        """Predictions (float64, shape (n,)) for a schema-encoded matrix."""

    @abstractmethod
    def save(self, model_dir: Path) -> list[Path]:
        """Write MODEL_FILES and schema.json to ``model_dir``; return the paths written."""

    @classmethod
    @abstractmethod
    def load(cls, model_dir: Path, *, threads: int | None = None) -> Self:
        """Read exactly the files save() wrote. Raises core.errors.UserError with a one-line reason when
        they are missing or malformed. ``threads`` caps the numeric threads (serving runs one per worker)."""
