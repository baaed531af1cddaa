"""serving.codecs / serving.records: decoding every request shape, encoding every response format, exact errors."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from serving import codecs as codecs_module
from serving.codecs import Codecs
from serving.errors import BadRequest, NotAcceptable, RequestError, UnsupportedMediaType
from serving.records import RecordParser
from tests.serving_helpers import CAR_PRICES, car_schema

SCHEMA = car_schema()
ROW = "20105,6,4,1,0,0,Buick,sedan"
ENCODED = [20105.0, 6.0, 4.0, 1.0, 0.0, 0.0, 0.0, 3.0]  # Buick is level 0, sedan level 3
BY_NAME = {
    "mileage": 20105,
    "cylinder": 6,
    "doors": 4,
    "cruise": 1,
    "sound": 0,
    "leather": 0,
    "make": "Buick",
    "body_type": "sedan",
}


@pytest.fixture(scope="module")
def codecs() -> Codecs:
    return Codecs(RecordParser(SCHEMA))


def decode(codecs: Codecs, body: str | bytes, content_type: str = "text/csv") -> np.ndarray:
    return codecs.decoder(content_type)(body.encode() if isinstance(body, str) else body)


def error(codecs: Codecs, body: str | bytes, content_type: str = "text/csv") -> RequestError:
    with pytest.raises(RequestError) as info:
        decode(codecs, body, content_type)
    return info.value


# -- text/csv ---------------------------------------------------------------------------------------
def test_csv_single_record(codecs):
    assert decode(codecs, ROW).tolist() == [ENCODED]


@pytest.mark.parametrize(
    "content_type",
    [
        "text/csv",
        "Text/CSV",
        "text/csv; charset=utf-8",
        "text/csv;label_size=0",
        'text/csv; label_size="0"; charset=UTF-8',
    ],
)
def test_csv_parameters_are_parsed_not_compared(codecs, content_type):
    assert decode(codecs, ROW, content_type).tolist() == [ENCODED]


def test_csv_multi_line_crlf_and_trailing_blank_lines(codecs):
    body = f"{ROW}\r\n13457,6,2,1,1,0,Chevy,coupe\r\n\r\n\n"
    assert decode(codecs, body).tolist() == [ENCODED, [13457, 6, 2, 1, 1, 0, 2, 1]]


def test_csv_quoted_fields_whitespace_and_bom(codecs):
    assert decode(codecs, '20105, 6 ,4,1,0,0,"Buick", sedan').tolist() == [ENCODED]
    assert decode(codecs, ("\ufeff" + ROW).encode()).tolist() == [ENCODED]


def test_csv_empty_cells_are_missing(codecs):
    (row,) = decode(codecs, "20105,,4,1,0,0,,sedan")
    assert math.isnan(row[1]) and math.isnan(row[6]) and row[7] == 3.0


def test_csv_other_charset(codecs):
    assert decode(codecs, ROW.encode("utf-16"), "text/csv; charset=utf-16").tolist() == [ENCODED]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("20105,6,4,1,0,0,Buick", "line 1: expected 8 features, received 7"),
        ("20105,6,4,1,0,0,Buick,sedan,9", "line 1: expected 8 features, received 9"),
        (f"{ROW}\n{ROW}\n20105,6,4,1,0,0,Buick", "line 3: expected 8 features, received 7"),
        (f"{ROW}\n\n{ROW}", "line 2: empty record; expected 8 comma-separated features"),
        ("20105,six,4,1,0,0,Buick,sedan", "line 1, column 2 (cylinder): expected a number, received 'six'"),
        # nan is a missing value (core.cells); a signed one is not a number
        ("20105,-nan,4,1,0,0,Buick,sedan", "line 1, column 2 (cylinder): expected a number, received '-nan'"),
        (
            "20105,6,-inf,1,0,0,Buick,sedan",
            "line 1, column 3 (doors): expected a finite number, received '-inf'"
            " (send an empty value for a missing one)",
        ),
        (
            "1e999,6,4,1,0,0,Buick,sedan",
            "line 1, column 1 (mileage): expected a number of magnitude at most 3.402823e+38, received '1e999'",
        ),
        ("1_000,6,4,1,0,0,Buick,sedan", "line 1, column 1 (mileage): expected a number, received '1_000'"),
        # Training (pandas) refuses non-ASCII digits: serving must agree, not read them as 24960.
        (
            "\u0662\u0664\u0669\u0666\u0660,6,4,1,0,0,Buick,sedan",
            "line 1, column 1 (mileage): expected a number, received '\u0662\u0664\u0669\u0666\u0660'",
        ),
        (
            "\uff12\uff14\uff19\uff16\uff10,6,4,1,0,0,Buick,sedan",
            "line 1, column 1 (mileage): expected a number, received '\uff12\uff14\uff19\uff16\uff10'",
        ),
        (
            "24960,1e308,2,1,1,1,Pontiac,coupe",
            "line 1, column 2 (cylinder): expected a number of magnitude at most 3.402823e+38, received '1e308'",
        ),
        (
            "20105,6,4,1,0,0,Ford,sedan",
            "line 1, column 7 (make): unknown level 'Ford' for categorical feature 'make'; "
            "expected one of ['Buick', 'Cadillac', 'Chevy', 'Pontiac', 'Saab', 'Saturn']",
        ),
        (
            '20105,6,4,1,0,0,"Buick,sedan',
            "line 1, column 7: malformed CSV: a quoted cell is not closed on its line: a cell cannot hold a line "
            "break (CR or LF)",
        ),
        (
            '20105,6,4,1,0,0,Bu"ick,sedan',
            "line 1, column 7: malformed CSV: a quote inside an unquoted cell; quote the whole cell and double the "
            'quotes in it ("")',
        ),
        (f"{ROW}\r{ROW}", "line 1: line ends with a lone CR (carriage return); use LF or CRLF line endings"),
        ("", "the body holds no records"),
        ("\r\n\n", "the body holds no records"),
        (b"20105,6,4,1,0,0,\xffBuick,sedan", "body is not valid utf-8: byte 16 (invalid start byte)"),
    ],
)
def test_csv_errors_name_line_column_expected_and_received(codecs, body, message):
    err = error(codecs, body)
    assert isinstance(err, BadRequest)
    assert err.message == message


def test_csv_long_values_are_cut_short_in_messages(codecs):
    err = error(codecs, "x" * 10_000 + ",6,4,1,0,0,Buick,sedan")
    assert (
        err.message
        == "line 1, column 1 (mileage): expected a number, received 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx...'"
    )


def test_unknown_category_as_missing_when_configured():
    lenient = Codecs(RecordParser(SCHEMA, unknown="missing"))
    (row,) = decode(lenient, "20105,6,4,1,0,0,Ford,sedan")
    assert math.isnan(row[6]) and row[7] == 3.0


@pytest.mark.parametrize(
    ("content_type", "message"),
    [
        (
            "text/csv; label_size=1",
            "text/csv with label_size=1 is not supported: send the features only (label_size=0)",
        ),
        ("text/csv; charset=klingon", "unsupported charset 'klingon'"),
        ("text/csv; charset=base64", "unsupported charset 'base64'"),
        ("application/json; charset=rot13", "unsupported charset 'rot13'"),
        (
            "application/x-www-form-urlencoded",
            "unsupported Content-Type 'application/x-www-form-urlencoded'; "
            "expected one of text/csv, application/json, application/jsonlines",
        ),
        (
            "text/libsvm",
            "unsupported Content-Type 'text/libsvm'; expected one of text/csv, application/json, application/jsonlines",
        ),
        ("", "missing Content-Type; expected one of text/csv, application/json, application/jsonlines"),
        (None, "missing Content-Type; expected one of text/csv, application/json, application/jsonlines"),
    ],
)
def test_unsupported_content_types(codecs, content_type, message):
    with pytest.raises(UnsupportedMediaType) as info:
        codecs.decoder(content_type)
    assert info.value.status == 415
    assert info.value.message == message


# -- the vectorised CSV path agrees with the precise one ----------------------------------------------
def big_csv(rows: int = 3000) -> str:
    frame = pd.read_csv(CAR_PRICES).drop(columns="price")
    text = frame.to_csv(header=False, index=False)
    return text * (rows // len(frame) + 1)


def test_vectorised_csv_matches_the_precise_parser(codecs):
    text = big_csv()
    assert len(text) > codecs_module.VECTORISED_CSV_BYTES
    parser = codecs.parser
    fast = codecs_module._vectorised_csv(text.encode(), parser)
    assert fast is not None, "the fast path should accept a clean body"
    precise = codecs_module._precise_csv(text, parser)
    np.testing.assert_array_equal(fast, precise)
    expected = SCHEMA.encode(pd.read_csv(CAR_PRICES).drop(columns="price"))
    np.testing.assert_array_equal(precise[: len(expected)], expected)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda lines: lines.__setitem__(2999, lines[2999].rsplit(",", 1)[0]),
            "line 3000: expected 8 features, received 7",
        ),
        (lambda lines: lines.__setitem__(1234, lines[1234] + ",1"), "line 1235: expected 8 features, received 9"),
        (lambda lines: lines.__setitem__(99, ""), "line 100: empty record; expected 8 comma-separated features"),
        (
            lambda lines: lines.__setitem__(500, "-nan" + lines[500][lines[500].index(",") :]),
            "line 501, column 1 (mileage): expected a number, received '-nan'",
        ),
        (
            lambda lines: lines.__setitem__(600, "1e300" + lines[600][lines[600].index(",") :]),
            "line 601, column 1 (mileage): expected a number of magnitude at most 3.402823e+38, received '1e300'",
        ),
        (
            lambda lines: lines.__setitem__(7, "inf" + lines[7][lines[7].index(",") :]),
            "line 8, column 1 (mileage): expected a finite number, received 'inf'"
            " (send an empty value for a missing one)",
        ),
        (
            lambda lines: lines.__setitem__(2000, ",".join([*lines[2000].split(",")[:6], "Ford", "sedan"])),
            "line 2001, column 7 (make): unknown level 'Ford' for categorical feature 'make'; "
            "expected one of ['Buick', 'Cadillac', 'Chevy', 'Pontiac', 'Saab', 'Saturn']",
        ),
    ],
)
def test_large_bodies_get_the_same_precise_errors(codecs, edit, message):
    lines = big_csv().split("\n")
    edit(lines)
    assert error(codecs, "\n".join(lines)).message == message


def test_large_body_with_untrimmed_levels_and_crlf_falls_back_and_succeeds(codecs):
    text = big_csv().replace(",Buick,", ", Buick ,").replace("\n", "\r\n")
    np.testing.assert_array_equal(decode(codecs, text), decode(codecs, big_csv()))


# -- application/json --------------------------------------------------------------------------------
LL = {"features": [20105, 6, 4, 1, 0, 0, "Buick", "sedan"]}
POSITIONAL = [20105, 6, 4, 1, 0, 0, "Buick", "sedan"]


@pytest.mark.parametrize(
    "doc",
    [
        {"instances": [LL]},
        {"instances": [POSITIONAL]},
        {"instances": [BY_NAME]},
        [BY_NAME],
        [POSITIONAL],
        [LL],
        BY_NAME,
        LL,
        POSITIONAL,
        {**BY_NAME, "price": 12345.0},  # a raw dataset row: its label is ignored
        {**BY_NAME, "cylinder": "6", "doors": " 4 "},  # numeric strings parse like CSV cells
    ],
)
def test_json_shapes(codecs, doc):
    import json

    assert decode(codecs, json.dumps(doc), "application/json").tolist() == [ENCODED]


def test_json_many_records_in_order_and_null_is_missing(codecs):
    body = '{"instances": [[1,2,3,4,5,6,"Saab","coupe"], [20105,null,4,1,0,0,null,"sedan"]]}'
    X = decode(codecs, body, "application/json; charset=utf-8")
    assert X[0].tolist() == [1, 2, 3, 4, 5, 6, 4, 1]
    assert math.isnan(X[1, 1]) and math.isnan(X[1, 6]) and X[1, 7] == 3


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("{", "body is not valid JSON: Expecting property name enclosed in double quotes at line 1, column 2"),
        (
            '[1,2,3,4,5,6,"Buick",NaN]',
            "body is not valid JSON: NaN is not a JSON number (send null for a missing value)",
        ),
        (
            '[1,2,3,4,5,6,"Buick",Infinity]',
            "body is not valid JSON: Infinity is not a JSON number (send null for a missing value)",
        ),
        ("[1,2,3]", "record 1: expected 8 features, received 3"),
        ('{"instances": [[1,2,3,4,5,6,"Buick","sedan"], [1,2]]}', "instance 2: expected 8 features, received 2"),
        ('{"instances": []}', "the body holds no records"),
        ("[]", "the body holds no records"),
        (
            '{"instances": [1]}',
            'instance 1: expected a list of 8 values, {"features": [...]} or an object by feature name, received int 1',
        ),
        ('{"instances": {}}', 'body: expected {"instances": [record, ...]} with no other keys'),
        ('{"instances": [], "configuration": {}}', 'body: expected {"instances": [record, ...]} with no other keys'),
        ("42", 'body: expected {"instances": [...]}, a list of records or one record, received 42'),
        ('{"features": [1,2,3,4,5,6,"Buick","sedan"], "x": 1}', 'record 1: expected {"features": [<8 values>]}'),
        (
            '[1,2,3,4,5,6,"Buick",3]',
            "record 1, feature 8 (body_type): expected a string (a level of categorical feature 'body_type') "
            "or null, received 3",
        ),
        (
            '[1,true,3,4,5,6,"Buick","sedan"]',
            "record 1, feature 2 (cylinder): expected a number or null, received True",
        ),
        (
            '{"instances": [[1,[2],3,4,5,6,"Buick","sedan"]]}',
            "instance 1, feature 2 (cylinder): expected a number or null, received [2]",
        ),
        ('[1e999,2,3,4,5,6,"Buick","sedan"]', "record 1, feature 1 (mileage): expected a finite number, received inf"),
        (
            '[1e308,2,3,4,5,6,"Buick","sedan"]',
            "record 1, feature 1 (mileage): expected a number of magnitude at most 3.402823e+38, received 1e+308",
        ),
        (
            "[" + "9" * 400 + ',2,3,4,5,6,"Buick","sedan"]',
            "record 1, feature 1 (mileage): expected a finite number, received 999999999999999999999999999999999999...",
        ),
        (
            '{"mileage": 1, "colour": "red"}',
            "record 1: unknown feature 'colour'; expected the names "
            "['mileage', 'cylinder', 'doors', 'cruise', 'sound', 'leather', 'make', 'body_type']",
        ),
        (
            '{"mileage": 1, "cylinder": 6}',
            "record 1: missing feature(s) ['doors', 'cruise', 'sound', 'leather', 'make', 'body_type']; "
            "every feature is required (send null for a missing value)",
        ),
        (
            '[{"mileage": 1, "cylinder": 6, "doors": 4, "cruise": 1, "sound": 0, "leather": 0, "make": "VW", '
            '"body_type": "sedan"}]',
            "record 1, feature 'make': unknown level 'VW' for categorical feature 'make'; "
            "expected one of ['Buick', 'Cadillac', 'Chevy', 'Pontiac', 'Saab', 'Saturn']",
        ),
    ],
)
def test_json_errors(codecs, body, message):
    assert error(codecs, body, "application/json").message == message


def test_deeply_nested_json_is_a_400_not_a_crash(codecs):
    err = error(codecs, "[" * 100_000, "application/json")
    assert err.status == 400 and err.message.startswith("body is not valid JSON: ")


# -- application/jsonlines ---------------------------------------------------------------------------
def test_jsonlines_mixed_shapes_crlf(codecs):
    import json

    body = "\r\n".join(json.dumps(r) for r in (LL, POSITIONAL, BY_NAME)) + "\r\n\r\n"
    assert decode(codecs, body, "application/jsonlines").tolist() == [ENCODED] * 3


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('[1,2,3,4,5,6,"Buick","sedan"]\n{"features": [1]}', "line 2: expected 8 features, received 1"),
        (
            '[1,2,3,4,5,6,"Buick","sedan"]\n\n[1,2,3,4,5,6,"Buick","sedan"]',
            "line 2: empty record; expected one JSON record per line",
        ),
        (
            '[1,2,3,4,5,6,"Buick","sedan"]\n[1,2',
            "line 2 is not valid JSON: Expecting ',' delimiter at line 1, column 5",
        ),
        ("3", 'line 1: expected a list of 8 values, {"features": [...]} or an object by feature name, received int 3'),
    ],
)
def test_jsonlines_errors(codecs, body, message):
    assert error(codecs, body, "application/jsonlines").message == message


# -- encoders and Accept negotiation ----------------------------------------------------------------
PREDICTIONS = np.array([18230.5, 0.25, -3.0])


@pytest.mark.parametrize(
    ("accept", "content_type", "body"),
    [
        ("text/csv", "text/csv", b"18230.5\n0.25\n-3.0"),
        (
            "application/json",
            "application/json",
            b'{"predictions": [{"score": 18230.5}, {"score": 0.25}, {"score": -3.0}]}',
        ),
        ("application/jsonlines", "application/jsonlines", b'{"score": 18230.5}\n{"score": 0.25}\n{"score": -3.0}'),
    ],
)
def test_encoders(codecs, accept, content_type, body):
    encoder = codecs.encoder(accept)
    assert encoder.content_type == content_type
    assert encoder.encode(PREDICTIONS) == body


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.floats(allow_nan=False, allow_infinity=False, width=64), max_size=50)
    | st.lists(st.floats(allow_nan=False, allow_infinity=False, width=32), max_size=50)
)
def test_every_answer_reads_back_to_the_same_doubles(values):
    """Whatever the magnitude (subnormals, -0.0, 1e308, float32 predictions), each format's text is the exact double."""
    predictions = np.array(values, dtype=np.float64)
    as_csv = codecs_module._encode_csv(predictions).decode()
    assert [float(x) for x in as_csv.split("\n")] == values if values else as_csv == ""
    as_json = json.loads(codecs_module._encode_json(predictions))
    assert [p["score"] for p in as_json["predictions"]] == values
    lines = codecs_module._encode_jsonlines(predictions).decode()
    assert [json.loads(x)["score"] for x in lines.split("\n")] == values if values else lines == ""
    for got, want in zip(as_csv.split("\n") if values else [], values, strict=True):
        assert math.copysign(1, float(got)) == math.copysign(1, want)  # -0.0 stays negative


@pytest.mark.parametrize(
    ("accept", "chosen"),
    [
        (None, "text/csv"),
        ("", "text/csv"),
        ("*/*", "text/csv"),
        ("text/csv; charset=utf-8", "text/csv"),
        ("application/json;q=0.5, application/jsonlines", "application/jsonlines"),
        ("text/html, application/json;q=0.9", "application/json"),
        ("application/*", "application/json"),
        ("TEXT/CSV", "text/csv"),
        ("text/*;q=0.1, application/jsonlines;q=0.2", "application/jsonlines"),
    ],
)
def test_accept_negotiation(codecs, accept, chosen):
    assert codecs.encoder(accept).content_type == chosen


def test_default_accept_applies_to_empty_and_wildcard():
    json_default = Codecs(RecordParser(SCHEMA), default_accept="application/json")
    assert json_default.encoder("*/*").content_type == "application/json"
    assert json_default.encoder(None).content_type == "application/json"
    assert json_default.encoder("text/csv").content_type == "text/csv"


@pytest.mark.parametrize("accept", ["image/png", "text/csv;q=0", "application/xml, text/html"])
def test_unsupported_accept(codecs, accept):
    with pytest.raises(NotAcceptable) as info:
        codecs.encoder(accept)
    assert info.value.status == 406
    assert info.value.message == (
        f"unsupported Accept {accept!r}; expected one of text/csv, application/json, application/jsonlines"
    )


def test_invalid_default_accept_is_rejected():
    with pytest.raises(ValueError, match="SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT"):
        Codecs(RecordParser(SCHEMA), default_accept="text/html")
