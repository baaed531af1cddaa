"""The lifecycle's data files: the preprocessed splits read back, scoring files with a record id in front, the
deliberately drifted batch, and ground truth in Model Monitor's layout. Values stay the strings the
preprocessing job wrote, so what is sent is exactly what is in the files."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from cardata.synthetic import DRIFTS
from core.schema import Schema

SPLITS = ("train", "validation", "test")
DRIFT = DRIFTS["older-high-mileage"]  # the synthetic generator's shift, applied to the real test split


@dataclass(frozen=True)
class Split:
    """A headerless label-first split as rows of strings."""

    schema: Schema
    labels: list[str]
    rows: list[list[str]]  # features only, schema order

    @classmethod
    def read(cls, folder: Path, name: str) -> Split:
        schema = Schema.load(folder / "schema.json")
        with open(folder / f"{name}.csv", newline="") as f:
            table = [row for row in csv.reader(f) if row]
        return cls(schema, [r[0] for r in table], [r[1:] for r in table])

    @property
    def names(self) -> list[str]:
        return list(self.schema.names)

    def records(self) -> list[dict[str, object]]:
        """Rows by feature name, numbers as numbers (the JSON a client would send)."""
        numeric = {f.name for f in self.schema.features if f.type == "numeric"}
        return [
            {n: (_number(v) if n in numeric else v) for n, v in zip(self.names, row, strict=True)} for row in self.rows
        ]


def _number(text: str) -> float | int | None:
    if text == "":
        return None
    value = float(text)
    return int(value) if value.is_integer() else value


def csv_line(values: list[str]) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="").writerow(values)
    return buf.getvalue()


def record_id(i: int) -> str:
    return f"car-{i + 1:04d}"


def write_scoring(split: Split, path: Path, rows: list[list[str]] | None = None) -> Path:
    """A file to score as a user drops it in S3: a header, ``id`` first, then the features (``car-0001,...``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = split.rows if rows is None else rows
    header = csv_line(["id", *split.names]) + "\n"
    path.write_text(header + "".join(csv_line([record_id(i), *row]) + "\n" for i, row in enumerate(rows)))
    return path


def drifted_rows(split: Split) -> list[list[str]]:
    """Older cars with higher mileage: the same records with mileage doubled plus 15,000 (cardata.synthetic's
    ``older-high-mileage`` shift); every other feature as it was."""
    i = split.names.index("mileage")
    out = []
    for row in split.rows:
        row = list(row)
        if row[i] != "":
            row[i] = str(round(float(row[i]) * DRIFT.mileage_scale + DRIFT.mileage_shift))
        out.append(row)
    return out


def write_ground_truth(labels: dict[str, str], root: Path, when: datetime) -> Path:
    """``groundTruthData`` lines keyed by the inference id, under ``yyyy/mm/dd/hh/`` of when they were collected."""
    folder = root / when.strftime("%Y/%m/%d/%H")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "labels.jsonl"
    lines = [
        json.dumps(
            {
                "groundTruthData": {"data": label, "encoding": "CSV"},
                "eventMetadata": {"eventId": inference_id},
                "eventVersion": "0",
            }
        )
        for inference_id, label in labels.items()
    ]
    path.write_text("\n".join(lines) + "\n")
    return path
