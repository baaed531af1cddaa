"""algorithms.data in-process: formats, content types, schema handling, and errors that name file, line, column."""

from __future__ import annotations

import json
import logging

import numpy as np
import pandas as pd
import pytest

from algorithms.data import Channel, ContentType, data_files, read_channels
from core.errors import DataError, SchemaError, UserError
from tests import opt_ml as om

SCHEMA = {
    "version": 1,
    "target": "price",
    "features": [
        {"name": "mileage", "type": "numeric"},
        {"name": "make", "type": "categorical", "levels": ["Buick", "Saab"]},
        {"name": "doors", "type": "categorical", "levels": ["2", "4"]},
    ],
}


def channel(tmp_path, name, files, content_type="text/csv") -> Channel:
    directory = tmp_path / name
    directory.mkdir(parents=True, exist_ok=True)
    for rel, content in files.items():
        path = directory / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, pd.DataFrame):
            content.to_parquet(path, index=False)
        elif isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
    return Channel(name, directory, content_type)


def read(tmp_path, files, content_type="text/csv", target=None, **others):
    channels = {"train": channel(tmp_path, "train", files, content_type)}
    for name, f in others.items():
        channels[name] = channel(tmp_path, name, f, content_type)
    return read_channels(channels, target=target)


def error(tmp_path, files, content_type="text/csv", target=None, **others) -> str:
    with pytest.raises(UserError) as e:
        read(tmp_path, files, content_type, target, **others)
    return str(e.value)


# -- content types ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("text/csv", ContentType("text/csv")),
        ("TEXT/CSV; label_size=1", ContentType("text/csv")),
        ("text/csv;header=present", ContentType("text/csv", header=True)),
        ('text/csv; charset="ISO-8859-1"; header=absent', ContentType("text/csv", False, "iso-8859-1")),
        ("csv", ContentType("text/csv")),
        ("application/x-parquet", ContentType("application/x-parquet")),
        ("parquet", ContentType("application/x-parquet")),
    ],
)
def test_content_type_parsing(value, expected):
    assert ContentType.parse(value, channel="train") == expected


def test_missing_content_type_defaults_to_csv_and_says_so(caplog):
    with caplog.at_level(logging.INFO):
        assert ContentType.parse(None, channel="train") == ContentType("text/csv")
    assert "channel 'train' has no ContentType" in caplog.text and "assuming text/csv" in caplog.text


@pytest.mark.parametrize(
    ("value", "fragments"),
    [
        ("text/libsvm", ["'text/libsvm' is not supported", "text/csv", "application/x-parquet"]),
        ("application/x-recordio-protobuf", ["not supported"]),
        ("text/csv;label_size=0", ["label_size='0'", "expected 1"]),
        ("text/csv;header=maybe", ["header='maybe'", "'present' or 'absent'"]),
        ("text/csv;charset=klingon", ["unknown charset 'klingon'"]),
    ],
)
def test_bad_content_types(value, fragments):
    with pytest.raises(UserError) as e:
        ContentType.parse(value, channel="validation")
    assert str(e.value).startswith("channel 'validation': ContentType")
    for fragment in fragments:
        assert fragment in str(e.value)


# -- files -----------------------------------------------------------------------------------------------------------
def test_data_files_skip_dot_files_and_schema(tmp_path):
    ch = channel(
        tmp_path,
        "train",
        {"b.csv": "", "a/x.csv": "", ".hidden": "", ".dir/y.csv": "", "schema.json": "{}", "a/schema.json": "{}"},
    )
    assert [p.relative_to(ch.path).as_posix() for p in data_files(ch.path)] == ["a/x.csv", "b.csv"]


# -- formats ---------------------------------------------------------------------------------------------------------
def test_headerless_csv_label_first_and_categorical_strings(tmp_path):
    datasets, schema = read(tmp_path, {"a.csv": "10,100,Saab\n20,200,Buick\n30,,Saab\n"})
    assert schema.names == ["f0", "f1"] and schema.features[1].levels == ("Buick", "Saab")
    np.testing.assert_array_equal(datasets["train"].y, [10, 20, 30])
    np.testing.assert_array_equal(datasets["train"].X, [[100, 1], [200, 0], [np.nan, 1]])


def test_headerless_csv_with_schema_names_columns_and_keeps_numeric_levels_as_strings(tmp_path):
    files = {"a.csv": "10,100,Saab,2\n20,200,Buick,4\n", "schema.json": json.dumps(SCHEMA)}
    datasets, schema = read(tmp_path, files)
    assert schema.names == ["mileage", "make", "doors"] and schema.target == "price"
    np.testing.assert_array_equal(datasets["train"].X, [[100, 1, 0], [200, 0, 1]])


def test_header_csv_with_target_anywhere_and_columns_selected_by_name(tmp_path):
    files = {"a.csv": "make,price,mileage\nSaab,10,100\nBuick,20,200\n"}
    datasets, schema = read(tmp_path, files, target="price")
    assert schema.names == ["make", "mileage"] and schema.target == "price"
    np.testing.assert_array_equal(datasets["train"].y, [10, 20])
    # With schema.json, a header's columns are matched by name, whatever their order.
    files2 = {"a.csv": "doors,make,price,mileage\n2,Saab,10,100\n", "schema.json": json.dumps(SCHEMA)}
    datasets, schema = read(tmp_path / "2", files2, target="price")
    np.testing.assert_array_equal(datasets["train"].X, [[100, 1, 0]])


def test_header_present_without_target_uses_first_column(tmp_path):
    datasets, schema = read(tmp_path, {"a.csv": "cost,km\n1,2\n3,4\n"}, "text/csv;header=present")
    assert schema.target == "cost" and schema.names == ["km"]
    np.testing.assert_array_equal(datasets["train"].y, [1, 3])


def test_parquet_with_and_without_target(tmp_path):
    frame = pd.DataFrame({"km": [1.0, 2.0, 3.0], "price": [10.0, 20.0, 30.0], "make": ["Saab", "Buick", "Saab"]})
    datasets, schema = read(tmp_path, {"d.parquet": frame}, "application/x-parquet", target="price")
    assert schema.names == ["km", "make"]
    np.testing.assert_array_equal(datasets["train"].y, [10, 20, 30])
    datasets, schema = read(tmp_path / "2", {"d.parquet": frame}, "application/x-parquet")
    assert schema.target == "km" and schema.names == ["price", "make"]  # column 0 is the label


def test_many_files_concatenate_in_path_order(tmp_path):
    files = {"b/2.csv": "3,c\n", "a/1.csv": "1,a\n2,b\n", "c.csv": "\n"}
    datasets, _ = read(tmp_path, files)
    np.testing.assert_array_equal(datasets["train"].y, [1, 2, 3])


def test_validation_uses_the_train_schema(tmp_path):
    datasets, _ = read(tmp_path, {"a.csv": "1,x,5\n2,y,6\n"}, validation={"v.csv": "3,y,7\n"})
    np.testing.assert_array_equal(datasets["validation"].X, [[1, 7]])


def test_schema_json_in_validation_only_guides_train_too(tmp_path):
    schema_doc = {**SCHEMA, "features": SCHEMA["features"][:2]}
    _, schema = read(
        tmp_path, {"a.csv": "1,5,Saab\n"}, validation={"v.csv": "2,6,Buick\n", "schema.json": json.dumps(schema_doc)}
    )
    assert schema.names == ["mileage", "make"] and schema.features[1].levels == ("Buick", "Saab")


def test_blank_lines_crlf_bom_quotes_and_latin1(tmp_path):
    files = {"a.csv": b'\xef\xbb\xbf1,"Saab, 9-3"\r\n\r\n   \r\n2,"Buick"\r\n'}
    datasets, schema = read(tmp_path, files)
    assert schema.features[0].levels == ("Buick", "Saab, 9-3")
    np.testing.assert_array_equal(datasets["train"].y, [1, 2])
    datasets, schema = read(tmp_path / "2", {"a.csv": "1,Citro\xebn\n".encode("latin-1")}, "text/csv;charset=latin-1")
    assert schema.features[0].levels == ("Citroën",)


# -- errors ----------------------------------------------------------------------------------------------------------
def test_missing_train_channel(tmp_path):
    with pytest.raises(DataError, match=r"^missing required channel 'train' \(channels configured: validation\)"):
        read_channels({"validation": channel(tmp_path, "validation", {"a.csv": "1,2\n"})})


def test_configured_channel_without_directory(tmp_path):
    with pytest.raises(DataError, match=r"channel 'train': directory .* does not exist"):
        read_channels({"train": Channel("train", tmp_path / "nope", "text/csv")})


def test_empty_channels(tmp_path):
    assert "channel 'train': no data files in" in error(tmp_path, {"schema.json": json.dumps(SCHEMA)})
    assert "channel 'train': no rows in 2 data file(s)" in error(tmp_path / "2", {"a.csv": "", "b.csv": "\n  \n"})
    msg = error(tmp_path / "3", {"a.csv": "1,2\n"}, validation={"v.csv": ""})
    assert "channel 'validation': no rows" in msg


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("1,2,3\n4,5\n", "line 2: expected 3 columns (from line 1), received 2"),
        ("\n\n1,2,3\n\n4,5,6,7\n", "line 5: expected 3 columns (from line 3), received 4"),
        ('1,"a,b",3\n4,"c",5\n6,7\n', "line 3: expected 3 columns (from line 1), received 2"),  # quoted path
        # the cell grammar: no line break in a cell, even quoted (SageMaker splits CSV records on line ends)
        (
            '1,"a,b",3\n4,"c\nd",5\n',
            "line 2, column 2: a quoted cell is not closed on its line: a cell cannot hold a line break (CR or LF)",
        ),
    ],
)
def test_wrong_column_count_names_line_and_counts(tmp_path, content, expected):
    msg = error(tmp_path, {"d.csv": content})
    assert msg == f"file {tmp_path / 'train' / 'd.csv'}, {expected}"


def test_wrong_column_count_against_schema_and_across_files(tmp_path):
    msg = error(tmp_path, {"d.csv": "1,2,Saab,4\n1,2,Saab\n", "schema.json": json.dumps(SCHEMA)})
    assert "d.csv, line 2: expected 4 columns (from the label and 3 features of schema.json), received 3" in msg
    msg = error(tmp_path / "2", {"a.csv": "1,2,3\n", "b.csv": "1,2\n"})
    assert "b.csv, line 1: expected 3 columns (from line 1 of" in msg and "a.csv), received 2" in msg


def test_unparsable_number_with_schema(tmp_path):
    msg = error(tmp_path, {"d.csv": "1,100,Saab,2\n\n2,1O0,Buick,4\n", "schema.json": json.dumps(SCHEMA)})
    assert msg.endswith("d.csv, line 3, column 2 (mileage): expected a number, received '1O0'")


def test_unparsable_number_without_schema_is_not_taken_for_a_category(tmp_path):
    rows = "".join(f"{i},{i * 7}.5\n" for i in range(10)) + "10,seventy\n"
    msg = error(tmp_path, {"d.csv": rows})
    assert msg.endswith("d.csv, line 11, column 2 (f0): expected a number, received 'seventy'")


def test_unparsable_number_in_header_csv_and_parquet(tmp_path):
    msg = error(tmp_path, {"d.csv": "km,price\n1,2\n3,x\n"}, target="price")
    assert msg.endswith("d.csv, line 3, column 2 (price): expected a number, received 'x'")
    frame = pd.DataFrame({"price": [1.0, 2.0], "km": ["1", "zz"], "make": ["a", "b"]})
    schema = {"version": 1, "target": "price", "features": [{"name": "km"}, {"name": "make", "type": "numeric"}]}
    msg = error(tmp_path / "2", {"d.parquet": frame, "schema.json": json.dumps(schema)}, "application/x-parquet")
    assert msg.endswith("d.parquet, row 2, column 2 (km): expected a number, received 'zz'")


def test_missing_label(tmp_path):
    assert error(tmp_path, {"d.csv": "1,2\n\n ,3\n"}).endswith(
        "d.csv, line 3, column 1 (label): missing label (an empty cell, NA, null, ...)"
    )
    msg = error(tmp_path / "2", {"d.csv": "km,price\n1,2\n3,\n"}, target="price")
    assert msg.endswith("d.csv, line 3, column 2 (price): missing label (an empty cell, NA, null, ...)")
    frame = pd.DataFrame({"price": [1.0, None], "km": [1.0, 2.0]})
    msg = error(tmp_path / "3", {"d.parquet": frame}, "application/x-parquet", target="price")
    assert msg.endswith("d.parquet, row 2, column 1 (price): missing label (an empty cell, NA, null, ...)")


def test_target_not_in_header(tmp_path):
    msg = error(tmp_path, {"d.csv": "km,cost\n1,2\n"}, target="price")
    assert msg.endswith("d.csv, line 1: label column 'price' (hyperparameter 'target') not found; columns: km, cost")


def test_target_with_header_absent_conflicts(tmp_path):
    msg = error(tmp_path, {"d.csv": "1,2\n"}, "text/csv;header=absent", target="price")
    assert "hyperparameter 'target'" in msg and "header=absent" in msg


def test_unknown_category_in_validation(tmp_path):
    msg = error(tmp_path, {"a.csv": "1,Saab\n"}, validation={"v.csv": "1,Saab\n2,Opel\n"})
    assert msg.endswith(
        "v.csv, line 2, column 2 (f0): unknown level 'Opel' for categorical feature 'f0'; expected one of ['Saab']"
    )


def test_schema_mismatches(tmp_path):
    other = {**SCHEMA, "features": SCHEMA["features"][:1]}
    with pytest.raises(SchemaError, match=r"schema\.json of channel 'validation' differs from that of channel 'train'"):
        read(
            tmp_path,
            {"a.csv": "1,2\n", "schema.json": json.dumps(SCHEMA)},
            validation={"v.csv": "1,2\n", "schema.json": json.dumps(other)},
        )
    msg = error(
        tmp_path / "2", {"a.csv": "price,mileage,make\n1,2,Saab\n", "schema.json": json.dumps(SCHEMA)}, target="price"
    )
    assert "feature 'doors' of schema.json not found" in msg
    msg = error(tmp_path / "3", {"a.csv": "1,2\n", "schema.json": json.dumps(SCHEMA)}, target="cost")
    assert "field 'target' is 'price' but hyperparameter 'target' is 'cost'" in msg


def test_real_data_round_trip_matches_pandas(tmp_path):
    frame = om.car_prices()
    datasets, schema = read(tmp_path, {"a.csv": om.label_first_csv(frame)})
    np.testing.assert_allclose(datasets["train"].y, frame["price"].to_numpy())
    np.testing.assert_allclose(datasets["train"].X[:, 0], frame["mileage"].to_numpy())
    makes = [schema.features[6].levels[int(c)] for c in datasets["train"].X[:, 6]]
    assert makes == frame["make"].tolist()
