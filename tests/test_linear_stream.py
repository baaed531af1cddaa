"""The linear model trains from row blocks: it never reads a channel whole (``Dataset.X``/``y``), never more than one
block at a time, fits the same model however the rows are split among hosts, and its memory does not grow with the
number of rows."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from algorithms import distributed, linear
from algorithms.base import BLOCK_ROWS, Dataset, TrainingContext
from algorithms.linear import LinearRegressor
from core.schema import CATEGORICAL, Feature, Schema

REPO = Path(__file__).resolve().parents[1]
SCHEMA = Schema(
    (Feature("a"), Feature("b"), Feature("c"), Feature("color", CATEGORICAL, ("blue", "green", "red")),
     Feature("size", CATEGORICAL, ("L", "M", "S", "XL"))),
    "y",
)  # fmt: skip


def synthetic(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Numbers and level codes with some missing values; a linear label with noise."""
    rng = np.random.default_rng(seed)
    X = np.empty((n, 5))
    X[:, :3] = rng.normal(size=(n, 3)) * [1.0, 10.0, 0.1] + [0.0, 50.0, 1.0]
    X[:, 3] = rng.integers(0, 3, n)
    X[:, 4] = rng.integers(0, 4, n)
    X[rng.random(n) < 0.02, 0] = np.nan
    X[rng.random(n) < 0.02, 3] = np.nan
    color, size = np.array([0.0, 1.5, -2.0]), np.array([0.3, 0.0, 1.0, -1.0])
    y = 2.0 * np.nan_to_num(X[:, 0]) - 0.1 * X[:, 1] + 5.0 * X[:, 2] + rng.normal(scale=0.5, size=n)
    y += np.where(np.isnan(X[:, 3]), 0.0, color[np.nan_to_num(X[:, 3]).astype(int)]) + size[X[:, 4].astype(int)]
    return X, y


class Recorder:
    def __init__(self):
        self.calls: list[tuple[str, dict, int | None]] = []

    def __call__(self, split, metrics, iteration=None):
        self.calls.append((split, dict(metrics), iteration))


def params(**raw) -> dict:
    return LinearRegressor.hyperparameters.validate({k: str(v) for k, v in raw.items()})


def coefficients(model: LinearRegressor) -> np.ndarray:
    assert model.document is not None
    return np.array([model.document["intercept"], *(c["coefficient"] for c in model.document["columns"])])


class BlocksOnly(Dataset):
    """A channel that can only be read in row blocks: X and y raise; rows() records the largest request."""

    def __init__(self, name: str, X: np.ndarray, y: np.ndarray):
        super().__init__(name, X, y)
        self.largest = 0
        self.rows_read = 0

    def rows(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        X, y = super().rows(start, stop)
        self.largest = max(self.largest, len(y))
        self.rows_read += len(y)
        return X.copy(), y.copy()

    @property
    def X(self) -> np.ndarray:
        raise AssertionError(f"channel {self.name}: X read whole")

    @property
    def y(self) -> np.ndarray:
        raise AssertionError(f"channel {self.name}: y read whole")


@pytest.mark.parametrize("mini_batch_size", [1000, 3 * BLOCK_ROWS // 2])
def test_fit_reads_only_row_blocks_and_fits_the_in_memory_model(mini_batch_size):
    X, y = synthetic(3 * BLOCK_ROWS + 1234)
    Xv, yv = synthetic(BLOCK_ROWS + 17, seed=1)
    train, validation = BlocksOnly("train", X, y), BlocksOnly("validation", Xv, yv)
    hp = params(epochs=3, mini_batch_size=mini_batch_size)
    rec = Recorder()
    model = LinearRegressor(hp, SCHEMA).fit(train, validation, log=rec)

    assert 0 < train.largest <= BLOCK_ROWS and 0 < validation.largest <= BLOCK_ROWS
    assert train.rows_read >= len(y) * (model.epochs_run + 2)  # whole passes, through rows() only
    # The same model as from the rows in memory, bit for bit, and it predicts well.
    plain = LinearRegressor(hp, SCHEMA).fit(Dataset("train", X, y), Dataset("validation", Xv, yv), log=Recorder())
    np.testing.assert_array_equal(coefficients(model), coefficients(plain))
    assert rec.calls[-1][0] == "validation" and rec.calls[-1][1]["r2"] > 0.95


# -- several hosts, in one process -------------------------------------------------------------------------------------
class _Shared:
    def __init__(self, world: int):
        self.slots: list[np.ndarray | None] = [None] * world
        self.barrier = threading.Barrier(world, timeout=60)


class ThreadCollective(distributed.Collective):
    """Hosts as threads of this process: every allreduce waits for all of them (a missing call times out)."""

    def __init__(self, shared: _Shared, rank: int, world: int):
        self.shared, self.rank, self.world_size = shared, rank, world
        self.hosts = tuple(f"algo-{i + 1}" for i in range(world))

    def _reduce(self, a: np.ndarray, op: str) -> np.ndarray:
        self.shared.slots[self.rank] = a.copy()
        self.shared.barrier.wait()
        stacked = np.stack([s for s in self.shared.slots if s is not None])
        reduce = {"sum": np.add, "max": np.maximum, "min": np.minimum}[op]
        out = reduce.reduce(stacked, axis=0).astype(a.dtype)
        self.shared.barrier.wait()  # everyone has read the slots before the next call writes them
        return out


def fit_on_hosts(cuts: list[int], cuts_val: list[int], train: Dataset, validation: Dataset, hp: dict):
    """Fit on len(cuts) - 1 hosts in threads, host r holding rows [cuts[r], cuts[r + 1]) of each channel."""
    world = len(cuts) - 1
    shared = _Shared(world)
    models: list[LinearRegressor | None] = [None] * world
    logs = [Recorder() for _ in range(world)]
    errors: list[BaseException] = []

    def host(rank: int) -> None:
        try:
            context = TrainingContext(collective=ThreadCollective(shared, rank, world))
            models[rank] = LinearRegressor(hp, SCHEMA).fit(
                train.window(cuts[rank], cuts[rank + 1]),
                validation.window(cuts_val[rank], cuts_val[rank + 1]),
                log=logs[rank],
                context=context,
            )
        except BaseException as e:  # reported by the test
            errors.append(e)
            shared.barrier.abort()

    threads = [threading.Thread(target=host, args=(r,)) for r in range(world)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    if errors:
        raise errors[0]
    return models, logs


SETTINGS = {
    "adam from ridge": {},
    "huber, l1, sgd, no bias, from uniform": dict(loss="huber_loss", l1=0.001, optimizer="sgd", use_bias="false",
                                                  init_method="uniform"),
    "absolute loss, wd, normal start, sampled scaler": dict(loss="absolute_loss", wd=0.01, init_method="normal",
                                                            num_point_for_scaler=500),
}  # fmt: skip


@pytest.mark.parametrize("setting", SETTINGS)
@pytest.mark.parametrize("cuts", [[0, 7001, 30000], [0, 9999, 10000, 30000], [0, 1, 20001, 30000]])
def test_hosts_fit_the_one_host_model_however_rows_are_split(monkeypatch, setting, cuts):
    # Small pieces, so that 30,000 rows are 30 pieces of 1,000 rows (four shuffle buffers of 8 pieces, spans of
    # 2,000 rows) and host boundaries fall inside pieces, spans and mini-batches.
    monkeypatch.setattr(linear, "BLOCK_ROWS", 2048)
    monkeypatch.setattr(linear, "_PIECE_ROWS", 1000)
    monkeypatch.setattr(linear, "_SHUFFLE_ROWS", 8000)
    X, y = synthetic(30000)
    Xv, yv = synthetic(3000, seed=1)
    train, validation = Dataset("train", X, y), Dataset("validation", Xv, yv)
    hp = params(epochs=3, mini_batch_size=250, **SETTINGS[setting])
    single = LinearRegressor(hp, SCHEMA).fit(train, validation, log=(single_log := Recorder()))
    cuts_val = [0, 0, *[3000] * (len(cuts) - 2)]  # the first host holds no validation rows
    models, logs = fit_on_hosts(cuts, cuts_val, train, validation, hp)
    for model, log in zip(models, logs, strict=True):
        assert model is not None
        np.testing.assert_array_equal(coefficients(model), coefficients(single))
        assert (model.best_epoch, model.epochs_run) == (single.best_epoch, single.epochs_run)
        assert [(s, it) for s, _, it in log.calls] == [(s, it) for s, _, it in single_log.calls]
        for (_, got, _), (_, want, _) in zip(log.calls, single_log.calls, strict=True):
            assert got == pytest.approx(want, rel=1e-12)


def test_the_epoch_visits_every_row_once_in_mini_batches_of_global_rows(monkeypatch):
    """_shuffled over hosts: each batch is a set of global rows; together the hosts see every row once per epoch."""
    monkeypatch.setattr(linear, "_SHUFFLE_ROWS", 3600)  # 9 pieces of 1,200 rows (the last 400): 3 buffers
    n, piece, mbs = 10000, 1200, 300
    seen = []
    for offset, n_local in ((0, 3333), (3333, 4000), (7333, 2667)):
        part = np.arange(offset, offset + n_local, dtype=np.float64)[:, None] * np.ones((1, 5))
        rows = linear._Rows.__new__(linear._Rows)
        rows.ds, rows.schema, rows.piece, rows.name = Dataset("t", part, part[:, 0]), SCHEMA, piece, "t"
        rows.n_local, rows.n, rows.offset = n_local, n, offset
        batches = []
        for Xb, _, cut in linear._shuffled(rows, np.random.default_rng(5), mbs, (0.0, 1.0)):
            batches += [(Xb[r, 0].astype(int).tolist(), size) for r, size in cut]
        seen.append(batches)
    sizes = [size for _, size in seen[0]]
    assert sizes.count(mbs) == len(sizes) - 1 and sum(sizes) == n  # one short batch per epoch
    for parts in zip(*seen, strict=True):
        assert len({size for _, size in parts}) == 1
        assert sum(len(r) for r, _ in parts) == parts[0][1]
    everything = sorted(r for batches in seen for rows_, _ in batches for r in rows_)
    assert everything == list(range(n))


# -- memory ------------------------------------------------------------------------------------------------------------
CHILD = r"""
import json, os, resource, sys
import numpy as np
from algorithms.linear import LinearRegressor
from algorithms.store import RowStore, StoredDataset
from core.schema import Schema

def whole(self):
    raise AssertionError("a channel read whole")

StoredDataset.X = property(whole)  # the fit may read rows only through rows()/blocks()
StoredDataset.y = property(whole)

def on_disk(prefix, width):
    # The training job's own store with every row in its temporary file (BYOC_ROWS_IN_MEMORY_MB=0)
    store, n = RowStore(width, 0), os.path.getsize(prefix + ".y") // 8
    for start in range(0, n, 1 << 16):
        count = min(1 << 16, n - start)
        X = np.fromfile(prefix + ".X", count=count * width, offset=start * width * 8).reshape(count, width)
        store.append(X, np.fromfile(prefix + ".y", count=count, offset=start * 8))
    assert store.spilled
    return store.dataset("train")

def high_water_mark():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])

schema = Schema.from_dict(json.loads(sys.argv[2]))
train = on_disk(sys.argv[1], schema.n_features)
try:  # the peak of the fit alone: reset the high-water mark left by the imports (Linux >= 4.0)
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    reset = True
except OSError:
    reset = False
model = LinearRegressor({"epochs": 2}, schema).fit(train, log=lambda *a, **k: None)
peak = high_water_mark() if reset else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"peak": peak, "epochs": model.epochs_run}))
"""


def _write(prefix: Path, n: int) -> None:
    with open(f"{prefix}.X", "wb") as fx, open(f"{prefix}.y", "wb") as fy:
        for start in range(0, n, 200_000):
            X, y = synthetic(min(200_000, n - start), seed=start)
            X.tofile(fx)
            y.tofile(fy)


def test_peak_memory_does_not_grow_with_the_rows(tmp_path):
    """400,000 and 1,600,000 rows on disk: the fit's peak RSS differs by less than 30 MiB. (Holding the rows, as the
    model did before, cost ~0.3 KiB per row with these 5 features: ~340 MiB more for the larger channel.)

    The peak is the process's high-water mark reset just before the fit (/proc/self/clear_refs), so that the
    imports' own peak cannot hide the fit's; where that reset is refused, ru_maxrss of the whole child."""
    peaks = {}
    for n in (400_000, 1_600_000):
        prefix = tmp_path / f"rows-{n}"
        _write(prefix, n)
        proc = subprocess.run(
            [sys.executable, "-c", CHILD, str(prefix), json.dumps(SCHEMA.to_dict())],
            cwd=REPO, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-3000:]
        found = json.loads(proc.stdout)
        assert found["epochs"] == 2
        peaks[n] = found["peak"] / 1024  # KiB
    assert abs(peaks[1_600_000] - peaks[400_000]) < 30, peaks


@pytest.fixture(scope="module")
def car_rows():
    """100,000 synthetic used-car rows (cardata.synthetic, seed 0), encoded."""
    import pandas as pd

    from cardata import synthetic

    frame = pd.concat(t.to_pandas() for t in synthetic.generate(synthetic.fit(pd.read_csv(synthetic.REAL_CSV)),
                                                                 100_000, 0))  # fmt: skip
    schema = Schema.infer(frame, "price")
    return schema, schema.encode(frame[schema.names]), frame["price"].to_numpy(np.float64)


def test_a_channel_sorted_by_the_label_trains_as_well_as_a_shuffled_one(monkeypatch, car_rows):
    """Mini-batches come from a buffer of many random pieces, so a channel sorted by the label (the worst order for
    a buffer of a few runs of consecutive rows) trains as well as the same rows shuffled. At this scale (pieces of
    400 rows, buffers of 25,600) the train R^2 is within 0.001 of the shuffled one; with 4 pieces of 6,400 rows per
    buffer it was 0.0125 below."""
    monkeypatch.setattr(linear, "_PIECE_ROWS", 400)
    monkeypatch.setattr(linear, "_SHUFFLE_ROWS", 25600)
    schema, X, y = car_rows
    hp = params(init_method="uniform", epochs=4, mini_batch_size=100)
    r2 = {}
    for order_name, order in (("shuffled", np.arange(len(y))), ("sorted", np.argsort(y, kind="stable"))):
        rec = Recorder()
        model = LinearRegressor(hp, schema).fit(Dataset("train", X[order], y[order]), log=rec)
        r2[order_name] = next(m["r2"] for s, m, it in rec.calls if s == "train" and it == model.best_epoch)
    assert r2["shuffled"] > 0.9
    assert r2["sorted"] > r2["shuffled"] - 0.004, r2
