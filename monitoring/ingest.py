"""Streams every new input file of a run into the mergeable summaries (data profile, prediction sketch, model
quality), consulting and updating the bookmark. Memory: the sketches plus one block of one file.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from core.errors import ConfigurationError, DataError
from monitoring import datacapture, readers
from monitoring.bookmark import Bookmark, Todo
from monitoring.quality import QualityAccumulator
from monitoring.readers import BadLines, Batch, FileResult, Layout, Window
from monitoring.sketches import DEFAULT_K, NumericSketch
from monitoring.statistics import Profile, column_name

log = logging.getLogger("monitoring")
IGNORED_NAMES = {"schema.json", "statistics.json", "constraints.json", "constraint_violations.json"}


@dataclass
class IngestResult:
    profile: Profile
    predictions: NumericSketch
    quality: QualityAccumulator
    bad: BadLines = field(default_factory=BadLines)
    files_read: list[str] = field(default_factory=list)
    files_skipped: int = 0
    records_in_window: int = 0
    records_outside_window: int = 0
    ground_truth_records: int = 0
    labelled_records: int = 0

    def to_state(self) -> dict[str, Any]:
        return {
            "version": 1,
            "profile": self.profile.to_state(),
            "predictions": self.predictions.to_state(),
            "quality": self.quality.to_state(),
            "bad": {"count": self.bad.count, "examples": self.bad.examples},
            "files_read": self.files_read,
            "files_skipped": self.files_skipped,
            "records_in_window": self.records_in_window,
            "records_outside_window": self.records_outside_window,
            "ground_truth_records": self.ground_truth_records,
            "labelled_records": self.labelled_records,
        }

    @classmethod
    def from_state(cls, s: dict[str, Any]) -> IngestResult:
        r = cls(
            Profile.from_state(s["profile"]),
            NumericSketch.from_state(s["predictions"]),
            QualityAccumulator.from_state(s["quality"]),
        )
        r.bad = BadLines(int(s["bad"]["count"]), list(s["bad"]["examples"]))
        r.files_read = list(s["files_read"])
        for f in ("files_skipped", "records_in_window", "records_outside_window"):
            setattr(r, f, int(s[f]))
        r.ground_truth_records, r.labelled_records = int(s["ground_truth_records"]), int(s["labelled_records"])
        return r

    def merge(self, other: IngestResult) -> None:
        self.profile.merge(other.profile)
        self.predictions.merge(other.predictions)
        self.quality.merge(other.quality)
        self.bad.count += other.bad.count
        self.bad.examples = (self.bad.examples + other.bad.examples)[: readers.MAX_REPORTED_BAD_LINES]
        self.files_read += other.files_read
        for f in (
            "files_skipped",
            "records_in_window",
            "records_outside_window",
            "ground_truth_records",
            "labelled_records",
        ):
            setattr(self, f, getattr(self, f) + getattr(other, f))


@dataclass
class Source:
    root: Path
    kind: str  # capture | csv | jsonl | parquet | auto
    layout: Layout
    window: Window
    ground_truth: Path | None = None
    prefix_map: dict[str, str] = field(default_factory=dict)
    k: int = DEFAULT_K
    seed: int = 0
    outputs: dict[str, Path] | None = None
    # (rank, hosts): read only every hosts-th file from the rank-th, for an input every host received whole
    share: tuple[int, int] | None = None


def list_files(root: Path) -> list[Path]:
    if root.is_file():
        return [root]
    if not root.is_dir():
        raise DataError("dataset_source does not exist or is not a directory", file=str(root))
    return sorted(
        p for p in root.rglob("*") if p.is_file() and p.name not in IGNORED_NAMES and not p.name.startswith(".")
    )


def ingest(src: Source, bookmark: Bookmark) -> IngestResult:
    result = IngestResult(Profile(src.layout.features, src.k), NumericSketch(src.k), QualityAccumulator(src.seed))
    truth: dict[str, float] = {}
    if src.ground_truth is not None:
        for path in list_files(src.ground_truth):
            for data, first in blocks(path):
                datacapture.read_ground_truth(path, data, result.bad, truth, first)
        result.ground_truth_records = len(truth)
    root = src.root
    files = list_files(root)
    if src.share is not None:
        rank, hosts = src.share
        files = files[rank::hosts]
    for path in files:
        key = str(path.relative_to(root)) if root.is_dir() else path.name
        todo = bookmark.plan(path, key)
        if todo is None:
            result.files_skipped += 1
            continue
        fr = FileResult()
        for batch in _read(todo, src, result.bad, fr):
            _absorb(result, batch, truth)
        lines = _count_lines(todo)
        result.files_read.append(key)
        result.records_in_window += fr.records_in_window
        result.records_outside_window += fr.records_before + fr.records_after
        if fr.records_after == 0:  # records after the window: a later run still needs this file
            bookmark.done(todo, lines)
    return result


def _absorb(result: IngestResult, batch: Batch, truth: dict[str, float]) -> None:
    result.profile.update(batch.columns, batch.n_rows, absent=batch.absent)
    if batch.predictions is not None:
        result.predictions.update_numbers(batch.predictions.copy())
        labels = (
            batch.labels if batch.labels is not None else readers.labels_for(batch.row_keys() if truth else None, truth)
        )
        if labels is not None:
            ok = ~np.isnan(labels)
            result.labelled_records += int(ok.sum())
            result.quality.update(labels, batch.predictions)


# Line-oriented inputs are read in blocks of whole lines: memory follows the block, never the file.
BLOCK_BYTES = 32 << 20


def blocks(path: Path, offset: int = 0, end: int | None = None, first_line: int = 1, size: int | None = None):
    """(bytes of whole lines, number of its first line) from ``offset`` to ``end``; a line longer than ``size``
    grows its block rather than being split."""
    size = size or BLOCK_BYTES
    with open(path, "rb") as f:
        f.seek(offset)
        left = (end if end is not None else path.stat().st_size) - offset
        carry = b""
        while left > 0:
            chunk = f.read(min(size, left))
            if not chunk:
                break
            left -= len(chunk)
            data = carry + chunk
            cut = data.rfind(b"\n") + 1 if left > 0 else len(data)
            if cut == 0:  # no newline yet: keep reading
                carry = data
                continue
            block, carry = data[:cut], data[cut:]
            yield block, first_line
            first_line += block.count(b"\n")
        if carry:
            yield carry, first_line


def _count_lines(todo: Todo) -> int:
    return sum(b.count(b"\n") for b, _ in blocks(todo.path, todo.offset, todo.size))


def _todo_blocks(todo: Todo):
    return blocks(todo.path, todo.offset, todo.size, todo.first_line)


def _kind_of(path: Path, head: bytes, default: str) -> str:
    if head.lstrip().startswith(b"[") and b'"prefix"' in head[:4096]:
        return "manifest"
    if default != "auto":
        return default
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        return "parquet"
    if b'"captureData"' in head[:4096]:
        return "capture"
    if head.lstrip().startswith(b"{"):
        return "jsonl"
    return "csv"


def _read(todo: Todo, src: Source, bad: BadLines, fr: FileResult) -> Iterator[Batch]:
    path = todo.path
    with open(path, "rb") as f:
        f.seek(todo.offset)
        head = f.read(4096)
    kind = _kind_of(path, head, src.kind)
    if kind == "manifest":
        yield from _read_manifest(path, path.read_bytes()[todo.offset : todo.size], src, bad, fr)
    elif kind == "capture":
        for data, first in _todo_blocks(todo):
            yield from datacapture.read_capture_file(path, data, src.layout, src.window, bad, fr, first)
    elif kind == "jsonl":
        for data, first in _todo_blocks(todo):
            yield from readers.read_joined_jsonl(path, data, src.layout, bad, fr, first)
    elif kind == "parquet":
        yield from _read_parquet(path, src.layout, fr)
    else:
        yield from readers.read_joined_csv(path, todo.offset, src.layout, bad, fr, todo.first_line)


def _read_parquet(path: Path, layout: Layout, fr: FileResult) -> Iterator[Batch]:
    pf = pq.ParquetFile(path)
    for rb in pf.iter_batches(batch_size=65_536):
        columns = {n: rb.column(i) for i, n in enumerate(rb.schema.names)}
        by_key = {column_name(n): n for n in columns if n not in layout.names}  # output columns, any spelling
        preds = None
        for cand in ("prediction", "predictions", "sagemakeroutput", "score"):
            if cand in by_key:
                preds = readers._column_numbers(columns.pop(by_key[cand]))[0]
                break
        keys = None
        if "sagemakerinferenceid" in by_key:
            keys = columns.pop(by_key["sagemakerinferenceid"]).to_pylist()
        if "sagemakerinferencetime" in by_key:
            columns.pop(by_key["sagemakerinferencetime"])
        fr.records_in_window += rb.num_rows
        yield Batch(columns, rb.num_rows, predictions=preds, keys=keys)


def _resolver(src: Source, manifest: Path):
    def resolve(uri: str) -> Path:
        for prefix, local in sorted(src.prefix_map.items(), key=lambda kv: -len(kv[0])):
            if uri.startswith(prefix):
                return Path(local) / uri[len(prefix) :].lstrip("/")
        if uri.startswith("file://"):
            return Path(uri[len("file://") :])
        if "://" not in uri:
            p = Path(uri)
            return p if p.is_absolute() else manifest.parent / p
        raise ConfigurationError(
            f"manifest {manifest} names {uri}: map its prefix to a local path with s3_prefix_map "
            '(e.g. {"s3://bucket/out/": "/opt/ml/processing/batch/"})'
        )

    return resolve


def _is_output_manifest(path: Path) -> bool:
    # batch data capture writes <destination>/input/yyyy/mm/dd/hh/*.json and <destination>/output/...
    return "output" in path.parts[-6:-1]


def _output_files(src: Source) -> dict[str, Path]:
    """Output file name -> local path, over every output manifest under the source (computed once)."""
    if src.outputs is None:
        src.outputs = {}
        for m in list_files(src.root):
            if m.suffix.lower() == ".json" and _is_output_manifest(m):
                files = readers.read_manifest(m, m.read_bytes(), _resolver(src, m)) or []
                src.outputs.update({f.name: f for f in files})
    return src.outputs


def _columns_in(path: Path) -> int:
    with open(path, "rb") as f:
        first = f.readline().decode("utf-8", "replace")
    return len(first.split(",")) if first.strip() else 0


def _read_manifest(path: Path, data: bytes, src: Source, bad: BadLines, fr: FileResult) -> Iterator[Batch]:
    """Manifests name the transform's inputs (input/) and outputs (output/). A joined output carries the
    features and is read alone; otherwise the inputs are read with the predictions of their ``.out`` file."""
    files = readers.read_manifest(path, data, _resolver(src, path))
    if files is None:
        bad.add(str(path), 1, "not a batch data-capture manifest")
        return
    n_feat = len(src.layout.features)
    is_output = _is_output_manifest(path)
    for f in files:
        if not f.exists():
            bad.add(str(path), None, f"manifest names {f}, which does not exist")
            continue
        if f.suffix.lower() in (".jsonl", ".json") or f.name.endswith((".jsonl.out", ".json.out")):
            if is_output or (f.name + ".out") not in _output_files(src):
                for data, first in blocks(f):
                    yield from readers.read_joined_jsonl(f, data, src.layout, bad, fr, first)
            continue
        if is_output:
            if _columns_in(f) >= n_feat:  # joined: features + prediction
                yield from readers.read_joined_csv(f, 0, src.layout, bad, fr)
            continue
        out = _output_files(src).get(f.name + ".out")
        if out is not None and out.exists() and _columns_in(out) >= n_feat:
            continue  # the joined output is read from the output manifest
        preds = _predictions_file(out) if out is not None and out.exists() else None
        pos = 0
        for batch in readers.read_joined_csv(f, 0, src.layout, bad, fr):
            if preds is not None and batch.predictions is None and len(preds) >= pos + batch.n_rows:
                batch.predictions = preds[pos : pos + batch.n_rows]
            pos += batch.n_rows
            yield batch


def _predictions_file(path: Path) -> np.ndarray:
    table = pacsv.read_csv(path, read_options=pacsv.ReadOptions(autogenerate_column_names=True))
    return readers._column_numbers(table.column(0))[0]


def read_prefix_map(raw: str | None) -> dict[str, str]:
    if not raw:
        return {}
    try:
        doc = json.loads(raw)
    except json.JSONDecodeError as e:
        raise ConfigurationError(f"s3_prefix_map: not valid JSON ({e.msg}): {raw!r}") from None
    if not isinstance(doc, dict) or not all(isinstance(v, str) for v in doc.values()):
        raise ConfigurationError(f"s3_prefix_map: expected an object of prefix -> local path, received {raw!r}")
    return doc
