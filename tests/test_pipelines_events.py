"""The event-driven pipelines, executed unchanged in moto's ASL interpreter with our SageMaker backend (local
processes): new training data starts one training per algorithm; a new scoring file is preprocessed and scored by
both deployed models; a bad file ends in the Catch with the job's reason and publishes nothing; the monitoring
schedule monitors captures (with ground truth: model quality too) and batch outputs, alerts on drift and starts
the retraining once; a run with nothing new skips; a second training start for the same algorithm is skipped.

One scenario runs every action in its fixture and records what happened; each test reads the record, so the tests
pass in any order."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest

from lifecycle.data import write_ground_truth
from pipelines import events
from pipelines.local import runners
from pipelines.local.execute import BUCKET, PREFIX, Execution, LocalAws

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "cardata" / "car_prices.csv"
ROWS = list(csv.reader(DATA.open()))
FAST = {
    "xgboost": {"num_round": "40", "eta": "0.3", "max_depth": "3", "early_stopping_rounds": "0", "seed": "0"},
    "linear": {"predictor_type": "regressor", "epochs": "5"},
}
pytestmark = pytest.mark.slow


def scoring_csv(path: Path, rows: list[list[str]], make: str | None = None) -> Path:
    """Rows of the bundled data with an id column first (and their price, which scoring ignores)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", *ROWS[0]])
        for i, r in enumerate(rows):
            w.writerow([f"car-{i + 1:04d}", *r[:-2], make or r[-2], r[-1]])
    return path


def objects(aws: LocalAws, prefix: str) -> list[str]:
    listing = aws.client("s3").list_objects_v2(Bucket=BUCKET, Prefix=prefix)
    return [o["Key"] for o in listing.get("Contents", [])]


@dataclass
class Scenario:
    training: dict[str, Execution] = field(default_factory=dict)
    scoring: Execution | None = None
    scored: dict[str, list[str]] = field(default_factory=dict)  # algorithm -> lines of its .out file
    bad: Execution | None = None
    bad_outputs: list[str] = field(default_factory=list)
    monitoring: Execution | None = None
    retraining: list[Execution] = field(default_factory=list)
    again: Execution | None = None
    training_runs: int = 0


def _fast_training(aws: LocalAws) -> None:
    """The rules' training inputs with few rounds (the deployment fixes hyperparameters in its rule)."""
    for algorithm in FAST:
        rule = aws.rules[f"new-training-data-{algorithm}"]
        fixed = json.loads(rule.input_template)  # its placeholders sit inside strings: valid JSON
        fixed.pop("DataUri")
        aws.rules[rule.name] = events.Rule(
            rule.name,
            rule.machine,
            rule.pattern,
            input_paths=rule.input_paths,
            input_template=events._template({**fixed, "HyperParameters": FAST[algorithm]},
                                            {"DataUri": "s3://<bucket>/<key>"}),
        )  # fmt: skip


@pytest.fixture(scope="module")
def scenario(tmp_path_factory) -> Scenario:
    root = tmp_path_factory.mktemp("events")
    s = Scenario()
    with LocalAws(root / "work", runners.LocalRunner()) as aws:
        _fast_training(aws)
        for rule, arn in aws.put(DATA, f"{events.TRAINING_PREFIX}car_prices.csv"):
            s.training[rule] = aws.follow(arn)

        # real-time traffic with inference ids, and ground truth for it
        runtime, labels = aws.client("sagemaker-runtime"), {}
        for i, row in enumerate(ROWS[1:41]):
            labels[f"rt-{i:03d}"] = row[0]
            runtime.invoke_endpoint(EndpointName=f"{PREFIX}-xgboost", Body=",".join(row[1:]).encode(),
                                    ContentType="text/csv", Accept="text/csv", InferenceId=f"rt-{i:03d}")  # fmt: skip
        truth = write_ground_truth(labels, root / "truth", datetime.now(UTC))
        aws.upload(truth, f"pipelines/ground-truth/{PREFIX}-xgboost/{truth.relative_to(root / 'truth')}")

        ((rule, arn),) = aws.put(
            scoring_csv(root / "in" / "batch.csv", ROWS[1:61]), f"{events.SCORING_PREFIX}batch.csv"
        )
        s.scoring = aws.follow(arn)
        for key in objects(aws, "pipelines/scored/"):  # pipelines/scored/<algorithm>/<execution>/batch.csv.out
            body = aws.client("s3").get_object(Bucket=BUCKET, Key=key)["Body"].read().decode()
            s.scored[key.split("/")[2]] = body.splitlines()

        bad = scoring_csv(root / "in" / "bad.csv", ROWS[1:6], make="Tesla")
        ((rule, arn),) = aws.put(bad, f"{events.SCORING_PREFIX}bad.csv")
        before = set(objects(aws, "pipelines/scored/"))
        s.bad = aws.follow(arn)
        s.bad_outputs = sorted(set(objects(aws, "pipelines/scored/")) - before)

        s.monitoring = aws.follow(
            aws.trigger_schedule(
                Retrain=aws.monitoring_input(f"s3://{BUCKET}/{events.TRAINING_PREFIX}car_prices.csv")["Retrain"]
            )
        )
        started = aws.client("stepfunctions").list_executions(stateMachineArn=aws.machines["training"])["executions"]
        s.retraining = [aws.follow(e["executionArn"]) for e in started if e["name"].startswith("r")]
        s.training_runs = len(started)
        s.again = aws.follow(aws.trigger_schedule())
    return s


def test_new_training_data_trains_and_deploys_each_algorithm(scenario):
    assert sorted(scenario.training) == ["new-training-data-linear", "new-training-data-xgboost"]
    for execution in scenario.training.values():
        assert execution.status == "SUCCEEDED", (execution.error, execution.cause)
        assert execution.output["EndpointName"].startswith(f"{PREFIX}-")


def test_a_new_scoring_file_is_scored_by_both_models_with_ids_kept(scenario):
    execution = scenario.scoring
    assert execution.status == "SUCCEEDED", (execution.error, execution.cause)
    assert "Preprocess scoring file" in execution.visited() and execution.visited().count("Batch transform") == 2
    (message,) = [m for m in execution.messages if m["Subject"].endswith("scored")]
    assert "with 2 model(s)" in message["Message"] and "batch.csv 60 records" in message["Message"]
    assert sorted(scenario.scored) == ["linear", "xgboost"]
    for lines in scenario.scored.values():
        assert len(lines) == 60
        first = lines[0].split(",")
        assert first[0] == "car-0001" and first[1:-1] == ROWS[1][1:] and float(first[-1]) > 0


def test_a_bad_scoring_file_is_caught_with_its_reason_and_publishes_nothing(scenario):
    execution = scenario.bad
    assert execution.status == "FAILED" and execution.error == "PipelineFailed"
    assert execution.visited()[-3:] == ["Preprocess scoring file", "Notify failure", "Pipeline failed"]
    (message,) = execution.messages
    assert message["Subject"] == f"{PREFIX} scoring pipeline failed"
    assert "bad.csv, line 2, column 9 (make): unknown level 'Tesla'" in message["Message"]
    assert scenario.bad_outputs == []


def test_monitoring_checks_captures_with_ground_truth_and_batch_outputs(scenario):
    execution = scenario.monitoring
    assert execution.status == "SUCCEEDED", (execution.error, execution.cause)
    runs = {r["Name"]: r for r in execution.output["Results"]}
    assert {"realtime-xgboost", "realtime-linear"} & set(runs) == {"realtime-xgboost"}  # linear had no traffic
    assert runs["realtime-xgboost"]["ModelQuality"] is True  # ground truth came with the data
    batch = [r for name, r in runs.items() if name.startswith("batch-")]
    assert len(batch) == 2 and not any(r["ModelQuality"] for r in batch)
    assert execution.visited().count("Monitor data and model quality") == 1
    assert execution.visited().count("Monitor data quality") == 2


def test_drift_alerts_and_starts_the_retraining_once(scenario):
    execution = scenario.monitoring
    assert execution.output["Drift"] is True
    subjects = [m["Subject"] for m in execution.messages]
    assert any(s.startswith("Drift on ") for s in subjects)
    assert f"{PREFIX} monitoring: drift, retraining started" in subjects
    assert len(scenario.retraining) == 2  # one per algorithm, started once
    assert {e.status for e in scenario.retraining} == {"SUCCEEDED"}
    assert scenario.training_runs == 4  # the two from new data, the two retrainings; the second run started none


def test_a_run_with_nothing_new_skips(scenario):
    execution = scenario.again
    assert execution.status == "SUCCEEDED"
    assert execution.visited() == ["Name the run", "Find new data", "Anything new?", "Nothing new"]
    assert execution.messages == []


@pytest.fixture
def fresh(tmp_path):
    with LocalAws(tmp_path / "work", runners.LocalRunner()) as aws:
        yield aws


def test_scoring_without_a_deployed_model_fails_and_says_so(fresh, tmp_path):
    ((rule, arn),) = fresh.put(scoring_csv(tmp_path / "s.csv", ROWS[1:3]), f"{events.SCORING_PREFIX}s.csv")
    assert rule == "new-scoring-data"
    execution = fresh.follow(arn)
    assert execution.status == "FAILED" and execution.error == "NoDeployedModel"
    assert [m["Subject"] for m in execution.messages] == [f"{PREFIX} scoring: no deployed model"]


def test_files_elsewhere_in_the_bucket_start_nothing(fresh, tmp_path):
    path = scoring_csv(tmp_path / "s.csv", ROWS[1:3])
    assert fresh.put(path, "data/archive/s.csv") == []
    assert fresh.put(path, "data/scoring-old/s.csv") == []


def test_a_second_training_of_the_same_algorithm_is_skipped(fresh):
    data = fresh.upload(DATA, "elsewhere/car_prices.csv")
    sfn = fresh.client("stepfunctions")
    payload = fresh.training_input("xgboost", data, RmseThreshold=1, HyperParameters=FAST["xgboost"])
    arns = [sfn.start_execution(stateMachineArn=fresh.machines["training"], name=n, input=json.dumps(payload))
            ["executionArn"] for n in ("first", "second")]  # fmt: skip
    other = sfn.start_execution(stateMachineArn=fresh.machines["training"], name="linear",
                                input=json.dumps({**payload, "Algorithm": "linear", "HyperParameters": FAST["linear"],
                                                  "TrainingImage": "byoc-linear:latest"}))["executionArn"]  # fmt: skip
    results = {e.name: e for e in (fresh.follow(a) for a in [*arns, other])}
    assert results["second"].visited()[-2:] == ["Notify skipped", "Skipped"]
    assert results["second"].status == "SUCCEEDED"
    assert "Preprocess data" in results["first"].visited()  # it went on (and the tiny threshold rejected it)
    assert "Preprocess data" in results["linear"].visited()  # another algorithm is not blocked
    subjects = [m["Subject"] for e in results.values() for m in e.messages]
    assert f"{PREFIX} xgboost: training run skipped" in subjects
