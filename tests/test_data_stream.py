"""Channels are read a piece at a time (algorithms.data.READ_BYTES of whole lines, parquet row groups) and their
encoded rows kept in a RowStore, in memory or spilled to a temporary file beyond a budget: the schema, the
matrix and every error are those of reading each file at once."""

from __future__ import annotations

import json
import tempfile

import numpy as np
import pandas as pd
import pytest

from algorithms import data, store
from algorithms.data import Channel, read_channels
from core.errors import UserError

WHOLE = 1 << 30


def channel(tmp_path, files: dict[str, str | bytes], content_type: str = "text/csv", name: str = "train") -> Channel:
    directory = tmp_path / name
    directory.mkdir(parents=True, exist_ok=True)
    for file, content in files.items():
        path = directory / file
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return Channel(name, directory, content_type)


def read(monkeypatch, channels, *, piece: int, spill: int, target: str | None = None):
    monkeypatch.setattr(data, "READ_BYTES", piece)
    return read_channels(channels, target=target, spill_bytes=spill)


def same_reading(monkeypatch, channels, target=None):
    """Read with whole files in memory, then with pieces of a few lines spilled to disk: the same result."""
    whole, schema = read(monkeypatch, channels, piece=WHOLE, spill=WHOLE, target=target)
    pieces, schema_p = read(monkeypatch, channels, piece=48, spill=0, target=target)
    assert schema_p.to_dict() == schema.to_dict()
    for name in whole:
        assert pieces[name].spilled and not whole[name].spilled
        np.testing.assert_array_equal(pieces[name].X, whole[name].X)  # NaN where NaN
        np.testing.assert_array_equal(pieces[name].y, whole[name].y)
    return whole, schema


def cars(n: int, *, mixed_from: int | None = None) -> str:
    lines = ["price,km,make,trim,automatic\n"]
    for i in range(n):
        km = "" if i % 7 == 3 else ("NA" if i % 11 == 5 else f"{i * 1000}")
        make = ["Saab", " Buick ", '"Volvo"', "null", "saab"][i % 5]
        trim = f"0{i % 3}" if mixed_from is None or i < mixed_from else ["04", "GT", "4", "SE", "LX", "EX"][i % 6]
        lines.append(f"{1000 + i},{km},{make},{trim},{'true' if i % 2 else 'False'}\n")
    return "".join(lines)


def test_pieces_and_spilling_give_the_reading_of_whole_files(tmp_path, monkeypatch):
    channels = {
        "train": channel(tmp_path, {"a.csv": cars(40), "b.csv": cars(17)}),
        "validation": channel(tmp_path, {"v.csv": cars(25)}, name="validation"),
    }
    whole, schema = same_reading(monkeypatch, channels, target="price")
    assert len(whole["train"]) == 57 and len(whole["validation"]) == 25
    kinds = {f.name: (f.type, f.levels) for f in schema.features}
    assert kinds["make"] == ("categorical", ("Buick", "Saab", "Volvo", "saab"))
    # true/False are levels as written (validation rows and requests hold that text), not the parser's booleans
    assert kinds["automatic"] == ("categorical", ("False", "true"))
    assert kinds["trim"] == ("numeric", ())  # "00", "01", "02": numbers written with a leading zero


def test_a_column_with_words_only_in_later_pieces_keeps_its_levels_as_written(tmp_path, monkeypatch):
    # Pieces before row 10 hold only numbers in "trim" ("01"...): the column is text, read again as such.
    channels = {"train": channel(tmp_path, {"a.csv": cars(45, mixed_from=10)})}
    _, schema = same_reading(monkeypatch, channels, target="price")
    trim = next(f for f in schema.features if f.name == "trim")
    assert trim.levels == ("00", "01", "02", "04", "4", "EX", "GT", "LX", "SE")  # "04" and "4": two levels


def test_headerless_files_and_parquet_row_groups(tmp_path, monkeypatch):
    rows = [f"{i}.5,{i * 10},{'Saab' if i % 3 else 'Buick'},{'' if i % 4 == 0 else i % 5}\n" for i in range(50)]
    same_reading(monkeypatch, {"train": channel(tmp_path, {"a.csv": "".join(rows[:21]), "b.csv": "".join(rows[21:])})})
    frame = pd.DataFrame(
        {
            "price": np.arange(30, dtype=float),
            "km": [np.nan if i % 6 == 0 else i * 1.5 for i in range(30)],
            "make": [None if i % 7 == 0 else ["Saab", "Buick"][i % 2] for i in range(30)],
        }
    )
    directory = tmp_path / "parquet"
    directory.mkdir()
    frame.to_parquet(directory / "p.parquet", index=False, row_group_size=7)
    same_reading(monkeypatch, {"train": Channel("train", directory, "application/x-parquet")}, target="price")


BAD = {
    "a word in a numeric column": (60, lambda i: f"{i},abc,Saab\n"),
    "a missing label": (55, lambda i: f",{i},Saab\n"),
    "a short row": (50, lambda i: f"{i},{i}\n"),
    "inf in a numeric column": (45, lambda i: f"{i},inf,Saab\n"),
    "1e400 in a text column of numbers": (40, lambda i: f"{i},1e400,Saab\n"),
    "a lone CR": (35, lambda i: f"{i},{i},Sa\rab\n"),
    "an unclosed quote": (30, lambda i: f'{i},{i},"Saab\n'),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_an_error_in_a_late_piece_names_the_same_line_as_one_read(tmp_path, monkeypatch, case):
    at, bad_line = BAD[case]
    lines = ["price,km,make\n"] + [f"{i},{i * 10},{'Saab' if i % 3 else 'Buick'}\n" for i in range(80)]
    lines[at] = bad_line(at)
    if case == "1e400 in a text column of numbers":  # the column is text (quoted numbers), its typo out of range
        lines = [line.replace(",Saab", ",x").replace(",Buick", ",x") for line in lines]
    messages = []
    for piece in (WHOLE, 40):
        ch = channel(tmp_path / str(piece), {"d.csv": "".join(lines)})
        with pytest.raises(UserError) as e:
            read(monkeypatch, {"train": ch}, piece=piece, spill=0, target="price")
        messages.append(str(e.value).replace(str(tmp_path / str(piece)), "<dir>"))
    assert messages[0] == messages[1]
    assert f"line {at + 1}" in messages[0], messages[0]


def test_invalid_utf8_and_a_late_byte_order_mark(tmp_path, monkeypatch):
    body = "".join(f"{i},{i}\n" for i in range(30)).encode()
    bad = body + b"7,\xff\n"
    ch = channel(tmp_path, {"d.csv": bad})
    with pytest.raises(UserError, match=r"d\.csv, line 31: not valid utf-8 text"):
        read(monkeypatch, {"train": ch}, piece=20, spill=0)
    # A byte-order mark opens a file, not a piece: one in the middle is a cell's text (refused as a number).
    ch = channel(tmp_path / "bom", {"d.csv": b"\xef\xbb\xbf" + body + b"\xef\xbb\xbf5,5\n"})
    with pytest.raises(UserError, match=r"d\.csv, line 31, column 1 \(label\): expected a number"):
        read(monkeypatch, {"train": ch}, piece=20, spill=0)


def test_a_parquet_error_names_the_row_of_the_file_across_row_groups(tmp_path, monkeypatch):
    frame = pd.DataFrame({"price": [float(i) for i in range(30)], "km": [float(i) for i in range(30)]})
    frame.loc[23, "price"] = np.nan
    directory = tmp_path / "train"
    directory.mkdir()
    frame.to_parquet(directory / "p.parquet", index=False, row_group_size=5)
    with pytest.raises(UserError, match=r"p\.parquet, row 24, column 1 \(price\): missing label"):
        read(monkeypatch, {"train": Channel("train", directory, "application/x-parquet")}, piece=WHOLE, spill=0)


def test_row_store_reads_any_range_in_memory_and_spilled():
    rng = np.random.default_rng(1)
    blocks = [(rng.normal(size=(k, 3)), rng.normal(size=k)) for k in (5, 1, 9, 4)]
    X, y = np.vstack([b[0] for b in blocks]), np.concatenate([b[1] for b in blocks])
    for budget in (0, 10 * 4 * 8, 1 << 20):  # spilled at once, spilled on the third block, never
        rows = store.RowStore(3, budget)
        for Xb, yb in blocks:
            rows.append(Xb, yb)
        ds = rows.dataset("train")
        assert ds.spilled == (budget < 1 << 20) and len(ds) == 19 and ds.n_features == 3
        for start, stop in ((0, 19), (3, 7), (5, 6), (14, 40), (18, 18)):
            got_X, got_y = ds.rows(start, stop)
            np.testing.assert_array_equal(got_X, X[start:stop])
            np.testing.assert_array_equal(got_y, y[start:stop])
        pieces = list(ds.blocks(4))
        assert all(0 < len(b) <= 4 for b, _ in pieces)
        np.testing.assert_array_equal(np.vstack([b for b, _ in pieces]), X)
        np.testing.assert_array_equal(np.concatenate([c for _, c in pieces]), y)
        window = ds.window(6, 15)
        np.testing.assert_array_equal(window.X, X[6:15])
        np.testing.assert_array_equal(window.rows(2, 100)[1], y[8:15])
        rows.rewrite_columns({1: lambda col: col * 2}, 4)
        np.testing.assert_array_equal(ds.X[:, 1], X[:, 1] * 2)
        np.testing.assert_array_equal(ds.y, y)


def test_a_temporary_directory_that_cannot_be_written_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "missing"))
    rows = store.RowStore(2, 0)
    with pytest.raises(store.SpillError) as e:
        rows.append(np.zeros((3, 2)), np.zeros(3))
    message = str(e.value)
    assert "\n" not in message and str(tmp_path / "missing") in message
    assert "TMPDIR" in message and "BYOC_ROWS_IN_MEMORY_MB" in message


def test_schema_json_channels_read_in_pieces_too(tmp_path, monkeypatch):
    schema = {
        "version": 1,
        "target": "price",
        "features": [{"name": "km"}, {"name": "make", "type": "categorical", "levels": ["Buick", "Saab"]}],
    }
    text = "price,km,make\n" + "".join(f"{i},{i * 10},{'Saab' if i % 3 else 'Buick'}\n" for i in range(40))
    ch = channel(tmp_path, {"a.csv": text, "schema.json": json.dumps(schema)})
    same_reading(monkeypatch, {"train": ch}, target="price")


# -- training from the store ------------------------------------------------------------------------------------------
def test_xgboost_trains_from_blocks_without_materialising_the_channel(tmp_path, monkeypatch):
    from algorithms.xgboost_regressor import XGBoostRegressor

    rng = np.random.default_rng(3)
    lines = ["price,km,make\n"] + [
        f"{rng.normal(100):.4f},{rng.uniform(0, 9):.3f},{['Saab', 'Buick', 'Volvo'][i % 3]}\n" for i in range(3000)
    ]
    channels = {"train": channel(tmp_path, {"a.csv": "".join(lines)})}
    params = {"num_round": 5, "max_depth": 3}
    in_memory, schema = read(monkeypatch, channels, piece=WHOLE, spill=WHOLE, target="price")
    expected = XGBoostRegressor(params, schema).fit(in_memory["train"], log=lambda *a, **k: None)
    spilled, _ = read(monkeypatch, channels, piece=4096, spill=0, target="price")
    X = in_memory["train"].X

    def whole(self):
        raise AssertionError("the whole feature matrix was materialised")

    monkeypatch.setattr(store.StoredDataset, "X", property(whole))
    model = XGBoostRegressor(params, schema).fit(spilled["train"], log=lambda *a, **k: None)
    np.testing.assert_array_equal(model.predict(X), expected.predict(X))


def test_the_in_memory_budget_is_a_validated_setting(opt_ml, car_splits):
    opt_ml.channel("train", {"train.csv": car_splits["train"]}, "text/csv", header=True)
    opt_ml.hyperparameters(num_round=3, target="price")
    spilled = opt_ml.train("xgboost", env={"BYOC_ROWS_IN_MEMORY_MB": "0"})
    assert spilled.returncode == 0, spilled.output
    assert "channel train: " in spilled.output and "in a temporary file" in spilled.output
    for bad in ("-1", "lots", "1.5"):
        result = opt_ml.train("xgboost", env={"BYOC_ROWS_IN_MEMORY_MB": bad})
        assert result.returncode == 1
        assert result.failure_line == (
            f"environment variable BYOC_ROWS_IN_MEMORY_MB: expected a whole number of MiB (0 or more), received {bad!r}"
        )


# VmHWM: the peak of this process image (ru_maxrss would carry over the forking parent's resident size).
_PEAK = """
import sys
from pathlib import Path
from algorithms import data
data.READ_BYTES = 1 << 20  # several pieces for both files
channel = data.Channel("train", Path(sys.argv[1]), "text/csv")
datasets, _ = data.read_channels({"train": channel}, target="price", spill_bytes=0)
assert datasets["train"].spilled
peak = next(line.split()[1] for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(len(datasets["train"]), peak)
"""


def test_reading_a_channel_on_disk_takes_memory_independent_of_its_rows(tmp_path):
    import subprocess
    import sys

    from tests.opt_ml import REPO

    rng = np.random.default_rng(5)
    peaks = {}
    for rows in (200_000, 800_000):
        frame = pd.DataFrame(
            {
                "price": rng.normal(20000, 5000, rows).round(2),
                "km": rng.uniform(0, 2e5, rows).round(1),
                "year": rng.integers(1990, 2025, rows),
                "make": rng.choice(["Saab", "Buick", "Volvo", "Chevrolet"], rows),
                "body": rng.choice(["sedan", "coupe", "wagon"], rows),
            }
        )
        directory = tmp_path / str(rows)
        directory.mkdir()
        frame.to_csv(directory / "cars.csv", index=False)
        out = subprocess.run(
            [sys.executable, "-c", _PEAK, str(directory)], cwd=REPO, capture_output=True, text=True, check=True
        ).stdout.split()
        assert int(out[0]) == rows
        peaks[rows] = int(out[1]) / 1024  # MiB
    # 600k more rows are 27 MiB of encoded rows, and ~50 MiB more of whole-file frames: the peak stays put.
    assert peaks[800_000] - peaks[200_000] < 12, peaks


def test_reading_ahead_keeps_order_raises_in_place_and_stops_with_its_consumer():
    import threading

    def pieces(n, fail_at=None):
        for i in range(n):
            if i == fail_at:
                raise ValueError(f"piece {i}")
            produced.append(i)
            yield i

    produced: list[int] = []
    assert list(data._ahead(pieces(50))) == list(range(50))
    got = []
    with pytest.raises(ValueError, match="piece 7"):
        for item in data._ahead(pieces(20, fail_at=7)):
            got.append(item)
    assert got == list(range(7))  # everything before the error, then the error itself
    produced.clear()
    ahead = data._ahead(pieces(10_000), depth=2)
    assert [next(ahead) for _ in range(3)] == [0, 1, 2]
    ahead.close()  # the consumer stops (an encoding error): the thread stops after at most depth more pieces
    assert len(produced) <= 3 + 2 + 1
    assert not any(t.name == "byoc-read-ahead" for t in threading.enumerate())
