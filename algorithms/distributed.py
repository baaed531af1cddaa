"""Multi-host training on XGBoost's collective (xgboost.collective + xgboost.tracker.RabitTracker).

SageMaker starts the same image on every host of the job with the same config; resourceconfig.json lists
the hosts. As AWS's XGBoost container does:

1. every host waits until every host name resolves (bounded: BYOC_HOST_WAIT_SECONDS, default 300);
2. round one, all hosts: the tracker runs on the first host (sorted) on port BYOC_TRACKER_PORT (default 9099);
   the hosts tell each other whether their ``train`` channel holds data files. Hosts without data leave
   (exit 0, nothing written);
3. round two, the hosts with data, on the next port (the first one lingers in TIME_WAIT): they train
   together. Rank = position in the sorted list of hosts with data; the first of them writes the model and the
   evaluation.

A host that dies breaks every other host's next collective call at once (end of stream); a host that hangs does
after BYOC_COLLECTIVE_TIMEOUT seconds (default 1800: one collective call also waits for the slowest host's
work, e.g. reading its shard). Either way every host fails with the reason in /opt/ml/output/failure.

Everything an algorithm exchanges goes through :class:`Collective`: numpy arrays summed (or max/min) over
hosts. One host is a Collective too (the identity), so single- and multi-host training run one code path.
Nothing is pickled: xgboost.collective.broadcast pickles, so bytes travel as allreduced uint8 arrays.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import ClassVar

import numpy as np

from core.errors import ClusterError, ConfigurationError

log = logging.getLogger(__name__)

TRACKER_PORT = 9099
HOST_WAIT_SECONDS = 300.0
COLLECTIVE_TIMEOUT = 1800
# Tracker bootstrap: every host must have joined within this many seconds of the tracker's start.
BOOTSTRAP_TIMEOUT = 600
# Connection attempts to the tracker (xgboost backs off ~10-20 s between attempts: about 3.5 minutes).
CONNECT_RETRIES = 15


def _env_number(name: str, default: float, kind=float):
    raw = os.environ.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        value = kind(raw)
    except ValueError:
        value = None
    if value is None or value <= 0:
        raise ConfigurationError(f"environment variable {name}: received {raw!r}, expected a positive number")
    return value


@dataclass(frozen=True)
class Settings:
    tracker_port: int = TRACKER_PORT
    host_wait_seconds: float = HOST_WAIT_SECONDS
    collective_timeout: int = COLLECTIVE_TIMEOUT

    @classmethod
    def from_env(cls) -> Settings:
        return cls(
            tracker_port=_env_number("BYOC_TRACKER_PORT", TRACKER_PORT, int),
            host_wait_seconds=_env_number("BYOC_HOST_WAIT_SECONDS", HOST_WAIT_SECONDS),
            collective_timeout=_env_number("BYOC_COLLECTIVE_TIMEOUT", COLLECTIVE_TIMEOUT, int),
        )


# -- the collective ------------------------------------------------------------------------------------------------
class Collective:
    """Sums (and max/min) of numpy arrays over the hosts training together. This base class is one host."""

    rank = 0
    world_size = 1
    hosts: tuple[str, ...] = ()

    @property
    def is_master(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def _reduce(self, a: np.ndarray, op: str) -> np.ndarray:
        return a.copy()

    def allreduce(self, a, op: str = "sum") -> np.ndarray:
        """Elementwise ``op`` (sum, max, min) of ``a`` over hosts, same shape; float64 unless ``a`` is integer."""
        arr = np.asarray(a)
        if arr.dtype.kind not in "iu":
            arr = arr.astype(np.float64, copy=False)
        return self._reduce(np.ascontiguousarray(arr), op).reshape(arr.shape)

    def dot(self, A: np.ndarray, B: np.ndarray, rows: int) -> np.ndarray:
        """A'B summed over the rows of every host (``rows`` in all), bit for bit the same however the rows are
        ordered or split among hosts (see :class:`ExactProducts`)."""
        return ExactProducts(self, A, rows).tdot(B)

    def column_sums(self, M: np.ndarray, rows: int) -> np.ndarray:
        """Column sums of M over every host's rows (``rows`` in all), independent of row order and split.

        The grid of :class:`ExactProducts`: each value is two integers of at most ``bits`` bits, whose float64
        sums stay below 2^53 and are therefore exact in any order; the integers are all-reduced as int64.
        """
        M = _as_rows(M)
        bits = _grid_bits(rows)
        top = self.allreduce(np.abs(M).max(axis=0) if len(M) else np.zeros(M.shape[1]), "max")
        if not np.isfinite(top).all():  # diverged: the caller reports it
            return self.allreduce(M.sum(axis=0))
        exponent = np.frexp(np.where(top > 0, top, 1.0))[1] - bits
        high, low = _split(M, exponent, bits)
        total = self.allreduce(np.stack([high.sum(axis=0), low.sum(axis=0)]).astype(np.int64))
        return np.ldexp(total[0].astype(np.float64), exponent) + np.ldexp(total[1].astype(np.float64), exponent - bits)

    def counts(self, n: int) -> np.ndarray:
        """Every host's ``n``, in rank order."""
        mine = np.zeros(self.world_size, dtype=np.int64)
        mine[self.rank] = n
        return self.allreduce(mine)

    def gather(self, a: np.ndarray) -> np.ndarray:
        """The rows of every host's ``a`` concatenated in rank order, on every host (exact: adds zeros only)."""
        a = np.asarray(a, dtype=np.float64)
        if not self.distributed:
            return a.copy()
        counts = self.counts(len(a))
        offset = int(counts[: self.rank].sum())
        out = np.zeros((int(counts.sum()), *a.shape[1:]))
        out[offset : offset + len(a)] = a
        return self.allreduce(out)

    def gather_bytes(self, data: bytes) -> list[bytes]:
        """Every host's bytes, in rank order."""
        lengths = self.counts(len(data))
        buf = np.zeros((self.world_size, int(lengths.max()) if len(lengths) else 0), dtype=np.uint8)
        buf[self.rank, : len(data)] = np.frombuffer(data, dtype=np.uint8)
        if self.distributed:
            buf = self._reduce(buf.ravel(), "sum").reshape(buf.shape)
        return [bytes(buf[i, : int(lengths[i])]) for i in range(self.world_size)]

    def gather_json(self, doc) -> list:
        return [json.loads(b) for b in self.gather_bytes(json.dumps(doc, sort_keys=True).encode())]


SINGLE = Collective()


class ExactProducts:
    """A matrix A prepared for exact, order-independent sums of products A[rows]'B over every host.

    Float sums depend on their order, and Adam near an optimum amplifies that last-bit noise into visibly
    different models. So each column is written as two integers on a power-of-two grid set by the column's
    largest magnitude over all hosts (38 significant bits for up to 2^24 rows), and their products are summed
    exactly: by BLAS in chunks small enough that every partial sum is an integer below 2^53, then in int64.
    """

    def __init__(self, comm: Collective, A: np.ndarray, rows: int):
        self.comm = comm
        self.A = _as_rows(A)
        self.bits = _grid_bits(rows)
        self.chunk = min(1 << (53 - 2 * self.bits), 1 << 16)
        self.exponent = self._exponents(self.A)
        self.high: np.ndarray | None = None
        self.low: np.ndarray | None = None
        if self.exponent is not None:
            # float32 holds these integers (|x| <= 2^19) exactly, in half the memory; split in chunks for the same
            # reason.
            self.high = high = np.empty(self.A.shape, dtype=np.float32)
            self.low = low = np.empty(self.A.shape, dtype=np.float32)
            for start in range(0, len(self.A), 1 << 16):
                r = slice(start, start + (1 << 16))
                high[r], low[r] = _split(self.A[r], self.exponent, self.bits)

    def _exponents(self, M: np.ndarray) -> np.ndarray | None:
        top = self.comm.allreduce(np.abs(M).max(axis=0) if len(M) else np.zeros(M.shape[1]), "max")
        if not np.isfinite(top).all():
            return None
        return np.frexp(np.where(top > 0, top, 1.0))[1] - self.bits  # |column| < 2^(exponent + bits)

    def gram(self) -> np.ndarray:
        """A'A over every host (exact as tdot, without splitting A a second time)."""
        exponent, high, low = self.exponent, self.high, self.low
        if exponent is None or high is None or low is None:
            return self.comm.allreduce(self.A.T @ self.A)
        p = self.A.shape[1]
        total = np.zeros((3, p, p), dtype=np.int64)
        for start in range(0, len(self.A), self.chunk):
            r = slice(start, start + self.chunk)
            h, lo = high[r].astype(np.float64), low[r].astype(np.float64)
            cross = (h.T @ lo).astype(np.int64)
            total[0] += (h.T @ h).astype(np.int64)
            total[1] += cross + cross.T
            total[2] += (lo.T @ lo).astype(np.int64)
        return self._combine(self.comm.allreduce(total), exponent, exponent)

    def _combine(self, total: np.ndarray, ea: np.ndarray, eb: np.ndarray) -> np.ndarray:
        scale = 2.0**-self.bits
        exact = total[0] + total[1].astype(np.float64) * scale + total[2].astype(np.float64) * scale * scale
        return exact * np.ldexp(1.0, ea[:, None] + eb[None, :])

    def tdot(self, B: np.ndarray, index: np.ndarray | None = None) -> np.ndarray:
        """A[index]'B over every host; B holds the rows of A[index] (all of A without index)."""
        B = _as_rows(B)
        eb = self._exponents(B)
        exponent, high, low = self.exponent, self.high, self.low
        if exponent is None or high is None or low is None or eb is None:  # not finite: the caller reports it
            return self.comm.allreduce((self.A if index is None else self.A[index]).T @ B)
        ha, la = (high, low) if index is None else (high[index], low[index])
        hb, lb = _split(B, eb, self.bits)
        total = np.zeros((3, ha.shape[1], hb.shape[1]), dtype=np.int64)
        for start in range(0, len(B), self.chunk):
            r = slice(start, start + self.chunk)
            h, lo = ha[r].astype(np.float64), la[r].astype(np.float64)  # float64 sums of integers < 2^53: exact
            total[0] += (h.T @ hb[r]).astype(np.int64)
            total[1] += (h.T @ lb[r] + lo.T @ hb[r]).astype(np.int64)
            total[2] += (lo.T @ lb[r]).astype(np.int64)
        return self._combine(self.comm.allreduce(total), exponent, eb)


class FixedGrid:
    """Exact, order-independent sums of products A'B over every host's rows, A arriving a few rows at a time.

    :class:`ExactProducts` prepares all of A at once; here the grid of A's columns is fixed in advance from their
    largest magnitude over all rows and hosts (``top``), so any rows of A (a row block, a mini-batch) can be split
    on their own and their integer products summed in int64, locally (``local_gram``, ``local_tdot``) or over hosts
    (``tdot``). The results are bit for bit those of ExactProducts on the whole of A with the same ``rows``.
    """

    def __init__(self, comm: Collective, top: np.ndarray, rows: int):
        self.comm = comm
        self.bits = _grid_bits(rows)
        self.chunk = min(1 << (53 - 2 * self.bits), 1 << 16)
        top = np.asarray(top, dtype=np.float64)
        self.exponent: np.ndarray | None = (
            np.frexp(np.where(top > 0, top, 1.0))[1] - self.bits if np.isfinite(top).all() else None
        )

    def split(self, A: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        assert self.exponent is not None
        return _split(A, self.exponent, self.bits)

    def local_products(self, A: np.ndarray, hb: np.ndarray, lb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """This host's integer parts of A'A, int64 (3, p, p), and of A'B, B already split (``hb``, ``lb``) on its
        own grid: add them over row blocks and hosts, then ``combine``. A is split once for both."""
        p = A.shape[1]
        gram = np.zeros((3, p, p), dtype=np.int64)
        tdot = np.zeros((3, p, hb.shape[1]), dtype=np.int64)
        # Products small enough that OpenBLAS runs them on one thread (rows * p^2 below ~2^18): on a busy machine
        # its threads made these products 5-20x slower.
        rows = max(256, min(self.chunk, (1 << 18) // max(p * p, 1)))
        for start in range(0, len(A), rows):
            r = slice(start, start + rows)
            h, lo = self.split(A[r])
            cross = (h.T @ lo).astype(np.int64)
            gram[0] += (h.T @ h).astype(np.int64)
            gram[1] += cross + cross.T
            gram[2] += (lo.T @ lo).astype(np.int64)
            tdot += self._tdot_parts(h, lo, hb[r], lb[r])
        return gram, tdot

    @staticmethod
    def _tdot_parts(h: np.ndarray, lo: np.ndarray, hb: np.ndarray, lb: np.ndarray) -> np.ndarray:
        return np.stack([h.T @ hb, h.T @ lb + lo.T @ hb, lo.T @ lb]).astype(np.int64)

    def local_tdot(self, A: np.ndarray, hb: np.ndarray, lb: np.ndarray) -> np.ndarray:
        """This host's integer parts of A'B, B already split (``hb``, ``lb``) on its own grid."""
        total = np.zeros((3, A.shape[1], hb.shape[1]), dtype=np.int64)
        for start in range(0, len(A), self.chunk):
            r = slice(start, start + self.chunk)
            total += self._tdot_parts(*self.split(A[r]), hb[r], lb[r])
        return total

    def combine(self, total: np.ndarray, ea: np.ndarray, eb: np.ndarray) -> np.ndarray:
        scale = 2.0**-self.bits
        exact = total[0] + total[1].astype(np.float64) * scale + total[2].astype(np.float64) * scale * scale
        return exact * np.ldexp(1.0, ea[:, None] + eb[None, :])

    def tdot(self, A: np.ndarray, B: np.ndarray) -> np.ndarray:
        """A'B over every host (each passes its own rows of A and B, possibly none; every host calls it)."""
        B = _as_rows(B)
        top = self.comm.allreduce(np.abs(B).max(axis=0) if len(B) else np.zeros(B.shape[1]), "max")
        if self.exponent is None or not np.isfinite(top).all():  # not finite: the caller reports it
            return self.comm.allreduce(A.T @ B)
        eb = np.frexp(np.where(top > 0, top, 1.0))[1] - self.bits
        hb, lb = _split(B, eb, self.bits)
        return self.combine(self.comm.allreduce(self.local_tdot(A, hb, lb)), self.exponent, eb)


class BlockSums:
    """Exact column sums over every host's rows, added one global row block at a time.

    Every host adds the same global blocks in the same order, each with its own rows of the block (possibly none).
    A block is summed as :meth:`Collective.column_sums` sums (two integers per value on a grid set by the block's
    largest magnitude over all hosts), and the blocks' exact sums are added as rationals. So the total depends on
    where the blocks start, never on how a block's rows are split among hosts or ordered. Non-finite values: a
    float sum (the caller reports the divergence).
    """

    def __init__(self, comm: Collective, width: int, block_rows: int):
        self.comm, self.width, self.bits = comm, width, _grid_bits(block_rows)
        self._exact = [Fraction(0)] * width
        self._inexact: np.ndarray | None = None

    def add(self, columns: Sequence[np.ndarray]) -> None:
        """Add this host's rows of the next global block: ``width`` equal-length columns."""
        M = np.asarray(columns, dtype=np.float64)  # one row per column: long inner loops
        M = M if M.ndim == 2 else M.reshape(self.width, -1)
        top = self.comm.allreduce(np.abs(M).max(axis=1) if M.shape[1] else np.zeros(self.width), "max")
        if not np.isfinite(top).all() or self._inexact is not None:
            found = self.comm.allreduce(M.sum(axis=1))
            self._inexact = found if self._inexact is None else self._inexact + found
            return
        exponent = np.frexp(np.where(top > 0, top, 1.0))[1] - self.bits
        high, low = _split(M.T, exponent, self.bits)
        total = self.comm.allreduce(np.stack([high.sum(axis=0), low.sum(axis=0)]).astype(np.int64))
        for c in range(self.width):
            value = (int(total[0, c]) << self.bits) + int(total[1, c])
            self._exact[c] += Fraction(value) * Fraction(2) ** (int(exponent[c]) - self.bits)

    def result(self) -> np.ndarray:
        exact = np.array([float(v) for v in self._exact])
        return exact if self._inexact is None else exact + self._inexact


def _as_rows(A: np.ndarray) -> np.ndarray:
    """A float64 matrix, one row per row of A (a vector is one column); empty (0, k) arrays stay as they are
    (reshape(0, -1) cannot infer k: a host holding none of the rows)."""
    A = np.asarray(A, dtype=np.float64)
    return A if A.ndim == 2 else A.reshape(len(A), -1)


def _grid_bits(rows: int) -> int:
    """Bits per integer part: products of two summed over ``rows`` rows cannot overflow int64."""
    return min(19, (62 - max(int(rows), 1).bit_length()) // 2)


def _split(A: np.ndarray, exponent: np.ndarray, bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Integers (as floats) H, L with A ~ (H + L 2^-bits) 2^exponent per column, |H|, |L| <= 2^bits."""
    # Multiplying by a power of two is exact (ldexp is much slower). In place: no temporaries.
    down, up = np.ldexp(1.0, -exponent), np.ldexp(1.0, exponent)
    high = np.multiply(A, down)
    np.rint(high, out=high)
    low = np.multiply(high, up)
    np.subtract(A, low, out=low)  # the remainder is exact
    low *= down * 2.0**bits
    np.rint(low, out=low)
    return high, low


class XGBoostCollective(Collective):
    """The collective of xgboost.collective, inside an initialised communicator."""

    _OPS: ClassVar[dict[str, str]] = {"sum": "SUM", "max": "MAX", "min": "MIN"}

    def __init__(self, hosts: Sequence[str], rank: int):
        self.hosts = tuple(hosts)
        self.rank = rank
        self.world_size = len(hosts)

    def _reduce(self, a: np.ndarray, op: str) -> np.ndarray:
        from xgboost import collective

        with failures_named(self.hosts):
            return collective.allreduce(a, getattr(collective.Op, self._OPS[op]))


@contextlib.contextmanager
def failures_named(hosts: Sequence[str]) -> Iterator[None]:
    """XGBoost's collective errors (a peer died or timed out) as a one-line ClusterError."""
    import xgboost as xgb

    try:
        yield
    except xgb.core.XGBoostError as e:
        raise ClusterError(
            f"training across hosts {', '.join(hosts)} failed (a host stopped, hung or cannot be reached): "
            f"{_collective_reason(e)}"
        ) from None


def _collective_reason(e: Exception) -> str:
    # XGBoost's message is a nested list of "- [file.cc:123|time]: reason" lines: keep the innermost reasons.
    reasons = []
    for line in str(e).splitlines():
        line = line.strip()
        if line.startswith("- [") and "]:" in line:
            reasons.append(line.split("]:", 1)[1].strip())
    tail = [r for r in reasons if r][-2:]
    return "; ".join(tail) if tail else " ".join(str(e).split())[:300]


# -- hosts ---------------------------------------------------------------------------------------------------------
def wait_for_hosts(
    hosts: Sequence[str],
    timeout: float,
    *,
    resolve: Callable[[str], str] = socket.gethostbyname,
    interval: float = 1.0,
) -> dict[str, str]:
    """host -> address once every host name resolves; ClusterError naming the first that never did."""
    deadline = time.monotonic() + timeout
    addresses: dict[str, str] = {}
    for host in hosts:
        while True:
            try:
                addresses[host] = resolve(host)
                break
            except OSError as e:
                if time.monotonic() >= deadline:
                    raise ClusterError(
                        f"host {host!r} (resourceconfig.json) did not resolve within {timeout:g} s: {e}"
                    ) from None
                time.sleep(interval)
    return addresses


@contextlib.contextmanager
def communicator(
    hosts: Sequence[str], current_host: str, tracker_address: str, port: int, settings: Settings
) -> Iterator[XGBoostCollective]:
    """XGBoost's communicator over ``hosts`` (sorted); the first one runs the tracker on ``port``."""
    from xgboost import collective
    from xgboost.tracker import RabitTracker

    rank = hosts.index(current_host)
    tracker = None
    with failures_named(hosts):
        if rank == 0:
            tracker = RabitTracker(
                n_workers=len(hosts), host_ip=tracker_address, port=port, sortby="task", timeout=BOOTSTRAP_TIMEOUT
            )
            tracker.start()
        args: dict[str, int | str | None] = {
            "dmlc_tracker_uri": tracker_address,
            "dmlc_tracker_port": port,
            "dmlc_task_id": f"{rank:06d}-{current_host}",  # sortby=task: the tracker's rank is ours
            "dmlc_retry": CONNECT_RETRIES,
            "dmlc_timeout": settings.collective_timeout,
        }
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # one UserWarning per connection retry while the tracker starts
            collective.init(**args)
    try:
        if collective.get_rank() != rank or collective.get_world_size() != len(hosts):
            raise ClusterError(
                f"host {current_host!r}: the tracker assigned rank {collective.get_rank()} of "
                f"{collective.get_world_size()}, expected {rank} of {len(hosts)}"
            )
        with failures_named(hosts):  # xgb.train's own collective calls too
            yield XGBoostCollective(hosts, rank)
    except BaseException:
        # Leave at once: the other hosts learn from the closed sockets; waiting for the tracker could hang.
        with contextlib.suppress(Exception):
            collective.finalize()
        raise
    with failures_named(hosts):
        collective.finalize()
        if tracker is not None:
            tracker.wait_for(settings.collective_timeout)
            tracker.free()


def hosts_with_data(
    hosts: Sequence[str], current_host: str, tracker_address: str, has_data: bool, settings: Settings
) -> tuple[str, ...]:
    """Round one: which hosts received training data (every host takes part)."""
    with communicator(hosts, current_host, tracker_address, settings.tracker_port, settings) as comm:
        flags = np.zeros(len(hosts), dtype=np.int64)
        flags[comm.rank] = int(has_data)
        flags = comm.allreduce(flags)
    return tuple(h for h, f in zip(hosts, flags, strict=True) if f)


def row_slice(n: int, rank: int, world_size: int) -> slice:
    """FullyReplicated channels: host ``rank`` of ``world_size`` takes rows [n*rank//W, n*(rank+1)//W)."""
    return slice(n * rank // world_size, n * (rank + 1) // world_size)


# -- one schema for every host ---------------------------------------------------------------------------------------
def agree_given_schema(comm: Collective, local):
    """The schema.json some hosts found (ShardedByS3Key puts that one file on one host), or None if none did."""
    from core.errors import SchemaError
    from core.schema import Schema

    docs = comm.gather_json(None if local is None else local.to_dict())
    found = [(comm.hosts[i], d) for i, d in enumerate(docs) if d is not None]
    if not found:
        return None
    (first_host, first), *others = found
    for host, doc in others:
        if doc != first:
            raise SchemaError(f"the schema.json files of hosts {first_host!r} and {host!r} differ")
    return Schema.from_dict(first)


def agree_inferred_schema(comm: Collective, local):
    """Merge the schemas each host inferred from its shard: a categorical feature gets the union of the levels
    (sorted, as one host inferring from all the rows would order them)."""
    from core.errors import SchemaError
    from core.schema import CATEGORICAL, Feature, Schema

    docs = comm.gather_json(local.to_dict())
    merged = []
    for j, feature in enumerate(local.features):
        kinds = {comm.hosts[i]: d["features"][j] for i, d in enumerate(docs)}
        names = {f["name"] for f in kinds.values()}
        if len(names) != 1:
            raise SchemaError(f"feature {j + 1} is named differently across hosts: {', '.join(sorted(names))}")
        categorical = [h for h, f in kinds.items() if f["type"] == CATEGORICAL]
        if categorical and len(categorical) != len(kinds):
            numeric = next(h for h in kinds if h not in categorical)
            raise SchemaError(
                f"feature {feature.name!r} is categorical in the data of host {categorical[0]!r} but numeric in that "
                f"of host {numeric!r}; add a schema.json to the train channel to fix its type"
            )
        if categorical:
            levels = sorted({lv for f in kinds.values() for lv in f["levels"]})
            merged.append(Feature(feature.name, CATEGORICAL, tuple(levels)))
        else:
            merged.append(feature)
    return Schema(tuple(merged), local.target)
