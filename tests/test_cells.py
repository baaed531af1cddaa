"""One meaning for every CSV cell (core/cells.py): each case of the grammar goes through the five real stages
(training's channel reader, the preprocessing job in scoring mode, the serving decoders, the batch transform
emulator against a served model, the monitor's capture reader and sketches) and every stage must read it the same
way: the same number, missing, the same level, or refused. Then the grammar's own rules, and property-based round
trips."""

from __future__ import annotations

import json
import math
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from algorithms.data import Channel, read_channels
from core import arrow_cells, cells
from core.errors import DataError
from core.schema import Schema
from emulators.local_server import LocalServer
from emulators.transform import main as transform_main
from monitoring.datacapture import capture_record, read_capture_file, to_line
from monitoring.readers import BadLines, FileResult, Layout, Window
from monitoring.statistics import Profile, specs_from_schema
from processing import preprocess
from serving.codecs import VECTORISED_CSV_BYTES, Codecs
from serving.errors import RequestError
from serving.records import RecordParser
from tests import opt_ml as om

SCHEMA_DOC = {
    "version": 1,
    "target": "price",
    "features": [
        {"name": "mileage", "type": "numeric"},
        {"name": "make", "type": "categorical", "levels": ["Buick", "Saab"]},
    ],
}
SCHEMA = Schema.from_dict(SCHEMA_DOC)
MISSING = "<missing>"
REFUSED = "<refused>"
OTHER = ("3", "Saab")  # the row next to the case (never equal to a case's value)

NUMERIC = [
    ("5", 5.0),
    (" 5 ", 5.0),
    ("\t7\t", 7.0),
    ("-0", 0.0),
    ("+.5", 0.5),
    ("5.", 5.0),
    ("1e5", 1e5),
    ("2.5E-3", 0.0025),
    ("1e-400", 0.0),
    ("-3.4028234e38", -3.4028234e38),
    ('"42"', 42.0),
    ('" 6 "', 6.0),
    ("", MISSING),
    ("  ", MISSING),
    ("NA", MISSING),
    ("na", MISSING),
    ("N/A", MISSING),
    ("n/a", MISSING),
    ("NaN", MISSING),
    ("nan", MISSING),
    ("null", MISSING),
    ("NULL", MISSING),
    ("None", MISSING),
    (" NA ", MISSING),
    ('"NA"', MISSING),
    ('""', MISSING),
    ("inf", REFUSED),
    ("-Infinity", REFUSED),
    ("1e400", REFUSED),
    ("3.5e38", REFUSED),
    ("abc", REFUSED),
    ("1_000", REFUSED),
    ("0x10", REFUSED),
    ("\u0662\u0664", REFUSED),
    ("\uff12\uff14", REFUSED),
    ("-nan", REFUSED),
    ("#N/A", REFUSED),
    ("5 5", REFUSED),
    ('5"', REFUSED),
    ('"5', REFUSED),
]
CATEGORICAL = [
    ("Buick", "Buick"),
    (" Saab ", "Saab"),
    ('" Saab "', "Saab"),
    ('"Buick"', "Buick"),
    ("", MISSING),
    ("NA", MISSING),
    ("None", MISSING),
    ('"null"', MISSING),
    ("buick", REFUSED),
    ("Ford", REFUSED),
    ('Bu"ick', REFUSED),
]
CASES = [("numeric", t, e) for t, e in NUMERIC] + [("categorical", t, e) for t, e in CATEGORICAL]
# Whole bodies (two records: 5,Buick and 7,Saab): what frames the cells
BODIES = [
    ("bom", "\ufeff{0}\n{1}\n", [(5.0, "Buick"), (7.0, "Saab")]),
    ("crlf", "{0}\r\n{1}\r\n", [(5.0, "Buick"), (7.0, "Saab")]),
    ("lone cr", "{0}\r{1}\n", REFUSED),
    ("no final newline", "{0}\n{1}", [(5.0, "Buick"), (7.0, "Saab")]),
]
RECORDS = ("5,Buick", "7,Saab")


def record(kind: str, text: str) -> str:
    return f"{text},Buick" if kind == "numeric" else f"5,{text}"


def meaning(kind: str, value: float) -> object:
    """A decoded matrix cell back to the table's terms."""
    if math.isnan(value):
        return MISSING
    return value if kind == "numeric" else SCHEMA.features[1].levels[int(value)]


def cell_of(kind: str, row: tuple[object, object]) -> object:
    return row[0] if kind == "numeric" else row[1]


# -- the five stages, each returning REFUSED or one (mileage, make) pair per record --------------------------------
def training(tmp: Path, lines: list[str] | str) -> object:
    channel = tmp / "train"
    channel.mkdir(parents=True)
    (channel / "schema.json").write_text(json.dumps(SCHEMA_DOC))
    body = lines if isinstance(lines, str) else "".join(f"1,{line}\n" for line in lines)
    (channel / "d.csv").write_bytes(body.encode())
    try:
        datasets, _ = read_channels({"train": Channel("train", channel, "text/csv")})
    except DataError:
        return REFUSED
    return [(meaning("numeric", x[0]), meaning("categorical", x[1])) for x in datasets["train"].X]


def preprocessing(tmp: Path, body: str) -> object:
    """Scoring mode: the training transformation applied to a file with a header and ids."""
    (tmp / "in").mkdir(parents=True)
    (tmp / "in" / "s.csv").write_bytes(body.encode())
    schema = tmp / "schema.json"
    schema.write_text(json.dumps(SCHEMA_DOC))
    argv = ["--input", str(tmp / "in"), "--output", str(tmp / "out"), "--schema", str(schema)]
    code = preprocess.main([*argv, "--message-file", str(tmp / "message")])
    if code == 1:
        return REFUSED
    assert code == 0, (tmp / "message").read_text()
    rows = []
    for line in (tmp / "out" / "s.csv").read_text().splitlines():
        _, mileage, make = cells.split_record(line)
        rows.append((float(mileage) if mileage else MISSING, make or MISSING))
    return rows


def serving(body: str, *, vectorised: bool = False) -> object:
    decode = Codecs(RecordParser(SCHEMA)).decoder("text/csv")
    padding = ""
    if vectorised:  # enough rows before the case for the body to take the vectorised path (when it can)
        padding = f"{','.join(OTHER)}\n" * (VECTORISED_CSV_BYTES // len(",".join(OTHER)) + 1)
    try:
        X = decode((padding + body).encode())
    except RequestError:
        return REFUSED
    X = X[padding.count("\n") :]
    return [(meaning("numeric", x[0]), meaning("categorical", x[1])) for x in X]


def monitoring(tmp: Path, body: str) -> object:
    """One captured request (the body as the endpoint received it) next to a plain one; the sketches' reading."""
    when = datetime(2026, 1, 1, tzinfo=UTC)
    other = ",".join(OTHER).encode()
    lines = [
        to_line(capture_record(body.encode(), "text/csv", b"1.0", "text/csv", when, inference_id="case")),
        to_line(capture_record(other, "text/csv", b"1.0", "text/csv", when, inference_id="other")),
    ]
    tmp.mkdir(parents=True)
    path = tmp / "capture.jsonl"
    path.write_text("".join(lines))
    specs = specs_from_schema(SCHEMA)
    profile, bad = Profile(specs), BadLines()
    for batch in read_capture_file(path, path.read_bytes(), Layout(tuple(specs)), Window(), bad, FileResult()):
        profile.update(batch.columns, batch.n_rows, absent=batch.absent)
    if bad.count:
        return REFUSED
    return profile


def monitored(profile: Any, kind: str) -> object:
    """What the monitor made of the case cell: missing, the number, the level, or REFUSED (not a number, a level
    the schema does not know, a malformed record)."""
    if profile is REFUSED:
        return REFUSED
    if kind == "numeric":
        sk = profile.sketches["mileage"]
        if sk.num_mismatch:
            return REFUSED
        if sk.num_missing:
            return MISSING
        return sk.min if sk.max == float(OTHER[0]) else sk.max
    sk = profile.sketches["make"]
    if sk.num_missing:
        return MISSING
    level = next((v for v in sk.counts if v != OTHER[1]), OTHER[1])
    return level if level in SCHEMA.features[1].levels else REFUSED


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A linear model (price ~ 3 * mileage + make) served by `python -m serving.serve`: every reading of a cell
    changes its prediction."""
    base = tmp_path_factory.mktemp("cells") / "opt_ml"
    job = om.OptML(base)
    rows = [f"{3 * m + (100 if m % 2 else 700)},{m},{'Buick' if m % 2 else 'Saab'}" for m in range(1, 61)]
    job.channel("train", {"d.csv": "\n".join(rows) + "\n", "schema.json": json.dumps(SCHEMA_DOC)})
    result = job.train("linear")
    assert result.returncode == 0, result.output
    with LocalServer("linear", base, workers=1) as running:
        yield running


def predicted(server, body: str) -> list[float]:
    r = requests.post(f"{server.url}/invocations", data=body.encode(), headers={"Content-Type": "text/csv"}, timeout=30)
    assert r.status_code == 200, r.text
    return [float(x) for x in r.text.splitlines()]


def transform(server, tmp: Path, body: str) -> object:
    """The batch transform of a scoring file with ids (input filter, join, output filter), as the scoring pipeline
    runs it; each record's prediction, or REFUSED when the job failed."""
    (tmp / "in").mkdir(parents=True)
    (tmp / "in" / "s.csv").write_bytes(body.encode())
    argv = ["--endpoint", server.url, "--input", str(tmp / "in"), "--output", str(tmp / "out")]
    argv += ["--content-type", "text/csv", "--accept", "text/csv", "--split-type", "Line", "--assemble-with", "Line"]
    argv += ["--input-filter", "$[1:]", "--join-source", "Input", "--output-filter", "$[0,-1]"]
    code = transform_main(argv)
    if code == 1:
        return REFUSED
    assert code == 0
    return [float(cells.split_record(line)[1]) for line in (tmp / "out" / "s.csv.out").read_text().splitlines()]


def canonical(value: object) -> str:
    """How the table writes a meaning as a plain cell, for the served model's own answer."""
    if value is MISSING:
        return ""
    return repr(value) if isinstance(value, float) else str(value)


# -- the table ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("kind", "text", "expected"), CASES, ids=[f"{k}:{t!r}" for k, t, _ in CASES])
def test_every_stage_reads_a_cell_the_same_way(kind, text, expected, tmp_path, server):
    line = record(kind, text)
    want = REFUSED if expected is REFUSED else [expected]
    readings = {
        "training": training(tmp_path / "t", [line]),
        "preprocessing": preprocessing(tmp_path / "p", f"id,mileage,make\nr1,{line}\n"),
        "serving": serving(line + "\n"),
        "serving (vectorised)": serving(line + "\n", vectorised=True),
    }
    readings = {k: v if v is REFUSED else [cell_of(kind, r) for r in v] for k, v in readings.items()}
    readings["monitoring"] = monitored(monitoring(tmp_path / "m", line), kind)
    readings["monitoring"] = readings["monitoring"] if readings["monitoring"] is REFUSED else [readings["monitoring"]]
    assert readings == dict.fromkeys(readings, want)

    # batch transform: the job fails, or each prediction is the model's answer for the cell as the table reads it
    out = transform(server, tmp_path / "b", f"r1,{line}\n")
    if expected is REFUSED:
        assert out is REFUSED
    else:
        row = ("5", "Buick") if kind == "categorical" else (None, "Buick")
        cells_ = [canonical(expected), row[1]] if kind == "numeric" else [row[0], canonical(expected)]
        assert out == predicted(server, ",".join(cells_))


def framed(template: str, records: list[str], header: str | None = None) -> str:
    """The template's framing (BOM, line ends) around the records, with a header line first when given."""
    if header is not None:
        records = [f"{header}\n{records[0]}", *records[1:]]
    return template.format(*records)


@pytest.mark.parametrize(("name", "template", "expected"), BODIES, ids=[b[0] for b in BODIES])
def test_every_stage_frames_records_the_same_way(name, template, expected, tmp_path, server):
    """Byte-order mark, CRLF, lone CR: what surrounds the cells, at the start and the end of files and bodies."""
    with_ids = [f"r{i},{r}" for i, r in enumerate(RECORDS)]
    readings = {
        "training": training(tmp_path / "t", framed(template, [f"1,{r}" for r in RECORDS])),
        "preprocessing": preprocessing(tmp_path / "p", framed(template, with_ids, "id,mileage,make")),
        "serving": serving(framed(template, list(RECORDS))),
    }
    if not template.startswith("\ufeff"):  # a BOM only counts at the very start of a body
        readings["serving (vectorised)"] = serving(framed(template, list(RECORDS)), vectorised=True)
    want = dict.fromkeys(readings, expected)
    profile = monitoring(tmp_path / "m", framed(template, list(RECORDS)))
    if profile is REFUSED:
        readings["monitoring"] = REFUSED
    else:
        mileage, make = profile.sketches["mileage"], profile.sketches["make"]
        assert mileage.num_missing == make.num_missing == mileage.num_mismatch == 0
        readings["monitoring"] = [(mileage.min, mileage.max), dict(make.counts)]  # with the other record: 3,Saab
    want["monitoring"] = REFUSED if expected is REFUSED else [(3.0, 7.0), {"Buick": 1, "Saab": 2}]
    assert readings == want

    out = transform(server, tmp_path / "b", framed(template, with_ids))
    assert out == (REFUSED if expected is REFUSED else predicted(server, "\n".join(RECORDS)))


# -- the grammar's own rules ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("line", "fields"),
    [
        ("a,b,c", ["a", "b", "c"]),
        ('"a,b",c', ["a,b", "c"]),
        ('"say ""hi""",x', ['say "hi"', "x"]),
        ('"",', ["", ""]),
        (",,", ["", "", ""]),
        (' a , "b" ', None),
    ],
)
def test_split_record_is_rfc_4180(line, fields):
    if fields is None:
        with pytest.raises(cells.CellError) as info:
            cells.split_record(line)
        assert info.value.column == 2
    else:
        assert cells.split_record(line) == fields


@pytest.mark.parametrize(
    ("line", "column", "reason"),
    [
        ('a"b,c', 1, "a quote inside an unquoted cell"),
        ('a,"b"c', 2, "a quoted cell must end with a quote followed by a comma"),
        ('a,b,"c', 3, "a quoted cell is not closed on its line"),
        ("a,b\rc", 2, "a cell cannot hold a line break"),
    ],
)
def test_malformed_records_name_the_column(line, column, reason):
    with pytest.raises(cells.CellError) as info:
        cells.split_record(line)
    assert info.value.column == column
    assert info.value.reason.startswith(reason)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("abc", "expected a number, received 'abc'"),
        ("inf", "expected a finite number, received 'inf' (send an empty value for a missing one)"),
        ("1e400", "expected a number of magnitude at most 3.402823e+38, received '1e400'"),
        ("x" * 100, "expected a number, received 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx...'"),
    ],
)
def test_refused_numbers_have_one_message(text, reason):
    with pytest.raises(cells.CellError) as info:
        cells.number(text)
    assert info.value.reason == reason


def test_bodies_lone_cr_and_bom():
    assert cells.lone_cr(b"a\r\nb\r\n") is None
    assert cells.lone_cr(b"a\r\nb\rc") == 4
    assert cells.lone_cr("a\r") == 1
    assert cells.strip_bom(b"\xef\xbb\xbfa,b") == b"a,b"
    assert cells.strip_bom(b"a,\xef\xbb\xbfb") == b"a,\xef\xbb\xbfb"


def test_pandas_na_values_are_every_spelling_of_the_tokens():
    values = set(cells.pandas_na_values())
    assert {"", "NA", "na", "nA", "N/A", "n/a", "NaN", "nan", "NAN", "null", "NULL", "Null", "None", "NONE"} <= values
    assert all(cells.is_missing(v) for v in values)
    assert not {"-nan", "#N/A", "<NA>"} & values


def test_a_schema_level_that_no_cell_can_match_is_refused():
    doc = json.loads(json.dumps(SCHEMA_DOC))
    doc["features"][1]["levels"] = ["Buick", "NA"]
    with pytest.raises(DataError, match="level 'NA' of 'make' can never match a CSV cell"):
        Schema.from_dict(doc)


def test_vectorised_and_arrow_columns_refuse_the_first_bad_cell():
    with pytest.raises(cells.CellError) as info:
        cells.numbers(pd.Series(["1", "NA", " 2 ", "x", "inf"]))
    assert info.value.index == 3
    values, bad = arrow_cells.arrow_numbers(pa.array(["1", "NA", " 2 ", "x", "inf", None, "-0"]))
    assert bad.tolist() == [False, False, False, True, True, False, False]
    assert values[[0, 2]].tolist() == [1.0, 2.0] and np.isnan(values[[1, 3, 4, 5]]).all()
    assert str(values[6]) == "0.0"  # -0 is 0.0


# -- property-based ---------------------------------------------------------------------------------------------------
finite = st.floats(min_value=-cells.MAX_MAGNITUDE, max_value=cells.MAX_MAGNITUDE, allow_nan=False)
padding = st.text(alphabet=" \t", max_size=2)
cell_alphabet = st.sampled_from(list('0123456789+-.eE aAnNiIfFlLuUoO/_x\t"#٢２'))


def _written(value: float, style: int) -> str:
    if style == 0:
        return repr(value)
    if style == 1:
        return f"{value:.17g}"
    return f"{value:.17e}".upper()


@given(values=st.lists(finite, min_size=1, max_size=20), style=st.integers(0, 2), pad=padding, quote=st.booleans())
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_numbers_round_trip_through_training_and_serving(tmp_path_factory, values, style, pad, quote):
    """A float written as text (any of three notations, padded, quoted or not) reads back as exactly that float
    (-0.0 as 0.0) in training's reader and in both serving paths."""
    texts = [pad + _written(v, style) + pad for v in values]
    texts = [f'"{t}"' if quote else t for t in texts]
    want = [v + 0.0 for v in values]
    lines = [f"{t},Buick" for t in texts]
    tmp = tmp_path_factory.mktemp("rt")
    assert [r[0] for r in training(tmp, lines)] == want
    assert [r[0] for r in serving("\n".join(lines))] == want
    assert [r[0] for r in serving("\n".join(lines), vectorised=True)] == want
    assert cells.numbers(pd.Series(texts).str.strip('"')).tolist() == want


@given(texts=st.lists(st.text(cell_alphabet, max_size=8), min_size=1, max_size=30))
@settings(max_examples=300, deadline=None)
def test_scalar_pandas_and_arrow_readings_agree(texts):
    """Whatever the text, the three implementations of the grammar give the same value or the same refusal."""
    scalar, refused = [], []
    for t in texts:
        try:
            scalar.append(cells.number(t))
            refused.append(False)
        except cells.CellError:
            scalar.append(math.nan)
            refused.append(True)
    values, bad = arrow_cells.arrow_numbers(pa.array(texts))
    assert bad.tolist() == refused
    np.testing.assert_array_equal(values, np.array(scalar))
    if any(refused):
        with pytest.raises(cells.CellError) as info:
            cells.numbers(pd.Series(texts))
        assert info.value.index == refused.index(True)
    else:
        np.testing.assert_array_equal(cells.numbers(pd.Series(texts)), np.array(scalar))
    assert [cells.is_missing(t) for t in texts] == cells.missing_mask(pd.Series(texts)).tolist()


def test_the_readme_table_is_the_grammar():
    """Each example of the README's table (between the cells markers) reads as its row says."""
    text = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    table = text.split("<!-- cells -->\n", 1)[1].split("\n<!-- /cells -->", 1)[0]
    rows = table.splitlines()[2:]
    assert len(rows) >= 8
    for row in rows:
        examples, meaning = (c.strip() for c in row.strip("|").split("|"))
        written = re.findall(r"`([^`]*)`", examples) + ([""] if examples.startswith("(empty)") else [])
        for example in written:
            (field,) = cells.split_record(example)
            if meaning.startswith("refused: "):
                with pytest.raises(cells.CellError) as info:
                    cells.number(field)
                assert info.value.reason.startswith(meaning.removeprefix("refused: ") + ", received"), example
            elif meaning == "missing":
                assert math.isnan(cells.number(field)), example
            else:
                assert cells.number(field) == float(meaning.split()[0]), example


def test_the_data_quality_baseline_reads_training_files_by_the_grammar(tmp_path, monkeypatch):
    """The monitor's baseline of a training channel: a byte-order mark is not data, NA and null are missing (as
    training saw them), inf is present but not a number, levels are trimmed."""
    from monitoring import baseline
    from tests.test_monitoring_support import read, run

    data = tmp_path / "train"
    data.mkdir()
    (data / "schema.json").write_text(json.dumps(SCHEMA_DOC))
    (data / "d.csv").write_bytes("\ufeff1,5,Buick\r\n2,NA, Saab \r\n3,null,NA\r\n4,inf,Saab\r\n".encode())
    argv = ["--dataset-source", str(data), "--output-path", str(tmp_path / "out")]
    assert run(baseline.main, argv, monkeypatch, tmp_path) == 0
    features = {f["name"]: f for f in read(tmp_path / "out" / "statistics.json")["features"]}
    mileage = features["mileage"]["numerical_statistics"]
    assert mileage["common"] == {"num_present": 2, "num_missing": 2}
    assert (mileage["min"], mileage["max"]) == (5.0, 5.0)
    make = features["make"]["string_statistics"]
    assert make["common"] == {"num_present": 3, "num_missing": 1}
    assert {b["value"]: b["count"] for b in make["distribution"]["categorical"]["buckets"]} == {"Saab": 2, "Buick": 1}
