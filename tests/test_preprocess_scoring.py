"""The preprocessing job's scoring mode: the training schema applied to files to score, record ids kept."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from processing import preprocess

REPO = Path(__file__).resolve().parents[1]
CARS = list(csv.reader((REPO / "cardata" / "car_prices.csv").open()))


@pytest.fixture(scope="module")
def schema(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("train")
    preprocess.main(
        [
            "--input",
            str(REPO / "cardata" / "car_prices.csv"),
            "--output",
            str(root / "splits"),
            "--message-file",
            "/dev/null",
        ]
    )
    return root / "splits" / "train" / "schema.json"


def scoring_file(folder: Path, rows: list[list[str]], header: list[str] | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "batch-1.csv"
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        # columns in another order than the schema's, the label present: both are fine for scoring
        writer.writerow(header or ["Body Type", "id", *CARS[0][1:-1], "Price"])
        writer.writerows(rows)
    return path


def score(tmp_path: Path, schema: Path, *rows: list[str], header=None) -> tuple[int, Path]:
    scoring_file(tmp_path / "in", list(rows), header)
    message = tmp_path / "message"
    code = preprocess.main(
        ["--input", str(tmp_path / "in"), "--output", str(tmp_path / "out"), "--schema", str(schema),
         "--message-file", str(message)]
    )  # fmt: skip
    return code, message


def car(i: int, make: str | None = None) -> list[str]:
    row = CARS[i]
    features = row[1:-1] if make is None else [*row[1:-2], make]
    return [row[-1], f"car-{i:04d}", *features, row[0]]


def test_ids_first_then_the_features_in_schema_order(tmp_path, schema):
    code, message = score(tmp_path, schema, car(1), car(2))
    assert code == 0, message.read_text()
    lines = (tmp_path / "out" / "batch-1.csv").read_text().splitlines()
    assert lines == [f"car-{i:04d}," + ",".join(CARS[i][1:]) for i in (1, 2)]
    assert message.read_text().startswith("score: batch-1.csv 2 records")


def test_an_unknown_category_is_named_with_its_line(tmp_path, schema):
    code, message = score(tmp_path, schema, car(1), car(2, make="Tesla"))
    assert code == 1
    text = message.read_text()
    assert "batch-1.csv, line 3, column 9 (make)" in text and "unknown level 'Tesla' of 'make'" in text
    assert not (tmp_path / "out" / "batch-1.csv").exists()


def test_a_missing_feature_column_and_an_empty_id_are_refused(tmp_path, schema):
    header = ["Body Type", "id", *CARS[0][1:-2], "Price"]  # no make
    code, message = score(tmp_path, schema, [*car(1)[:-2], car(1)[-1]], header=header)
    assert code == 1 and "column 'make' not found" in message.read_text()
    row = car(1)
    row[1] = ""
    code, message = score(tmp_path / "second", schema, row)
    assert code == 1 and "empty record id" in message.read_text()
