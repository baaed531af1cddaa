"""The batch transform runner end to end (python -m emulators.transform) against a stand-in model server."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from emulators.minibatch import MIB
from emulators.transform import JobError, TransformJob, main, resolve_execution_parameters
from tests.test_transform_fakeserver import FakeModelServer

REPO = Path(__file__).resolve().parent.parent
CSV_ARGS = ["--content-type", "text/csv", "--accept", "text/csv", "--split-type", "Line", "--assemble-with", "Line"]
JSONL = "application/jsonlines"
JSONL_ARGS = ["--content-type", JSONL, "--accept", JSONL, "--split-type", "Line", "--assemble-with", "Line"]
MAIN_JOB = ["--input-filter", "$[1:]", "--join-source", "Input", "--output-filter", "$[0,-1]"]


def write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


def transform(fake: FakeModelServer, inp: Path, out: Path, *args: str) -> int:
    return main(["--endpoint", fake.url, "--input", str(inp), "--output", str(out), *args])


def files_in(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


# -- the main job's case and JSON Lines ---------------------------------------------------------------------
def test_csv_id_column_filtered_out_joined_back_and_kept_with_the_prediction(tmp_path, capsys):
    inp = write(tmp_path / "in" / "scoring.csv", 'car-1,1,2\ncar-2,3,4\n"car,3",5,6\n')
    with FakeModelServer() as fake:
        assert transform(fake, inp, tmp_path / "out", *CSV_ARGS, *MAIN_JOB) == 0
    assert (tmp_path / "out" / "scoring.csv.out").read_text() == 'car-1,3.0\ncar-2,7.0\n"car,3",11.0\n'
    assert files_in(tmp_path / "out") == ["scoring.csv.out"]
    [call] = fake.invocations
    assert call["body"] == b"1,2\n3,4\n5,6\n"  # the IDs never reach the model
    assert (call["content_type"], call["accept"]) == ("text/csv", "text/csv")
    stdout = capsys.readouterr().out
    assert "MaxConcurrentTransforms=1, MaxPayloadInMB=6, BatchStrategy=MULTI_RECORD" in stdout
    assert "1 file(s), 3 records, 1 batches (requests)" in stdout


def test_json_lines_features_in_id_and_output_out(tmp_path):
    inp = write(
        tmp_path / "in.jsonl",
        '{"id": "a", "features": [1, 2], "note": "x"}\n{"id": "b", "features": [10, 0.5], "note": "y"}\n',
    )
    args = ["--input-filter", "$.features", "--join-source", "Input", "--output-filter", "$['id','SageMakerOutput']"]
    with FakeModelServer() as fake:
        assert transform(fake, inp, tmp_path / "out", *JSONL_ARGS, *args) == 0
    lines = (tmp_path / "out" / "in.jsonl.out").read_text().splitlines()
    assert [json.loads(x) for x in lines] == [
        {"id": "a", "SageMakerOutput": {"score": 3.0}},
        {"id": "b", "SageMakerOutput": {"score": 10.5}},
    ]
    assert fake.invocations[0]["body"] == b"[1,2]\n[10,0.5]\n"


def test_json_lines_join_wraps_inputs_that_are_not_objects(tmp_path):
    inp = write(tmp_path / "in.jsonl", "[1, 2]\n[3]\n")
    with FakeModelServer() as fake:
        assert transform(fake, inp, tmp_path / "out", *JSONL_ARGS, "--join-source", "Input") == 0
    lines = (tmp_path / "out" / "in.jsonl.out").read_text().splitlines()
    assert json.loads(lines[1]) == {"SageMakerInput": [3], "SageMakerOutput": {"score": 3.0}}


def test_without_data_processing_and_assemble_none_responses_are_concatenated_as_is(tmp_path):
    inp = write(tmp_path / "in.csv", "1\n2\n3\n")
    with FakeModelServer() as fake:
        args = [
            "--content-type",
            "text/csv",
            "--accept",
            "text/csv",
            "--split-type",
            "Line",
            "--strategy",
            "SingleRecord",
        ]
        assert transform(fake, inp, tmp_path / "out", *args) == 0
    assert (tmp_path / "out" / "in.csv.out").read_bytes() == b"1.0\n2.0\n3.0\n"  # the bodies, byte for byte


def test_split_type_none_sends_the_whole_file_in_one_request(tmp_path):
    inp = write(tmp_path / "in.csv", "1,1\n2,2\n")
    with FakeModelServer() as fake:
        args = ["--content-type", "text/csv", "--accept", "text/csv", "--strategy", "SingleRecord"]
        assert transform(fake, inp, tmp_path / "out", *args) == 0
    assert [c["body"] for c in fake.invocations] == [b"1,1\n2,2\n"]
    assert (tmp_path / "out" / "in.csv.out").read_bytes() == b"2.0\n4.0\n"


# -- a folder of inputs, like an S3 prefix -------------------------------------------------------------------
def test_folder_input_every_file_sorted_with_one_out_each(tmp_path, capsys):
    write(tmp_path / "in" / "b.csv", "x,1\n")
    write(tmp_path / "in" / "a.csv", "y,2\n")
    write(tmp_path / "in" / "sub" / "c.csv", "z,3\n")
    with FakeModelServer() as fake:
        assert transform(fake, tmp_path / "in", tmp_path / "out", *CSV_ARGS, *MAIN_JOB) == 0
    assert files_in(tmp_path / "out") == ["a.csv.out", "b.csv.out", "sub/c.csv.out"]
    assert [c["body"] for c in fake.invocations] == [b"2\n", b"1\n", b"3\n"]  # files never share a mini-batch
    assert (tmp_path / "out" / "sub" / "c.csv.out").read_text() == "z,3.0\n"


def test_output_inside_input_is_rejected(tmp_path, capsys):
    write(tmp_path / "in" / "a.csv", "1\n")
    with FakeModelServer() as fake:
        assert transform(fake, tmp_path / "in", tmp_path / "in" / "out", *CSV_ARGS) == 2
    assert fake.requests == []
    assert "is inside --input" in capsys.readouterr().err


# -- SingleRecord vs MultiRecord, payload limits --------------------------------------------------------------
def test_single_record_sends_one_request_per_record_multi_record_one_for_all(tmp_path):
    inp = write(tmp_path / "in.csv", "".join(f"id{i},{i}\n" for i in range(7)))
    with FakeModelServer() as fake:
        assert transform(fake, inp, tmp_path / "single", *CSV_ARGS, *MAIN_JOB, "--strategy", "SingleRecord") == 0
        assert len(fake.invocations) == 7
        assert [c["body"] for c in fake.invocations] == [f"{i}\n".encode() for i in range(7)]
    with FakeModelServer() as fake:
        assert transform(fake, inp, tmp_path / "multi", *CSV_ARGS, *MAIN_JOB, "--strategy", "MultiRecord") == 0
        assert len(fake.invocations) == 1
    single = (tmp_path / "single" / "in.csv.out").read_text()
    assert single == (tmp_path / "multi" / "in.csv.out").read_text()
    assert single.splitlines()[-1] == "id6,6.0"


def test_mini_batches_fill_max_payload_exactly_and_never_cut_a_record(tmp_path):
    # Each line is 1/4 MiB with its newline: MaxPayloadInMB=1 packs exactly 4 records per request.
    line = ",".join(["1"] * (MIB // 8))  # 131072 cells, 262143 bytes
    assert len(line) + 1 == MIB // 4
    inp = write(tmp_path / "big.csv", "".join(line + "\n" for _ in range(10)))
    with FakeModelServer() as fake:
        args = ["--content-type", "text/csv", "--accept", "text/csv", "--split-type", "Line", "--assemble-with", "Line"]
        assert transform(fake, inp, tmp_path / "out", *args, "--max-payload-mb", "1") == 0
    sizes = [len(c["body"]) for c in fake.invocations]
    assert sizes == [MIB, MIB, MIB // 2]
    assert all(
        c["body"].endswith(b"\n") and c["body"].count(b"\n") * (MIB // 4) == len(c["body"]) for c in fake.invocations
    )
    assert b"".join(c["body"] for c in fake.invocations) == inp.read_bytes()
    assert (tmp_path / "out" / "big.csv.out").read_text() == "131072.0\n" * 10


def test_a_record_larger_than_max_payload_fails_its_file_only(tmp_path, capsys):
    write(tmp_path / "in" / "a.csv", "1\n" + "2" * MIB + "\n3\n")
    write(tmp_path / "in" / "b.csv", "4\n")
    with FakeModelServer() as fake:
        args = ["--content-type", "text/csv", "--accept", "text/csv", "--split-type", "Line", "--assemble-with", "Line"]
        assert transform(fake, tmp_path / "in", tmp_path / "out", *args, "--max-payload-mb", "1") == 1
    err = capsys.readouterr().err
    assert "a.csv: record 2 (line 2) is 1048577 bytes, larger than MaxPayloadInMB=1 (1048576 bytes)" in err
    # SageMaker: "a transform job continues to process input files even if it fails to process one"
    assert files_in(tmp_path / "out") == ["b.csv.out"]


@pytest.mark.parametrize(("mb", "requests"), [("0", 1), ("100", 1)])
def test_max_payload_zero_means_no_limit_and_100_is_allowed(tmp_path, mb, requests):
    inp = write(tmp_path / "in.csv", "1\n2\n")
    with FakeModelServer() as fake:
        assert transform(fake, inp, tmp_path / "out", *CSV_ARGS, "--max-payload-mb", mb) == 0
    assert len(fake.invocations) == requests


# -- /execution-parameters and the precedence ----------------------------------------------------------------
def test_the_containers_execution_parameters_apply_when_the_job_sets_nothing(tmp_path, capsys):
    inp = write(tmp_path / "in.csv", "1\n2\n3\n")
    answer = {"MaxConcurrentTransforms": 2, "BatchStrategy": "SINGLE_RECORD", "MaxPayloadInMB": 1}
    with FakeModelServer(answer) as fake:
        assert transform(fake, inp, tmp_path / "out", *CSV_ARGS) == 0
        assert len(fake.invocations) == 3
    assert (
        "MaxConcurrentTransforms=2, MaxPayloadInMB=1, BatchStrategy=SINGLE_RECORD (MaxConcurrentTransforms from "
        "/execution-parameters, BatchStrategy from /execution-parameters, MaxPayloadInMB from /execution-parameters)"
    ) in capsys.readouterr().out


def test_the_jobs_values_win_over_the_container(tmp_path):
    inp = write(tmp_path / "in.csv", "1\n2\n3\n")
    with FakeModelServer({"BatchStrategy": "SingleRecord"}) as fake:
        assert transform(fake, inp, tmp_path / "out", *CSV_ARGS, "--strategy", "MultiRecord") == 0
        assert len(fake.invocations) == 1


def test_defaults_without_execution_parameters():
    params = resolve_execution_parameters(TransformJob(Path("in"), Path("out")), None)
    assert (params.max_concurrent_transforms, params.batch_strategy, params.max_payload_mb) == (1, "MultiRecord", 6)
    # MaxConcurrentTransforms 0 means "not set": the container's answer decides.
    job = TransformJob(Path("in"), Path("out"), max_concurrent_transforms=0)
    assert resolve_execution_parameters(job, {"MaxConcurrentTransforms": 4}).max_concurrent_transforms == 4


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        ({"BatchStrategy": "ALL"}, "answered BatchStrategy='ALL', which is not valid"),
        ({"MaxPayloadInMB": 101}, "answered MaxPayloadInMB=101"),
        ({"MaxConcurrentTransforms": "2"}, "answered MaxConcurrentTransforms='2'"),
        ({"MaxConcurrentTransforms": 8, "MaxPayloadInMB": 20}, "8 x 20 = 160"),
    ],
)
def test_invalid_container_answers_stop_the_job_before_any_invocation(tmp_path, capsys, answer, message):
    inp = write(tmp_path / "in.csv", "1\n")
    with FakeModelServer(answer) as fake:
        assert transform(fake, inp, tmp_path / "out", *CSV_ARGS) == 2
        assert fake.invocations == []
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--max-concurrent-transforms", "20", "--max-payload-mb", "6"], "20 x 6 = 120"),
        (["--max-payload-mb", "101"], "MaxPayloadInMB must be between 0 and 100; received 101"),
        (["--max-payload-mb", "-1"], "MaxPayloadInMB must be between 0 and 100; received -1"),
        (["--max-concurrent-transforms", "-1"], "MaxConcurrentTransforms must be 0 or more"),
        (["--invocations-max-retries", "4"], "InvocationsMaxRetries must be 0-3"),
        (["--invocations-timeout", "0"], "InvocationsTimeoutInSeconds must be 1-3600"),
        (["--split-type", "RecordIO"], "invalid choice: 'RecordIO'"),
        (["--strategy", "MULTI_RECORD"], "invalid choice: 'MULTI_RECORD'"),
        (["--env", "A=1"], "--model-dir and --env apply to --image only"),
    ],
)
def test_invalid_jobs_exit_2_with_one_line_and_send_nothing(tmp_path, capsys, args, message):
    inp = write(tmp_path / "in.csv", "1\n")
    with FakeModelServer() as fake:
        assert transform(fake, inp, tmp_path / "out", *CSV_ARGS, *args) == 2
        assert fake.requests == []
    err = capsys.readouterr().err
    assert message in err
    assert err.count("\n") == 1
    assert not (tmp_path / "out").exists()


# -- expressions SageMaker would reject: refused before any request -------------------------------------------
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--input-filter", "$..a"], "InputFilter: unsupported JSONPath expression '$..a' at character 2: recursive"),
        (["--output-filter", "$[?(@.a>1)]"], "OutputFilter: unsupported JSONPath expression"),
        (["--input-filter", "$.length()"], "functions such as length() are not supported"),
        (["--output-filter", "$[" + ",".join(["0"] * 31) + "]"], "is 64 characters long; SageMaker allows at most 63"),
        (["--input-filter", "$.features"], "a CSV row is a flat JSON array, so only index paths"),
        (["--join-source", "Input", "--content-type", "application/x-npy"], "needs ContentType to be one of"),
        (["--join-source", "Input", "--split-type", "None"], "needs SplitType 'Line' and AssembleWith 'Line'"),
        (["--join-source", "Input", "--accept", JSONL], "joins records of one format"),
    ],
)
def test_unsupported_data_processing_is_rejected_before_any_request(tmp_path, capsys, args, message):
    inp = write(tmp_path / "in.csv", "1,2\n")
    with FakeModelServer() as fake:
        assert transform(fake, inp, tmp_path / "out", *CSV_ARGS, *args) == 2
        assert fake.requests == []  # not even /ping
    err = capsys.readouterr().err
    assert message in err
    assert err.count("\n") == 1


# -- failures: named, and no .out that looks complete ---------------------------------------------------------
def test_a_record_the_container_rejects_fails_the_job_naming_file_record_and_message(tmp_path, capsys):
    write(tmp_path / "in" / "scoring.csv", "a,1\nb,2\nc,FAIL\nd,4\n")
    out = write(tmp_path / "out" / "scoring.csv.out", "stale output of an earlier run\n")
    with FakeModelServer() as fake:
        assert transform(fake, tmp_path / "in", tmp_path / "out", *CSV_ARGS, *MAIN_JOB) == 1
    err = capsys.readouterr().err
    assert (
        "scoring.csv: batch 1 (records 1-4), record 3 (line 3) is the container's line 3: ClientError: 400: "
        "line 3: the record is marked FAIL"
    ) in err
    assert not out.exists()
    assert files_in(tmp_path / "out") == []


def test_single_record_failure_names_the_exact_record(tmp_path, capsys):
    inp = write(tmp_path / "scoring.csv", "a,1\n\nb,FAIL\nc,3\n")
    with FakeModelServer() as fake:
        assert transform(fake, inp, tmp_path / "out", *CSV_ARGS, *MAIN_JOB, "--strategy", "SingleRecord") == 1
        assert len(fake.invocations) == 2  # one request in flight at a time: record 3 is never sent
    err = capsys.readouterr().err
    assert "scoring.csv: record 2 (line 3): ClientError: 400: line 1: the record is marked FAIL" in err
    assert files_in(tmp_path / "out") == []


def test_server_errors_are_retried_then_fail(tmp_path, capsys):
    inp = write(tmp_path / "in.csv", "FAIL\n")
    with FakeModelServer(fail_status=500) as fake:
        assert transform(fake, inp, tmp_path / "out", *CSV_ARGS, "--invocations-max-retries", "2") == 1
        assert len(fake.invocations) == 3
    assert "ClientError: 500: line 1: the record is marked FAIL after 3 attempts" in capsys.readouterr().err


def test_client_errors_are_not_retried(tmp_path):
    inp = write(tmp_path / "in.csv", "FAIL\n")
    with FakeModelServer() as fake:
        assert transform(fake, inp, tmp_path / "out", *CSV_ARGS) == 1
        assert len(fake.invocations) == 1


def test_an_answer_with_the_wrong_number_of_lines_fails_naming_the_batch(tmp_path, capsys):
    inp = write(tmp_path / "in.csv", "1\n2\n")
    with FakeModelServer(extra_output_line=True) as fake:
        assert transform(fake, inp, tmp_path / "out", *CSV_ARGS, *["--join-source", "Input"]) == 1
    err = capsys.readouterr().err
    assert "in.csv: batch 1 (records 1-2): expected 2 output records, received 3" in err
    assert files_in(tmp_path / "out") == []


def test_an_unreachable_endpoint_is_a_one_line_failure(tmp_path, capsys):
    inp = write(tmp_path / "in.csv", "1\n")
    with FakeModelServer() as fake:
        url = fake.url
    code = main(["--endpoint", url, "--input", str(inp), "--output", str(tmp_path / "out"), "--startup-timeout", "0"])
    assert code == 1
    err = capsys.readouterr().err
    assert f"the model server at {url} was not healthy within 0 s" in err
    assert err.count("\n") == 1


# -- concurrency -----------------------------------------------------------------------------------------------
def test_concurrent_requests_keep_the_output_in_input_order(tmp_path):
    inp = write(tmp_path / "in.csv", "".join(f"r{i},{i}\n" for i in range(6)))
    # The stand-in holds the first 3 requests until all 3 are in flight, then answers them last-first.
    with FakeModelServer(hold=3) as fake:
        args = [*CSV_ARGS, *MAIN_JOB, "--strategy", "SingleRecord", "--max-concurrent-transforms", "3"]
        assert transform(fake, inp, tmp_path / "out", *args) == 0
        assert fake.completed[:3] == [2, 1, 0]
    assert (tmp_path / "out" / "in.csv.out").read_text() == "".join(f"r{i},{float(i)}\n" for i in range(6))


# -- the container's environment -------------------------------------------------------------------------------
def test_container_environment_carries_only_what_the_job_sets():
    job = TransformJob(Path("i"), Path("o"), environment={"MODEL_THREADS": "2"})
    assert job.container_environment() == {"SAGEMAKER_BATCH": "true", "MODEL_THREADS": "2"}
    job = TransformJob(
        Path("i"), Path("o"), batch_strategy="SingleRecord", max_payload_mb=3, max_concurrent_transforms=2
    )
    assert job.container_environment() == {
        "SAGEMAKER_BATCH": "true",
        "SAGEMAKER_MAX_PAYLOAD_IN_MB": "3",
        "SAGEMAKER_BATCH_STRATEGY": "SINGLE_RECORD",
        "SAGEMAKER_MAX_CONCURRENT_TRANSFORMS": "2",
    }


def test_environment_limits():
    with pytest.raises(JobError, match="Environment key '1A'"):
        TransformJob(Path("i"), Path("o"), environment={"1A": "x"}).validate()
    with pytest.raises(JobError, match="at most 16"):
        TransformJob(Path("i"), Path("o"), environment={f"K{i}": "x" for i in range(17)}).validate()


def test_image_needs_a_model_dir(tmp_path, capsys):
    inp = write(tmp_path / "in.csv", "1\n")
    assert main(["--image", "x", "--input", str(inp), "--output", str(tmp_path / "o")]) == 2
    assert "--image needs --model-dir" in capsys.readouterr().err


# -- the entry point ---------------------------------------------------------------------------------------------
def test_python_dash_m_entry_point(tmp_path):
    inp = write(tmp_path / "scoring.csv", "id1,1,2\n")
    with FakeModelServer() as fake:
        cmd = [sys.executable, "-m", "emulators.transform", "--endpoint", fake.url, "--input", str(inp)]
        cmd += ["--output", str(tmp_path / "out"), *CSV_ARGS, *MAIN_JOB]
        ok = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, check=False)
        bad = subprocess.run([*cmd, "--output-filter", "$..x"], cwd=REPO, capture_output=True, text=True, check=False)
    assert ok.returncode == 0, ok.stderr
    assert (tmp_path / "out" / "scoring.csv.out").read_text() == "id1,3.0\n"
    assert bad.returncode == 2
    assert bad.stderr.count("\n") == 1 and "recursive descent" in bad.stderr
