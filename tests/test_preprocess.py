"""processing.preprocess as SageMaker runs it: a subprocess reading an input folder and writing three channels."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

import cardata
from core.schema import Schema

ROOT = Path(__file__).resolve().parents[1]
REAL_LINES = cardata.REAL_CSV.read_text().splitlines()
HEADER, ROWS = REAL_LINES[0], REAL_LINES[1:]


def canon(line: str) -> tuple:
    """A CSV line's values: numbers compared as numbers (11726.0 and 11726 are the same price), the rest as text."""

    def value(cell: str):
        try:
            return float(cell)
        except ValueError:
            return cell

    return tuple(value(c) for c in line.split(","))


def rows_of(lines: list[str]) -> Counter:
    return Counter(canon(line) for line in lines)


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str
    output: Path
    message: Path

    @property
    def reason(self) -> str:
        """The last stderr line: the one-line failure reason."""
        lines = self.stderr.strip().splitlines()
        return lines[-1] if lines else ""

    def lines(self, split: str) -> list[str]:
        return (self.output / split / f"{split}.csv").read_text().splitlines()

    def schema(self, split: str = "train") -> Schema:
        return Schema.load(self.output / split / "schema.json")


class Job:
    """An /opt/ml tree under tmp_path, relocated with SAGEMAKER_BASE_DIR as in the tests of the training job."""

    def __init__(self, root: Path):
        self.base = root / "opt_ml"
        self.input = self.base / "processing" / "input"
        self.output = self.base / "processing" / "output"
        self.input.mkdir(parents=True)

    def write(self, relative: str, text: str) -> Path:
        path = self.input / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return path

    def run(self, *args: str, base: Path | None = None) -> Result:
        env = {**os.environ, "SAGEMAKER_BASE_DIR": str(base or self.base)}
        proc = subprocess.run(
            [sys.executable, "-m", "processing.preprocess", *args],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        return Result(proc.returncode, proc.stdout, proc.stderr, self.output, self.base / "output" / "message")


@pytest.fixture
def job(tmp_path) -> Job:
    return Job(tmp_path)


def real_csv(job: Job, name: str = "car_prices.csv") -> Path:
    return job.write(name, cardata.REAL_CSV.read_text())


def assert_fails(result: Result, *culprits: str) -> None:
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    for culprit in culprits:
        assert culprit in result.reason, result.reason
    # The same one line is what DescribeProcessingJob returns as ExitMessage.
    message = result.message.read_text()
    assert "\n" not in message and len(message.encode()) <= 1024
    assert result.reason.endswith(message)
    assert not (result.output / "train" / "train.csv").exists()


# -- happy path -------------------------------------------------------------------------------------------------------
def test_bundled_csv_with_the_default_paths(job):
    real_csv(job)
    r = job.run()  # no arguments: /opt/ml/processing/{input,output} under SAGEMAKER_BASE_DIR
    assert r.returncode == 0, r.stderr
    sizes = {s: len(r.lines(s)) for s in ("train", "validation", "test")}
    assert sizes == {"train": 562, "validation": 121, "test": 121}
    summary = r.stdout.strip().splitlines()[-1]
    assert "804 rows" in summary and "train 562, validation 121, test 121" in summary
    assert r.message.read_text() == summary
    # Nothing but the three channels in the output.
    assert sorted(p.relative_to(r.output).as_posix() for p in r.output.rglob("*") if p.is_file()) == [
        f"{s}/{f}" for s in ("test", "train", "validation") for f in ("schema.json", f"{s}.csv")
    ]


def test_splits_are_the_input_rows_label_first_without_header(job):
    real_csv(job)
    r = job.run()
    assert r.returncode == 0, r.stderr
    out = [line for s in ("train", "validation", "test") for line in r.lines(s)]
    # Same columns (label first, features in schema order = the input's order here), same text, each row once.
    assert rows_of(out) == rows_of(ROWS)
    assert HEADER not in out
    for split in ("train", "validation", "test"):
        first = r.lines(split)[0].split(",")
        float(first[0])  # the label, a number: no header line
        assert first[-2] in cardata.MAKES and first[-1] in cardata.BODY_TYPES  # strings kept, unquoted


def test_schema_json_in_every_channel(job):
    real_csv(job)
    r = job.run()
    docs = [json.loads((r.output / s / "schema.json").read_text()) for s in ("train", "validation", "test")]
    assert docs[0] == docs[1] == docs[2]
    schema = r.schema()
    assert schema.target == "price"
    assert schema.names == ["mileage", "cylinder", "doors", "cruise", "sound", "leather", "make", "body_type"]
    assert [f.type for f in schema.features] == ["numeric"] * 6 + ["categorical"] * 2
    assert schema.features[6].levels == cardata.MAKES
    assert schema.features[7].levels == cardata.BODY_TYPES
    # Every split encodes against it without an unknown level.
    for split in ("train", "validation", "test"):
        frame = pd.read_csv(r.output / split / f"{split}.csv", header=None, dtype=str, keep_default_na=False)
        schema.encode(frame.iloc[:, 1:], source=split)


def test_seed_makes_the_split_deterministic(job, tmp_path):
    real_csv(job)
    a = job.run()
    first = {s: (a.output / s / f"{s}.csv").read_bytes() for s in ("train", "validation", "test")}
    b = job.run()
    assert {s: (b.output / s / f"{s}.csv").read_bytes() for s in first} == first
    c = job.run("--seed", "7")
    assert (c.output / "test" / "test.csv").read_bytes() != first["test"]
    assert rows_of(c.lines("train") + c.lines("validation") + c.lines("test")) == rows_of(ROWS)


def test_split_fractions(job):
    real_csv(job)
    r = job.run("--split", "0.5,0.25,0.25")
    assert r.returncode == 0, r.stderr
    assert [len(r.lines(s)) for s in ("train", "validation", "test")] == [402, 201, 201]


def test_levels_come_from_the_whole_input(job):
    # A level seen once lands in one split only, yet every channel's schema knows it.
    job.write("a.csv", HEADER + "\n" + "\n".join(ROWS[:99]) + "\n1234.5,100,4,2,0,0,0,Hummer,coupe\n")
    r = job.run()
    assert r.returncode == 0, r.stderr
    for split in ("train", "validation", "test"):
        assert "Hummer" in r.schema(split).features[6].levels


def test_capitalised_and_spaced_headers_are_normalised(job):
    header = "Price,Mileage,Cylinder,Doors,Cruise,Sound,Leather,Make,Body Type"
    job.write("cars.csv", header + "\n" + "\n".join(ROWS) + "\n")
    r = job.run("--target", "Price")
    assert r.returncode == 0, r.stderr
    assert "'Body Type' -> 'body_type'" in r.stdout and "'Price' -> 'price'" in r.stdout
    assert r.schema().names[-1] == "body_type" and r.schema().target == "price"
    assert rows_of(r.lines("train") + r.lines("validation") + r.lines("test")) == rows_of(ROWS)


def test_parquet_input_gives_the_same_channels_as_csv(job, tmp_path):
    real_csv(job)
    csv_run = job.run()
    expected = {s: (csv_run.output / s / f"{s}.csv").read_bytes() for s in ("train", "validation", "test")}
    other = Job(tmp_path / "parquet")
    cardata.load().to_parquet(other.input / "cars.parquet")
    r = other.run()
    assert r.returncode == 0, r.stderr
    assert {s: (r.output / s / f"{s}.csv").read_bytes() for s in expected} == expected
    assert r.schema() == csv_run.schema()


def test_several_files_in_sub_folders_are_concatenated(job):
    real = cardata.load()
    real.iloc[:300].to_csv(job.input / "a.csv", index=False)
    (job.input / "part" / "deeper").mkdir(parents=True)
    real.iloc[300:600][list(reversed(real.columns))].to_csv(job.input / "part" / "b.csv", index=False)  # any order
    real.iloc[600:].to_parquet(job.input / "part" / "deeper" / "c.parquet")
    job.write("part/_manifest.json", "{}")  # not a data file: ignored, and said so
    job.write(".cache/junk.csv", "not,a\nreal,file,at all\n")  # hidden: ignored
    r = job.run()
    assert r.returncode == 0, r.stderr
    assert "from 3 file(s)" in r.stdout and "_manifest.json" in r.stdout
    assert rows_of(r.lines("train") + r.lines("validation") + r.lines("test")) == rows_of(ROWS)


def test_gzipped_csv_and_a_single_file_as_input(job, tmp_path):
    packed = tmp_path / "cars.csv.gz"
    packed.write_bytes(gzip.compress(cardata.REAL_CSV.read_bytes()))
    r = job.run("--input", str(packed))
    assert r.returncode == 0, r.stderr
    assert rows_of(r.lines("train") + r.lines("validation") + r.lines("test")) == rows_of(ROWS)


def test_bad_number_in_gzipped_csv_names_the_line(job):
    rows = list(ROWS[:30])
    assert rows[2] == "29142.71,31655,4,2,1,1,1,Saab,convertible"
    rows[2] = "29142.71,31655,six,2,1,1,1,Saab,convertible"
    (job.input / "a.csv.gz").write_bytes(gzip.compress((HEADER + "\n" + "\n".join(rows) + "\n").encode()))
    assert_fails(job.run(), f"file {job.input / 'a.csv.gz'}, line 4, column 3 (cylinder)", "received 'six'")


def test_label_goes_first_wherever_it_is_in_the_input(job):
    real = cardata.load()
    real[list(reversed(real.columns))].to_csv(job.input / "reversed.csv", index=False)
    r = job.run()
    assert r.returncode == 0, r.stderr
    assert r.schema().names == list(reversed(real.columns))[:-1]  # body_type ... mileage, without price
    flipped = [",".join(reversed(line.split(","))) for line in ROWS]  # price last in the input lines
    out = r.lines("train") + r.lines("validation") + r.lines("test")
    assert rows_of(out) == rows_of([f"{line.rsplit(',', 1)[1]},{line.rsplit(',', 1)[0]}" for line in flipped])


def test_one_hot_writes_dummy_columns(job):
    real_csv(job)
    r = job.run("--one-hot")
    assert r.returncode == 0, r.stderr
    schema = r.schema()
    dummies = [f"make_{m.lower()}" for m in cardata.MAKES] + [f"body_type_{b}" for b in cardata.BODY_TYPES]
    assert schema.names == ["mileage", "cylinder", "doors", "cruise", "sound", "leather", *dummies]
    assert all(f.type == "numeric" for f in schema.features)
    frame = pd.concat(
        pd.read_csv(r.output / s / f"{s}.csv", header=None, names=["price", *schema.names])
        for s in ("train", "validation", "test")
    )
    make = frame[dummies[:6]]
    assert make.isin([0, 1]).all().all() and (make.sum(axis=1) == 1).all()
    assert (frame[dummies[6:]].sum(axis=1) == 1).all()
    # The dummies are the original data set's columns again.
    original = pd.read_csv(cardata.ORIGINAL_CSV)
    assert sorted(frame["make_saab"].astype(int).tolist()) == sorted(original["Saab"].tolist())
    assert frame["make_cadillac"].sum() == original["Cadillac"].sum()


def test_drop_and_categorical_columns(job):
    real_csv(job)
    r = job.run("--drop-columns", "doors,Leather", "--categorical", "cylinder")
    assert r.returncode == 0, r.stderr
    schema = r.schema()
    assert schema.names == ["mileage", "cylinder", "cruise", "sound", "make", "body_type"]
    assert schema.features[1].levels == ("4", "6", "8")
    assert len(r.lines("train")[0].split(",")) == 7


def test_missing_feature_values_stay_empty(job):
    rows = [*ROWS[:40], "12000.5,,4,4,1,0,0,,sedan"]
    job.write("a.csv", HEADER + "\n" + "\n".join(rows) + "\n")
    r = job.run()
    assert r.returncode == 0, r.stderr
    out = r.lines("train") + r.lines("validation") + r.lines("test")
    assert "12000.5,,4,4,1,0,0,,sedan" in out
    assert r.schema().features[6].levels == tuple(sorted({row.split(",")[7] for row in ROWS[:40]}))


# -- bad input: one line naming the culprit ---------------------------------------------------------------------------
def test_missing_input_folder(job, tmp_path):
    r = job.run("--input", str(tmp_path / "nowhere"))
    assert_fails(r, f"input folder {tmp_path / 'nowhere'} does not exist")


def test_input_folder_without_data_files(job):
    job.write("notes.txt", "hello")
    assert_fails(job.run(), "holds no data files", "found only: notes.txt")


def test_empty_input_folder(job):
    assert_fails(job.run(), "holds no data files", "it is empty")


def test_empty_file_among_good_ones(job):
    real_csv(job)
    job.write("sub/empty.csv", "")
    assert_fails(job.run(), f"file {job.input / 'sub' / 'empty.csv'}: empty file")


def test_empty_parquet_file(job):
    real_csv(job)
    job.write("z.parquet", "")
    assert_fails(job.run(), f"file {job.input / 'z.parquet'}: empty file")


def test_header_only_file(job):
    job.write("a.csv", HEADER + "\n")
    assert_fails(job.run(), f"file {job.input / 'a.csv'}: a header but no data rows")


def test_missing_target_lists_the_columns(job):
    real_csv(job)
    r = job.run("--target", "cost")
    assert_fails(r, "target column 'cost' not found", "columns found: " + HEADER.replace(",", ", "))


@pytest.mark.parametrize(
    ("first_line", "culprit"),
    [
        ("22661.05,20105,6,4,1,0,0", "columns '0' and '0' both normalise to '0'"),  # repeated values
        ("22661.05,20105,6,4", "target column 'price' not found"),
    ],
)
def test_headerless_input_is_called_out(job, first_line, culprit):
    job.write("a.csv", first_line + "\n" + first_line + "\n")
    assert_fails(job.run(), culprit, "the first line looks like data")


def test_unparsable_target_names_file_line_and_column(job):
    rows = list(ROWS[:50])
    rows[9] = "12k," + rows[9].split(",", 1)[1]
    job.write("a.csv", HEADER + "\n" + "\n".join(rows) + "\n")
    assert_fails(
        job.run(), f"file {job.input / 'a.csv'}, line 11, column 1 (price)", "expected a number, received '12k'"
    )


def test_unparsable_feature_in_second_file_after_a_blank_line(job):
    real_csv(job)
    rows = list(ROWS[:30])
    rows[4] = rows[4].replace(rows[4].split(",")[1], "lots", 1)
    # Line 2 is blank (skipped by the reader): the bad row is the 5th data row on line 7.
    job.write("more/b.csv", HEADER + "\n\n" + "\n".join(rows) + "\n")
    assert_fails(job.run(), f"file {job.input / 'more' / 'b.csv'}, line 7, column 2 (mileage)", "received 'lots'")


def test_unparsable_number_in_parquet_names_the_row(job):
    real = cardata.load().astype({"cylinder": str})
    real.loc[12, "cylinder"] = "V8"
    real.to_parquet(job.input / "cars.parquet")
    assert_fails(job.run(), f"file {job.input / 'cars.parquet'}: row 13, column 3 (cylinder)", "received 'V8'")


def test_missing_target_value(job):
    rows = [*ROWS[:20], "," + ROWS[20].split(",", 1)[1]]
    job.write("a.csv", HEADER + "\n" + "\n".join(rows) + "\n")
    assert_fails(job.run(), f"file {job.input / 'a.csv'}, line 22, column 1 (price)", "target 'price' is missing")


def test_row_with_wrong_field_count(job):
    rows = list(ROWS[:20])
    rows[14] += ",extra"
    job.write("a.csv", HEADER + "\n" + "\n".join(rows) + "\n")
    assert_fails(job.run(), f"file {job.input / 'a.csv'}, line 16", "expected 9 fields like the header, received 10")


def test_files_with_different_columns(job):
    real_csv(job, "a.csv")
    cardata.load().drop(columns=["doors"]).to_csv(job.input / "b.csv", index=False)
    assert_fails(job.run(), f"file {job.input / 'b.csv'}", "missing ['doors']")


def test_columns_that_normalise_to_the_same_name(job):
    job.write("a.csv", "Price,price,make\n1,2,a\n")
    assert_fails(job.run(), "columns 'Price' and 'price' both normalise to 'price'")


@pytest.mark.parametrize("rows", [1, 2, 3])
def test_too_few_rows_for_the_splits(job, rows):
    job.write("a.csv", HEADER + "\n" + "\n".join(ROWS[:rows]) + "\n")
    assert_fails(job.run(), f"{rows} row(s) are too few for --split 0.7,0.15,0.15", "would be empty")


@pytest.mark.parametrize("split", ["0.7,0.3", "0.7,0.2,0.2", "a,b,c", "1,0,0", "0.8,0.3,-0.1", "nan,0.5,0.5"])
def test_bad_split_values(job, split):
    real_csv(job)
    assert_fails(job.run("--split", split), "--split: expected three fractions", repr(split))


@pytest.mark.parametrize(
    ("args", "culprit"),
    [
        (["--seed", "x"], "argument --seed: invalid int value: 'x'"),
        (["--seed", "-1"], "--seed: expected a non-negative integer, received -1"),
        (["--bogus"], "unrecognized arguments: --bogus"),
        (["--drop-columns", "colour"], "--drop-columns: no column 'colour'"),
        (["--categorical", "price"], "--categorical: 'price' is the target"),
    ],
)
def test_bad_arguments(job, args, culprit):
    real_csv(job)
    assert_fails(job.run(*args), culprit)


# -- where the message goes -------------------------------------------------------------------------------------------
def test_no_message_file_outside_a_job(job, tmp_path):
    real_csv(job)
    missing_base = tmp_path / "no_opt_ml"
    r = job.run("--input", str(job.input), "--output", str(job.output), "--target", "cost", base=missing_base)
    assert r.returncode == 1 and "target column 'cost' not found" in r.reason
    assert not missing_base.exists()


def test_message_file_argument(job, tmp_path):
    real_csv(job)
    message = tmp_path / "elsewhere" / "message"
    r = job.run("--target", "cost", "--message-file", str(message))
    assert r.returncode == 1
    assert r.reason.endswith(message.read_text())
    assert not r.message.exists()
