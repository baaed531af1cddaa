"""The JSONPath subset of batch transform DataProcessing, checked against the AWS documentation's examples.

Quotes are from the SageMaker developer guide page "Associate Prediction Results with Input Records"
(batch-transform-data-processing) and the API reference of DataProcessing.
"""

from __future__ import annotations

import pytest

from emulators.jsonpath import JsonPathError, JsonPathMatchError, evaluate, parse

ROW = ["c0", "c1", "c2", "c3", "c4", "c5", "c6", "c7"]  # a CSV row is taken as a JSON array


def ev(expr, value):
    return evaluate(parse(expr), value)


# -- the documented operators table: $ / .<name> / * / ['<name>' (,'<name>')] / [<number> (,<number>)] / [s:e]
def test_root_is_the_whole_record():
    assert ev("$", ROW) == ROW
    assert ev("$", {"a": 1}) == {"a": 1}


def test_dot_notated_child():  # example: $.id
    assert ev("$.id", {"id": 7, "x": 1}) == 7


def test_wildcard():  # example: $.id.*
    assert ev("$.id.*", {"id": {"a": 1, "b": 2}}) == [1, 2]
    assert ev("$[*]", ROW) == ROW
    assert ev("$.*", [1, 2]) == [1, 2]


def test_bracket_notated_children_keep_their_keys():  # example: $['id','SageMakerOutput']
    record = {"id": 1, "features": [1, 2], "SageMakerOutput": {"label": 1}}
    assert ev("$['id','SageMakerOutput']", record) == {"id": 1, "SageMakerOutput": {"label": 1}}
    assert ev("$['features']", record) == [1, 2]
    assert ev('$["id"]', record) == 1


def test_bracket_children_after_a_dot_are_supported():
    # "$.field1.['child1','child2'] is supported while $.field1.['child1','child2.grandchild'] is not"
    record = {"field1": {"child1": 1, "child2": 2, "child3": 3}}
    assert ev("$.field1.['child1','child2']", record) == {"child1": 1, "child2": 2}
    with pytest.raises(JsonPathError, match=r"nested children inside brackets"):
        parse("$.field1.['child1','child2.grandchild']")


def test_index_and_index_lists():  # examples: $[1] , $[1,3,5]
    assert ev("$[1]", ROW) == "c1"
    assert ev("$[1,3,5]", ROW) == ["c1", "c3", "c5"]


def test_negative_indices():  # "Negative index values are also supported. A -1 index refers to the last element"
    assert ev("$[-1]", ROW) == "c7"
    assert ev("$[0,-1]", ROW) == ["c0", "c7"]  # the main job's output filter: ID and prediction


# -- slices are inclusive, as the documentation's worked example states -----------------------------------
def test_slice_from_one_drops_the_first_column():
    # 'To exclude the first column from the input, set InputFilter to "$[1:]"'
    assert ev("$[1:]", ROW) == ROW[1:]


def test_slice_end_is_inclusive():
    # "The colon (:) tells SageMaker to include all of the elements between two values, inclusive.
    #  For example, $[1:4] specifies the second through fifth columns."
    assert ev("$[1:4]", ROW) == ["c1", "c2", "c3", "c4"]


def test_open_slices():
    # "[5:], the subset includes all columns from the 6th column through the last column"
    assert ev("$[5:]", ROW) == ["c5", "c6", "c7"]
    # "[:5], the subset includes all columns from the first column (index 0) through the sixth column"
    assert ev("$[:5]", ROW) == ["c0", "c1", "c2", "c3", "c4", "c5"]
    assert ev("$[2:5]", ROW) == ["c2", "c3", "c4", "c5"]
    assert ev("$[2:]", ROW) == ROW[2:]


def test_index_and_slice_union():  # OutputFilter example: "$[0,5:]"
    assert ev("$[0,5:]", ROW) == ["c0", "c5", "c6", "c7"]


def test_negative_slice_bounds():
    assert ev("$[-2:]", ROW) == ["c6", "c7"]
    assert ev("$[:-2]", ROW) == ROW[:-1]  # inclusive: through the second-to-last


def test_json_input_filter_example():  # input_filter="$.features"
    assert ev("$.features", {"id": "a", "features": [1.5, 2]}) == [1.5, 2]


def test_spaces_inside_brackets_are_allowed():
    assert ev("$[0, -1]", ROW) == ["c0", "c7"]
    assert ev("$['a', 'b']", {"a": 1, "b": 2}) == {"a": 1, "b": 2}


# -- "If you specify indexes that aren't within the dimension size of the joined dataset, you get an error."
@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("$[8]", "index 8 is outside \\$, which has 8 elements"),
        ("$[-9]", "index -9 is outside"),
        ("$[0,10:]", "index 10 is outside"),
        ("$[5:2]", "selects nothing"),
        ("$.id", "is an array of 8, not an object"),
    ],
)
def test_out_of_range_is_an_error(expr, message):
    with pytest.raises(JsonPathMatchError, match=message):
        ev(expr, ROW)


def test_missing_key_is_an_error():
    with pytest.raises(JsonPathMatchError, match=r"has no key 'id'"):
        ev("$['id','SageMakerOutput']", {"SageMakerOutput": 1})
    with pytest.raises(JsonPathMatchError, match=r"\$\.a has no key 'b'"):
        ev("$.a.b", {"a": {"c": 1}})


# -- what SageMaker rejects --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("expr", "reason"),
    [
        ("$..price", "recursive descent"),
        ("$.book[?(@.price<10)]", "filter expressions"),
        ("$[(@.length-1)]", "script expressions"),
        ("$[@.x]", "script expressions"),
        ("$.prices.length()", "functions such as length"),
        ("$[0:10:2]", "slice steps"),
        ("id", "must start with '\\$'"),
        ("@.id", "must start with '\\$'"),
        ("$[1", "missing '\\]'"),
        ("$['a'", "missing '\\]'"),
        ("$['a]", "unterminated quoted name"),
        ("$[]", "expected an index"),
        ("$.", "expected a name"),
        ("$ [1]", "unexpected ' '"),
        ("$[1]x", "unexpected 'x'"),
        ("$['']", "empty name"),
    ],
)
def test_unsupported_syntax_is_rejected_with_the_position(expr, reason):
    with pytest.raises(JsonPathError, match=reason) as err:
        parse(expr)
    assert "\n" not in str(err.value)
    if expr.startswith("$"):
        assert "at character" in str(err.value)


def test_empty_expression_is_rejected():
    with pytest.raises(JsonPathError, match=r"empty JSONPath expression"):
        parse("")


def test_at_most_63_characters():  # API reference: "Length Constraints: Minimum length of 0. Maximum length of 63."
    longest = "$['" + "a" * 58 + "']"
    assert len(longest) == 63
    assert ev(longest, {"a" * 58: 1}) == 1
    with pytest.raises(JsonPathError, match=r"is 64 characters long; SageMaker allows at most 63"):
        parse("$['" + "a" * 59 + "']")


def test_index_only_paths_are_those_a_csv_row_accepts():
    assert parse("$").index_only
    assert parse("$[1:]").index_only
    assert parse("$[0,-1]").index_only
    assert parse("$[*]").index_only
    assert not parse("$.id").index_only
    assert not parse("$['a','b']").index_only
    assert not parse("$[0][1]").index_only
