"""The batch transform runner against a real model: trained by `python -m algorithms.train` on the car prices,
served by `python -m serving.serve` (as `docker run IMAGE train` / `serve` would, as local processes)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
import requests

from emulators.local_server import LocalServer
from emulators.transform import main
from tests import opt_ml as om

pytestmark = pytest.mark.slow

CSV_ARGS = ["--content-type", "text/csv", "--accept", "text/csv", "--split-type", "Line", "--assemble-with", "Line"]
JSONL = "application/jsonlines"
JSONL_ARGS = ["--content-type", JSONL, "--accept", JSONL, "--split-type", "Line", "--assemble-with", "Line"]
MAIN_JOB = ["--input-filter", "$[1:]", "--join-source", "Input", "--output-filter", "$[0,-1]"]


@pytest.fixture(scope="module")
def scoring():
    """The held-out split: (ids, feature rows as CSV cells, feature names)."""
    splits = om.split(om.car_prices())
    test = splits["test"]
    features = [c for c in test.columns if c != om.TARGET]
    rows = [[str(v) for v in row] for row in test[features].itertuples(index=False)]
    ids = [f"car-{i:04d}" for i in range(1, len(rows) + 1)]
    return ids, rows, features


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    base = tmp_path_factory.mktemp("xgboost") / "opt_ml"
    job = om.OptML(base)
    frame = om.car_prices()
    splits = om.split(frame)
    schema = json.dumps(om.schema_doc(frame))
    for name in ("train", "validation"):
        job.channel(name, {"part-0.csv": om.label_first_csv(splits[name]), "schema.json": schema})
    job.hyperparameters(num_round=30)
    result = job.train("xgboost")
    assert result.returncode == 0, result.output
    with LocalServer("xgboost", base, workers=1) as running:
        yield running


def csv_lines(rows) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    return buffer.getvalue()


def direct_predictions(server, rows) -> list[float]:
    r = requests.post(
        f"{server.url}/invocations",
        data=csv_lines(rows).encode(),
        headers={"Content-Type": "text/csv", "Accept": "text/csv"},
        timeout=60,
    )
    assert r.status_code == 200, r.text
    return [float(x) for x in r.text.splitlines()]


def run(server, inp: Path, out: Path, *args: str) -> int:
    return main(["--endpoint", server.url, "--input", str(inp), "--output", str(out), *args])


def test_csv_scoring_file_keeps_the_id_and_the_prediction(server, scoring, tmp_path, capsys):
    ids, rows, _ = scoring
    inp = tmp_path / "in" / "scoring.csv"
    inp.parent.mkdir()
    inp.write_text(csv_lines([[i, *r] for i, r in zip(ids, rows, strict=True)]))
    assert run(server, inp.parent, tmp_path / "out", *CSV_ARGS, *MAIN_JOB) == 0
    out = list(csv.reader((tmp_path / "out" / "scoring.csv.out").read_text().splitlines()))
    assert [r[0] for r in out] == ids
    assert all(len(r) == 2 for r in out)
    assert [float(r[1]) for r in out] == pytest.approx(direct_predictions(server, rows), rel=1e-12)
    assert all(5_000 < float(r[1]) < 80_000 for r in out)  # used-car prices, not garbage
    # The serving image answers /execution-parameters; the job set nothing, so its answer applies.
    assert "MaxConcurrentTransforms=1, MaxPayloadInMB=6, BatchStrategy=MULTI_RECORD" in capsys.readouterr().out


def test_single_record_concurrent_and_multi_record_agree(server, scoring, tmp_path):
    ids, rows, _ = scoring
    inp = tmp_path / "scoring.csv"
    inp.write_text(csv_lines([[i, *r] for i, r in zip(ids[:25], rows[:25], strict=True)]))
    args = [*CSV_ARGS, *MAIN_JOB]
    assert run(server, inp, tmp_path / "multi", *args, "--strategy", "MultiRecord") == 0
    assert (
        run(server, inp, tmp_path / "single", *args, "--strategy", "SingleRecord", "--max-concurrent-transforms", "3")
        == 0
    )
    assert (tmp_path / "single" / "scoring.csv.out").read_text() == (tmp_path / "multi" / "scoring.csv.out").read_text()


def test_json_lines_features_id_and_sagemaker_output(server, scoring, tmp_path):
    ids, rows, features = scoring
    direct = direct_predictions(server, rows[:10])
    lines = []
    for i, row in zip(ids[:10], rows[:10], strict=True):
        values = [v if features[j] in ("make", "body_type") else float(v) for j, v in enumerate(row)]
        lines.append(json.dumps({"id": i, "features": values, "note": "x"}))
    inp = tmp_path / "scoring.jsonl"
    inp.write_text("\n".join(lines) + "\n")
    args = ["--input-filter", "$.features", "--join-source", "Input", "--output-filter", "$['id','SageMakerOutput']"]
    assert run(server, inp, tmp_path / "out", *JSONL_ARGS, *args) == 0
    out = [json.loads(x) for x in (tmp_path / "out" / "scoring.jsonl.out").read_text().splitlines()]
    assert [o["id"] for o in out] == ids[:10]
    assert [set(o) for o in out] == [{"id", "SageMakerOutput"}] * 10
    assert [o["SageMakerOutput"]["score"] for o in out] == pytest.approx(direct, rel=1e-12)


def test_a_record_the_model_rejects_fails_the_job_with_file_record_and_message(server, scoring, tmp_path, capsys):
    ids, rows, features = scoring
    bad = [*rows[2]]
    bad[features.index("make")] = "Lada"
    data = [[ids[0], *rows[0]], [ids[1], *rows[1]], [ids[2], *bad], [ids[3], *rows[3]]]
    inp = tmp_path / "scoring.csv"
    inp.write_text(csv_lines(data))
    assert run(server, inp, tmp_path / "out", *CSV_ARGS, *MAIN_JOB) == 1
    err = capsys.readouterr().err
    assert "scoring.csv: batch 1 (records 1-4), record 3 (line 3) is the container's line 3: ClientError: 400:" in err
    assert "Lada" in err
    assert not (tmp_path / "out" / "scoring.csv.out").exists()
    assert not (tmp_path / "out" / "scoring.csv.out.partial").exists()
