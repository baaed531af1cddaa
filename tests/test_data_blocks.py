"""Channels are encoded in blocks of rows (algorithms.data.ENCODE_BLOCK): the matrix is the same as encoding whole,
and an error in any block names the file's own line (CSV) or row (parquet)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from algorithms import data
from algorithms.data import Channel, read_channels
from core.errors import UserError

SCHEMA = {
    "version": 1,
    "target": None,
    "features": [{"name": "km"}, {"name": "make", "type": "categorical", "levels": ["Buick", "Saab"]}],
}


def write(tmp_path, name: str, content) -> Channel:
    directory = tmp_path / "train"
    directory.mkdir(parents=True, exist_ok=True)
    if isinstance(content, pd.DataFrame):
        content.to_parquet(directory / name, index=False)
        return Channel("train", directory, "application/x-parquet")
    (directory / name).write_text(content)
    (directory / "schema.json").write_text(json.dumps(SCHEMA))
    return Channel("train", directory, "text/csv")


def csv_rows(n: int) -> list[str]:
    return [f"{i}.5,{i * 10},{'Saab' if i % 3 else 'Buick'}\n" for i in range(n)]


@pytest.fixture
def small_blocks(monkeypatch):
    monkeypatch.setattr(data, "ENCODE_BLOCK", 4)


def failure(channel: Channel) -> str:
    with pytest.raises(UserError) as e:
        read_channels({"train": channel})
    return str(e.value)


def test_blocks_give_the_matrix_of_one_pass(tmp_path, monkeypatch):
    # two files, neither a multiple of the block: blocks straddle no file boundary and lose no row
    directory = tmp_path / "train"
    directory.mkdir()
    rows = csv_rows(23)
    (directory / "a.csv").write_text("".join(rows[:10]))
    (directory / "b.csv").write_text("".join(rows[10:]))
    (directory / "schema.json").write_text(json.dumps(SCHEMA))
    whole = read_channels({"train": Channel("train", directory, "text/csv")})[0]["train"]
    monkeypatch.setattr(data, "ENCODE_BLOCK", 4)
    blocks = read_channels({"train": Channel("train", directory, "text/csv")})[0]["train"]
    np.testing.assert_array_equal(blocks.X, whole.X)
    np.testing.assert_array_equal(blocks.y, whole.y)
    assert blocks.X.shape == (23, 2)
    assert blocks.y[22] == 22.5 and blocks.X[22, 0] == 220.0 and blocks.X[21, 1] == 0.0  # Buick


def test_a_bad_cell_in_a_late_block_names_its_line(tmp_path, small_blocks):
    rows = csv_rows(20)
    rows[13] = "13.5,13O,Saab\n"  # line 14: the fourth block
    msg = failure(write(tmp_path, "d.csv", "".join(rows)))
    assert msg.endswith("d.csv, line 14, column 2 (km): expected a number, received '13O'")


def test_an_unknown_level_and_a_missing_label_in_late_blocks(tmp_path, small_blocks):
    rows = csv_rows(20)
    rows[9] = "9.5,90,Volvo\n"
    msg = failure(write(tmp_path, "d.csv", "".join(rows)))
    assert "d.csv, line 10, column 3 (make): unknown level 'Volvo'" in msg
    rows = csv_rows(20)
    rows[17] = ",170,Saab\n"
    msg = failure(write(tmp_path / "2", "d.csv", "".join(rows)))
    assert msg.endswith("d.csv, line 18, column 1 (label): missing label (an empty cell, NA, null, ...)")


def test_parquet_rows_in_late_blocks(tmp_path, small_blocks):
    frame = pd.DataFrame({"price": np.arange(12.0), "km": [str(i) for i in range(12)]})
    frame.loc[10, "km"] = "ten"
    msg = failure(write(tmp_path, "d.parquet", frame))
    assert msg.endswith("d.parquet, row 11, column 2 (km): expected a number, received 'ten'")
