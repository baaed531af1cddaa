"""InputFilter / JoinSource / OutputFilter record by record, on the AWS documentation's worked examples.

Quotes are from the SageMaker developer guide "Associate Prediction Results with Input Records" and the API
reference of DataProcessing.
"""

from __future__ import annotations

import json

import pytest

from emulators.dataprocessing import DataProcessing, DataProcessingError, RecordError

CSV, JSON, JSONL = "text/csv", "application/json", "application/jsonlines"


def build(input_filter="$", join_source="None", output_filter="$", content_type=CSV, accept=CSV, split="Line",
          assemble="Line"):  # fmt: skip
    return DataProcessing.build(
        input_filter=input_filter,
        join_source=join_source,
        output_filter=output_filter,
        content_type=content_type,
        accept=accept,
        split_type=split,
        assemble_with=assemble,
    )


def run(dp, record: bytes, model) -> tuple[bytes, bytes]:
    """(what the container receives, what is written) for one record; ``model`` maps request -> response."""
    sent = dp.request_record(record)
    return sent, dp.output_record(record, model(sent))


# -- "Example: Output Only Inferences" (the defaults) -------------------------------------------------------
def test_defaults_pass_records_through_byte_for_byte():
    dp = build()
    assert not dp.active
    assert run(dp, b'1, "2" ,3', lambda s: b"0.5 ") == (b'1, "2" ,3', b"0.5 ")


def test_defaults_work_with_any_content_type():
    dp = build(content_type="application/x-recordio-protobuf", accept="application/x-protobuf", split="None")
    assert not dp.active


# -- "Example: Output Input Data and Inferences" --------------------------------------------------------------
def test_csv_join_appends_the_output_to_the_input_row():
    # "For a CSV file, for example, if the record is [1,2,3], and the label result is [1], then the output file
    #  would contain [1,2,3,1]."
    dp = build(join_source="Input")
    assert run(dp, b"1,2,3", lambda s: b"1") == (b"1,2,3", b"1,2,3,1")


def test_json_join_adds_sagemaker_output_to_an_object():
    # 'if the input is a JSON file that contains the key-value pair {"key":1}, the data transform result might be
    #  {"label":1}.' -> {"key":1, "SageMakerOutput":{"label":1}}
    dp = build(join_source="Input", content_type=JSONL, accept=JSONL)
    _, written = run(dp, b'{"key":1}', lambda s: b'{"label":1}')
    assert json.loads(written) == {"key": 1, "SageMakerOutput": {"label": 1}}
    assert written == b'{"key":1,"SageMakerOutput":{"label":1}}'


def test_json_join_wraps_an_input_that_is_not_an_object():
    # "If the input isn't a key-value pair object, SageMaker creates a new JSON file. In the new JSON file, the
    #  input data is stored in the SageMakerInput key and the results are stored as the SageMakerOutput value."
    dp = build(join_source="Input", content_type=JSON, accept=JSON, split="None", assemble="None")
    _, written = run(dp, b"[1, 2, 3]", lambda s: b"[0.5]")
    assert json.loads(written) == {"SageMakerInput": [1, 2, 3], "SageMakerOutput": [0.5]}
    _, written = run(dp, b"42", lambda s: b"7")
    assert json.loads(written) == {"SageMakerInput": 42, "SageMakerOutput": 7}


def test_json_join_overwrites_an_input_key_named_sagemaker_output():
    # "If your JSON-formatted input file contains an attribute with this name, values in the input file might be
    #  overwritten with the inference."
    dp = build(join_source="Input", content_type=JSONL, accept=JSONL)
    _, written = run(dp, b'{"SageMakerOutput":"old","a":1}', lambda s: b"2")
    assert json.loads(written) == {"SageMakerOutput": 2, "a": 1}


# -- "Example: Output an ID Column with Results and Exclude the ID Column from the Input (CSV)" ----------------
def test_csv_id_column_excluded_from_the_input_and_kept_in_the_output():
    # "if your data includes five columns and the first one is the ID column":
    # input_filter="$[1:]", join_source="Input", output_filter="$"
    dp = build(input_filter="$[1:]", join_source="Input")
    sent, written = run(dp, b"id-17,2,3,4,5", lambda s: b"9.5")
    assert sent == b"2,3,4,5"
    assert written == b"id-17,2,3,4,5,9.5"


def test_csv_main_job_case_keeps_the_id_and_the_prediction():
    # The README's main job: InputFilter "$[1:]", JoinSource Input, OutputFilter "$[0,-1]".
    dp = build(input_filter="$[1:]", join_source="Input", output_filter="$[0,-1]")
    sent, written = run(dp, b"car-0001,22661.05,8221,6,4", lambda s: b"21048.3")
    assert sent == b"22661.05,8221,6,4"
    assert written == b"car-0001,21048.3"


def test_csv_output_filter_without_join_filters_the_output_row():
    dp = build(output_filter="$[1]")
    assert run(dp, b"1,2", lambda s: b"0.1,0.9")[1] == b"0.9"


def test_csv_cells_follow_rfc4180_quoting_not_a_comma_split():
    # "CSV data should also follow RFC format": a quoted comma is part of one cell.
    dp = build(input_filter="$[1:]", join_source="Input", output_filter="$[0,1,-1]")
    sent, written = run(dp, b'7,"Smith, J","say ""hi""",3', lambda s: b"0.25")
    assert sent == b'"Smith, J","say ""hi""",3'
    assert written == b'7,"Smith, J",0.25'


def test_csv_output_filter_out_of_range_names_the_record_problem():
    # "If you specify indexes that aren't within the dimension size of the joined dataset, you get an error."
    dp = build(join_source="Input", output_filter="$[0,9]")
    with pytest.raises(RecordError, match=r"OutputFilter: \$\[0,9\]: index 9 is outside \$, which has 4 elements"):
        run(dp, b"1,2,3", lambda s: b"4")


def test_csv_record_with_an_embedded_newline_is_an_error():
    # "For CSV files, you cannot use embedded newline characters."
    dp = build(input_filter="$[1:]")
    # SplitType Line cuts '1,"a<newline>b",2' in two; the first half ends inside its quotes.
    with pytest.raises(RecordError, match=r"ends inside a quoted cell; SageMaker splits CSV on newlines"):
        dp.request_record(b'1,"a')
    with pytest.raises(RecordError, match=r"contains a newline"):
        dp.request_record(b'1,"a\nb",2')


# -- "Example: Output an ID Attribute with Results and Exclude the ID Attribute from the Input (JSON)" ---------
def test_json_features_in_id_and_output_out():
    # input_filter="$.features", join_source="Input", output_filter="$['id','SageMakerOutput']"
    dp = build(
        input_filter="$.features",
        join_source="Input",
        output_filter="$['id','SageMakerOutput']",
        content_type=JSONL,
        accept=JSONL,
    )
    sent, written = run(dp, b'{"id": "r1", "features": [1.5, 2], "note": "x"}', lambda s: b'{"score": 3.5}')
    assert json.loads(sent) == [1.5, 2]
    assert json.loads(written) == {"id": "r1", "SageMakerOutput": {"score": 3.5}}


def test_json_output_filter_without_join():
    dp = build(output_filter="$.score", content_type=JSONL, accept=JSONL)
    assert run(dp, b"[1]", lambda s: b'{"score": 2, "x": 0}')[1] == b"2"


def test_json_non_ascii_survives():
    dp = build(join_source="Input", content_type=JSONL, accept=JSONL)
    assert json.loads(run(dp, '{"make":"Citroën"}'.encode(), lambda s: b"1")[1]) == {
        "make": "Citroën",
        "SageMakerOutput": 1,
    }


def test_json_bad_record_and_bad_output_are_named():
    dp = build(input_filter="$.features", join_source="Input", content_type=JSONL, accept=JSONL)
    with pytest.raises(RecordError, match=r"input record is not valid JSON"):
        dp.request_record(b"{broken")
    with pytest.raises(RecordError, match=r"output record is not valid JSON"):
        dp.output_record(b'{"features":[1]}', b"not json")
    with pytest.raises(RecordError, match=r"InputFilter: \$.features: \$ has no key 'features'"):
        dp.request_record(b'{"other": 1}')


# -- what SageMaker rejects before the job starts -----------------------------------------------------------
def test_join_needs_supported_content_types():
    # "you must set both the Content Type and Accept parameters to one of the following values: text/csv,
    #  application/json, or application/jsonlines"
    with pytest.raises(DataProcessingError, match=r"needs ContentType to be one of text/csv, application/json"):
        build(join_source="Input", content_type="application/x-parquet")
    with pytest.raises(DataProcessingError, match=r"needs Accept to be one of .* received 'application/x-protobuf'"):
        build(input_filter="$[1:]", accept="application/x-protobuf")
    with pytest.raises(DataProcessingError, match=r"needs Accept .* received None"):
        build(output_filter="$[0]", accept=None)


def test_content_type_parameters_are_ignored():
    dp = build(join_source="Input", content_type="text/csv; charset=utf-8", accept="text/csv;header=absent")
    assert dp.join


def test_csv_needs_line_split_and_line_assembly():
    # "If you set input and output formats to text/csv, you must also set the SplitType and AssemblyType
    #  parameters to line."
    expected = r"SplitType 'Line' and AssembleWith 'Line'; received SplitType 'None'"
    with pytest.raises(DataProcessingError, match=expected):
        build(join_source="Input", split="None")
    with pytest.raises(DataProcessingError, match=r"received SplitType 'Line', AssembleWith 'None'"):
        build(input_filter="$[1:]", assemble="None")


def test_csv_accepts_only_index_paths():
    # "For CSV data, each row is taken as a JSON array, so only index based JSONPaths can be applied"
    with pytest.raises(DataProcessingError, match=r"InputFilter '\$.features': a CSV row is a flat JSON array"):
        build(input_filter="$.features")
    with pytest.raises(DataProcessingError, match=r"OutputFilter .* only index paths"):
        build(join_source="Input", output_filter="$['id','SageMakerOutput']")


def test_join_across_formats_is_rejected():
    with pytest.raises(DataProcessingError, match=r"joins records of one format"):
        build(join_source="Input", content_type=CSV, accept=JSONL)


def test_json_and_jsonlines_join_together():
    dp = build(join_source="Input", content_type=JSONL, accept=JSON)
    assert json.loads(dp.output_record(b'{"a":1}', b"[2]")) == {"a": 1, "SageMakerOutput": [2]}


def test_bad_expressions_and_join_source_name_the_field():
    with pytest.raises(DataProcessingError, match=r"^InputFilter: unsupported JSONPath expression '\$..a'"):
        build(input_filter="$..a")
    with pytest.raises(DataProcessingError, match=r"^OutputFilter: JSONPath expression .* is 64 characters"):
        build(output_filter="$[" + ",".join(["1"] * 31) + "]")
    with pytest.raises(DataProcessingError, match=r"JoinSource 'input' is not valid"):
        build(join_source="input")
