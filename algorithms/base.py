"""The plug-in interface every algorithm implements, shaped like scikit-learn's estimators.

    model = Algo(params, schema).fit(train, validation, log=log)
    model.predict(X)               # X: the schema-encoded float64 matrix (see core.schema)
    model.save(model_dir)          # writes exactly MODEL_FILES (+ schema.json); runs no code on load
    Algo.load(model_dir).predict(X)

Training (algorithms.train) and serving (serving.model) only ever talk to this interface.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
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


@dataclass(frozen=True)
class Dataset:
    """One channel, encoded: X is float64 (n, n_features) in schema order, y is float64 (n,)."""

    name: str
    X: np.ndarray
    y: np.ndarray

    def __len__(self) -> int:
        return self.X.shape[0]


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
