"""Split an input file into records (SplitType) and pack them into mini-batches (BatchStrategy, MaxPayloadInMB).

- SplitType ``Line``: one record per line (``\\n``; a ``\\r`` before it is dropped). Blank lines are not records.
  A UTF-8 byte-order mark at the start of the file is not part of record 1 (the cell grammar, core.cells).
  SplitType ``None``: the whole file is one record.
- MultiRecord packs as many whole records as fit in MaxPayloadInMB (MiB, like the SageMaker SDK's local mode:
  ``MaxPayloadInMB * 1024 * 1024`` bytes); SingleRecord sends one record per request. A record is never cut in two:
  a record larger than the limit is an error, as in SageMaker ("Exceeding the MaxPayloadInMB limit causes an
  error ... individual records within the dataset exceed the limit"). ``0`` means no limit (SageMaker streams such
  payloads with chunked encoding).
- Each record of a Line-split payload ends with ``\\n``; that byte counts toward the limit.
- Files are never mixed in one mini-batch ("It doesn't combine mini-batches from different input files").
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

from core.cells import strip_bom

MIB = 1024 * 1024


@dataclass(frozen=True)
class Record:
    number: int  # 1-based among the file's records
    line: int  # 1-based line of the file where the record starts
    data: bytes  # as in the file, without the line terminator


@dataclass(frozen=True)
class Batch:
    number: int  # 1-based within the file
    records: tuple[Record, ...]
    payload: bytes  # what is POSTed to /invocations

    @property
    def span(self) -> str:
        first, last = self.records[0].number, self.records[-1].number
        return f"record {first}" if first == last else f"records {first}-{last}"


class RecordTooLarge(ValueError):
    def __init__(self, record: Record, size: int, limit: int):
        self.record, self.size, self.limit = record, size, limit
        super().__init__(
            f"record {record.number} (line {record.line}) is {size} bytes, larger than MaxPayloadInMB="
            f"{limit // MIB} ({limit} bytes); raise MaxPayloadInMB (at most 100) or make the record smaller"
        )


def split_records(stream: BinaryIO, split_type: str) -> Iterator[Record]:
    if split_type == "None":
        yield Record(1, 1, stream.read())
        return
    number = 0
    for line_no, raw in enumerate(stream, start=1):
        data = raw.rstrip(b"\n").rstrip(b"\r")
        if line_no == 1:
            data = strip_bom(data)
        if not data.strip():
            continue
        number += 1
        yield Record(number, line_no, data)


def pack(
    records: Iterable[Record],
    *,
    split_type: str,
    strategy: str,
    limit: int | None,
    encode: Callable[[Record], bytes] = lambda r: r.data,
) -> Iterator[Batch]:
    """Mini-batches of whole records; ``encode`` gives the bytes sent for a record (e.g. the input filter)."""
    terminator = b"\n" if split_type == "Line" else b""
    pending: list[Record] = []
    parts: list[bytes] = []
    size = 0
    number = 0

    def flush() -> Batch:
        nonlocal number, pending, parts, size
        number += 1
        batch = Batch(number, tuple(pending), b"".join(parts))
        pending, parts, size = [], [], 0
        return batch

    for record in records:
        part = encode(record) + terminator
        if limit is not None and len(part) > limit:
            raise RecordTooLarge(record, len(part), limit)
        if pending and (strategy == "SingleRecord" or (limit is not None and size + len(part) > limit)):
            yield flush()
        pending.append(record)
        parts.append(part)
        size += len(part)
    if pending:
        yield flush()
