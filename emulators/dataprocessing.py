"""CreateTransformJob's DataProcessing: InputFilter, JoinSource, OutputFilter, record by record.

Rules (sagemaker dg "batch-transform-data-processing" and the DataProcessing API reference):

- Only CSV and JSON: with DataProcessing, both ContentType and Accept must be ``text/csv``,
  ``application/json`` or ``application/jsonlines``. CSV also needs SplitType ``Line`` and AssembleWith ``Line``.
- A CSV row is a JSON array of its cells (split by the cell grammar, core.cells: RFC 4180, so a quoted comma is
  one cell; cells as written, untrimmed), hence only index paths apply to CSV: ``$[0]``, ``$[1:]``.
- Join (``JoinSource=Input``) uses the ORIGINAL record, before the input filter. CSV: the output cells are
  appended to the input row (``1,2,3`` + ``7`` -> ``1,2,3,7``). JSON: an object input gets the output under
  ``SageMakerOutput`` (overwriting a key of that name, as the documentation warns); any other input becomes
  ``{"SageMakerInput": input, "SageMakerOutput": output}``.
- The output filter applies to the joined record, or to the container's output record without a join.

Not documented, decided here: a join across formats (CSV in, JSON out or the reverse) is rejected, since the
joined record must be one format; a record untouched by every step is passed through byte for byte.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from typing import Any

from core import cells
from emulators import jsonpath

CSV = "text/csv"
JSON = "application/json"
JSONLINES = "application/jsonlines"
SUPPORTED = (CSV, JSON, JSONLINES)


class DataProcessingError(ValueError):
    """The job's DataProcessing cannot work with its content types / split settings (a pre-flight rejection)."""


class RecordError(ValueError):
    """One record cannot be processed (bad CSV/JSON, a path that does not fit it)."""


def media_type(content_type: str | None) -> str | None:
    """``text/csv; charset=utf-8`` -> ``text/csv``."""
    if content_type is None:
        return None
    return content_type.split(";", 1)[0].strip().lower()


def family(content_type: str | None) -> str | None:
    mt = media_type(content_type)
    if mt == CSV:
        return "csv"
    if mt in (JSON, JSONLINES):
        return "json"
    return None


# -- record codecs --------------------------------------------------------------------------------------
_NO_NEWLINES = "SageMaker splits CSV on newlines, so a cell cannot contain one"


def parse_csv(data: bytes) -> list[str]:
    text = data.decode("utf-8")
    if "\n" in text or "\r" in text:
        raise RecordError(f"the CSV record contains a newline; {_NO_NEWLINES}")
    try:
        return cells.split_record(text)
    except cells.CellError as err:
        if err.reason.startswith("a quoted cell is not closed"):
            # Typically the first half of a quoted cell that held a newline.
            raise RecordError(f"the CSV record ends inside a quoted cell; {_NO_NEWLINES}") from None
        raise csv.Error(f"column {err.column}: {err.reason}") from None


def dump_csv(value: Any) -> bytes:
    if isinstance(value, dict):
        raise RecordError("a CSV output filter selected an object; only index paths apply to CSV")
    cells = value if isinstance(value, list) else [value]
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="").writerow(
        [json.dumps(c, ensure_ascii=False) if isinstance(c, dict | list) else c for c in cells]
    )
    return buffer.getvalue().encode("utf-8")


def parse_json(data: bytes) -> Any:
    return json.loads(data.decode("utf-8"))


def dump_json(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


_CODECS = {"csv": (parse_csv, dump_csv), "json": (parse_json, dump_json)}


def _parse(kind: str, data: bytes, what: str) -> Any:
    try:
        return _CODECS[kind][0](data)
    except UnicodeDecodeError as err:
        raise RecordError(f"{what} is not valid UTF-8 (byte {err.start})") from None
    except json.JSONDecodeError as err:
        raise RecordError(f"{what} is not valid JSON: {err.msg} at character {err.pos + 1}") from None
    except csv.Error as err:
        raise RecordError(f"{what} is not valid CSV: {err}") from None


def _apply(path: jsonpath.JsonPath, value: Any, what: str) -> Any:
    try:
        return jsonpath.evaluate(path, value)
    except jsonpath.JsonPathMatchError as err:
        raise RecordError(f"{what}: {err}") from None


# -- the job's DataProcessing ---------------------------------------------------------------------------
@dataclass(frozen=True)
class DataProcessing:
    input_filter: jsonpath.JsonPath
    output_filter: jsonpath.JsonPath
    join: bool
    input_kind: str | None  # "csv" | "json" | None (other content types: only the defaults are allowed)
    output_kind: str | None

    @property
    def active(self) -> bool:
        return self.join or not self.input_filter.is_root or not self.output_filter.is_root

    @property
    def filters_input(self) -> bool:
        return not self.input_filter.is_root

    @property
    def per_record_output(self) -> bool:
        """Whether each output record must be matched to its input record."""
        return self.join or not self.output_filter.is_root

    @classmethod
    def build(
        cls,
        *,
        input_filter: str = "$",
        join_source: str = "None",
        output_filter: str = "$",
        content_type: str | None,
        accept: str | None,
        split_type: str,
        assemble_with: str,
    ) -> DataProcessing:
        """Validate everything SageMaker validates before the job starts; raises DataProcessingError."""
        try:
            in_path = jsonpath.parse(input_filter)
        except jsonpath.JsonPathError as err:
            raise DataProcessingError(f"InputFilter: {err}") from None
        try:
            out_path = jsonpath.parse(output_filter)
        except jsonpath.JsonPathError as err:
            raise DataProcessingError(f"OutputFilter: {err}") from None
        if join_source not in ("None", "Input"):
            raise DataProcessingError(f"JoinSource {join_source!r} is not valid; expected 'None' or 'Input'")
        join = join_source == "Input"
        dp = cls(in_path, out_path, join, family(content_type), family(accept))
        if not dp.active:
            return dp
        for label, value in (("ContentType", content_type), ("Accept", accept)):
            if media_type(value) not in SUPPORTED:
                raise DataProcessingError(
                    f"DataProcessing (InputFilter {input_filter!r}, JoinSource {join_source!r}, OutputFilter "
                    f"{output_filter!r}) needs {label} to be one of {', '.join(SUPPORTED)}; received {value!r}"
                )
        if "csv" in (dp.input_kind, dp.output_kind) and (split_type != "Line" or assemble_with != "Line"):
            raise DataProcessingError(
                f"DataProcessing with text/csv needs SplitType 'Line' and AssembleWith 'Line'; "
                f"received SplitType {split_type!r}, AssembleWith {assemble_with!r}"
            )
        if join and dp.input_kind != dp.output_kind:
            raise DataProcessingError(
                f"JoinSource 'Input' joins records of one format; ContentType {content_type!r} and Accept "
                f"{accept!r} differ (use text/csv for both, or application/json(lines) for both)"
            )
        checks = (("InputFilter", in_path, dp.input_kind), ("OutputFilter", out_path, dp.output_kind))
        for label, path, kind in checks:
            if kind == "csv" and not path.index_only:
                raise DataProcessingError(
                    f"{label} {path.expression!r}: a CSV row is a flat JSON array, so only index paths such as "
                    f"'$[0]' or '$[1:]' apply"
                )
        return dp

    # -- per record ---------------------------------------------------------------------------------
    def request_record(self, record: bytes) -> bytes:
        """The bytes sent to the container for one input record (the input filter applied)."""
        if not self.filters_input:
            return record
        assert self.input_kind is not None
        value = _parse(self.input_kind, record, "input record")
        selected = _apply(self.input_filter, value, "InputFilter")
        return _CODECS[self.input_kind][1](selected)

    def output_record(self, record: bytes, output: bytes) -> bytes:
        """The bytes written for one record: join with the original input record, then the output filter."""
        if not self.per_record_output:
            return output
        assert self.output_kind is not None
        if self.join:
            if self.input_kind == "csv":
                if self.output_filter.is_root:
                    # Byte for byte: the input line as it was, then the output cells.
                    return record + b"," + output
                joined: Any = _parse("csv", record, "input record") + _parse("csv", output, "output record")
            else:
                source = _parse("json", record, "input record")
                result = _parse("json", output, "output record")
                if isinstance(source, dict):
                    joined = {**source, "SageMakerOutput": result}
                else:
                    joined = {"SageMakerInput": source, "SageMakerOutput": result}
            kind = self.input_kind
        else:
            joined = _parse(self.output_kind, output, "output record")
            kind = self.output_kind
        assert kind is not None
        selected = _apply(self.output_filter, joined, "OutputFilter")
        return _CODECS[kind][1](selected)
