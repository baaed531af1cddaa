"""The pipelines' AWS on this machine: moto in-process, our SageMaker backend, Lambdas bound to our handlers.

``LocalAws`` stands up what the template deploys (SNS topic, the two Lambdas, the state machines with their
DefinitionSubstitutions) and executes the checked-in definitions unchanged in moto's ASL interpreter:

    with LocalAws(workdir, runner) as aws:
        aws.upload(Path("cardata/car_prices.csv"), "data/training/car_prices.csv")
        result = aws.execute("training", aws.training_input("xgboost"), on_event=print)

SageMaker calls reach ``LocalSageMaker`` (real images through Docker, or the entry points as processes); every
SNS message is delivered to an SQS queue subscribed to the topic, so a run's notifications can be read back.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tarfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import boto3
from moto import mock_aws

from monitoring import evaluate
from pipelines import definitions, events, monitoring, scoring, training
from pipelines.lambdas import compare_best, find_new_data, query_metrics, single_run
from pipelines.local import functions, intercept, stepfunctions
from pipelines.local.runners import Runner
from pipelines.local.sagemaker import LocalSageMaker

REGION = "us-east-1"
ACCOUNT = "123456789012"  # moto's default account
BUCKET = "byoc-artifacts-local"
PREFIX = "cars"
ARTIFACTS = f"s3://{BUCKET}/pipelines"
PROCESSING_IMAGE = "byoc-monitor:latest"
ALGORITHMS = ("xgboost", "linear")
FUNCTIONS: dict[str, functions.Handler] = {
    "byoc-query-metrics": query_metrics.handler,
    "byoc-compare-best": compare_best.handler,
    "byoc-single-run": single_run.handler,
    "byoc-find-new-data": find_new_data.handler,
    "byoc-evaluate-drift": evaluate.handler,
}
TERMINAL = {"SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"}
EXECUTION_TIMEOUT_S = 1800


def _arn(service: str, resource: str) -> str:
    return f"arn:aws:{service}:{REGION}:{ACCOUNT}:{resource}"


@dataclass
class StateRun:
    name: str
    entered: datetime
    exited: datetime | None = None

    @property
    def seconds(self) -> float | None:
        return None if self.exited is None else (self.exited - self.entered).total_seconds()


@dataclass
class Execution:
    name: str
    status: str
    output: Any
    error: str | None
    cause: str | None
    states: list[StateRun] = field(default_factory=list)
    messages: list[dict[str, str]] = field(default_factory=list)  # SNS Subject / Message published by this run
    seconds: float = 0.0

    def visited(self) -> list[str]:
        return [s.name for s in self.states]


class LocalAws:
    def __init__(self, workdir: Path, runner: Runner, training_overrides: dict[str, Any] | None = None):
        """``training_overrides``: fields of the training input the deployment fixes (its rules' input)."""
        self.workdir = workdir
        self.runner = runner
        self.bucket = BUCKET
        self.artifacts = ARTIFACTS
        self.training_overrides = dict(training_overrides or {})
        self._stack = contextlib.ExitStack()
        self.sagemaker: LocalSageMaker | None = None
        self.machines: dict[str, str] = {}
        self.topic_arn = ""
        self._queue_url = ""

    # -- setting up ---------------------------------------------------------------------------------------------
    def __enter__(self) -> LocalAws:
        try:
            self._start()
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stack.close()

    def _start(self) -> None:
        # moto's interpreter logs every failed state with its whole parse tree; the history keeps the error
        parser_log = logging.getLogger("moto.stepfunctions.parser")
        level = parser_log.level
        parser_log.setLevel(logging.CRITICAL)
        self._stack.callback(parser_log.setLevel, level)
        for key, value in {"AWS_DEFAULT_REGION": REGION, "AWS_REGION": REGION}.items():
            self._stack.enter_context(_env(key, value))
        self.sagemaker = LocalSageMaker(self.workdir / "sagemaker", self.runner, region=REGION, account=ACCOUNT)
        self._stack.callback(self.sagemaker.close)
        # hooks first: sessions made inside the mock read the built-in handlers when they are created
        self._stack.enter_context(intercept.installed(self.sagemaker))
        self._stack.enter_context(functions.bound(FUNCTIONS))
        self._stack.enter_context(stepfunctions.integrations())
        self._stack.enter_context(mock_aws(config={"stepfunctions": {"execute_state_machine": True}}))
        self.client("s3").create_bucket(Bucket=BUCKET)
        sns, sqs = self.client("sns"), self.client("sqs")
        self.topic_arn = sns.create_topic(Name=f"{PREFIX}-pipelines")["TopicArn"]
        self._queue_url = sqs.create_queue(QueueName=f"{PREFIX}-notifications")["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=self._queue_url, AttributeNames=["QueueArn"])["Attributes"]
        sns.subscribe(TopicArn=self.topic_arn, Protocol="sqs", Endpoint=queue_arn["QueueArn"])
        iam = self.client("iam")
        trust = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                 "Principal": {"Service": ["states.amazonaws.com", "sagemaker.amazonaws.com"]}}]}  # fmt: skip
        role = iam.create_role(RoleName="byoc-local", AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
        self.role_arn = role
        substitutions = {
            "NotificationTopicArn": self.topic_arn,
            "QueryMetricsFunctionArn": _arn("lambda", "function:byoc-query-metrics"),
            "CompareBestFunctionArn": _arn("lambda", "function:byoc-compare-best"),
            "SingleRunFunctionArn": _arn("lambda", "function:byoc-single-run"),
            "FindNewDataFunctionArn": _arn("lambda", "function:byoc-find-new-data"),
            "EvaluateDriftFunctionArn": _arn("lambda", "function:byoc-evaluate-drift"),
            "TrainingStateMachineArn": _arn("states", f"stateMachine:{PREFIX}-training"),
            "SageMakerRoleArn": role,
        }
        sfn = self.client("stepfunctions")
        for name in definitions.BUILDERS:
            text = definitions.substitute(definitions.path(name).read_text(), substitutions)
            arn = sfn.create_state_machine(name=f"{PREFIX}-{name}", definition=text, roleArn=role)["stateMachineArn"]
            self.machines[name] = arn
        self._install_rules()

    # -- EventBridge ---------------------------------------------------------------------------------------------
    def _install_rules(self) -> None:
        """The deployment's rules in moto's EventBridge, each with a queue as its local stand-in target: moto
        matches the bucket's events against the rule's own pattern and delivers them there; ``deliver`` then starts
        the rule's state machine with the rule's input transformer applied (moto delivers to no Step Functions
        target itself)."""
        self.client("s3").put_bucket_notification_configuration(
            Bucket=BUCKET, NotificationConfiguration={"EventBridgeConfiguration": {}}
        )
        training_inputs = {a: self.training_input(a, None) for a in ALGORITHMS}
        self.rules = {
            r.name: r
            for r in events.rules(
                BUCKET,
                training_inputs,
                self.scoring_input(),
                self.monitoring_input(retrain_on=None),
            )
        }
        eb, sqs = self.client("events"), self.client("sqs")
        self._rule_queues: dict[str, str] = {}
        for rule in self.rules.values():
            if rule.pattern is None:
                eb.put_rule(Name=rule.name, ScheduleExpression=rule.schedule, State="ENABLED")
                continue
            eb.put_rule(Name=rule.name, EventPattern=json.dumps(rule.pattern), State="ENABLED")
            url = sqs.create_queue(QueueName=f"bridge-{rule.name}")["QueueUrl"]
            arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
            eb.put_targets(Rule=rule.name, Targets=[{"Id": "local-bridge", "Arn": arn}])
            self._rule_queues[rule.name] = url

    def deliver(self) -> list[tuple[str, str]]:
        """Start the state machines of the rules whose pattern matched an event since the last call:
        (rule name, execution ARN) each, named by a UUID as EventBridge names them."""
        from moto.events.utils import EventTemplateParser  # pinned moto: the transformer EventBridge applies

        sqs, sfn, started = self.client("sqs"), self.client("stepfunctions"), []
        for name, url in self._rule_queues.items():
            rule = self.rules[name]
            while messages := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
                for m in messages:
                    event = json.loads(m["Body"])
                    event.setdefault("ingestion-time", event.get("time"))  # the parser reads it; S3 events lack it
                    payload = EventTemplateParser.parse(rule.input_template, rule.input_paths, event)
                    arn = sfn.start_execution(
                        stateMachineArn=self.machines[rule.machine],
                        name=str(uuid.uuid4()),
                        input=json.dumps(payload),
                    )["executionArn"]
                    started.append((name, arn))
                    sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
        return started

    def put(self, source: Path, key: str) -> list[tuple[str, str]]:
        """Upload a file as a user would, and start what EventBridge would start for it."""
        self.upload(source, key)
        return self.deliver()

    def trigger_schedule(self, rule: str = "monitoring-schedule", **overrides: Any) -> str:
        """What the schedule does when it fires: start its machine with its input (``overrides`` on top)."""
        r = self.rules[rule]
        if self.sagemaker is not None:
            self.sagemaker.flush_capture()  # SageMaker uploads captures as they come; the local proxy on demand
        return self.client("stepfunctions").start_execution(
            stateMachineArn=self.machines[r.machine],
            name=str(uuid.uuid4()),
            input=json.dumps({**(r.input or {}), **overrides}),
        )["executionArn"]

    @staticmethod
    def client(service: str):
        return boto3.client(service, region_name=REGION)

    @staticmethod
    def key(uri: str) -> str:
        """The key of an ``s3://bucket/key`` URI."""
        return uri.removeprefix("s3://").partition("/")[2].rstrip("/")

    def upload(self, source: Path, key: str) -> str:
        self.client("s3").upload_file(str(source), BUCKET, key)
        return f"s3://{BUCKET}/{key}"

    def training_input(self, algorithm: str, data_uri: str | None, **overrides: Any) -> dict[str, Any]:
        """The example input with this machine's images, bucket, and a short endpoint poll (``data_uri`` None:
        without DataUri, for a rule that takes it from the event)."""
        payload = {
            **training.EXAMPLE_INPUT,
            "Algorithm": algorithm,
            "HyperParameters": training.HYPERPARAMETERS[algorithm],
            "NamePrefix": PREFIX,
            "DataUri": data_uri,
            "ArtifactsUri": ARTIFACTS,
            "TrainingImage": f"byoc-{algorithm}:latest",
            "ProcessingImage": PROCESSING_IMAGE,
            "PollSeconds": 1,
            **self.training_overrides,
            **overrides,
        }
        if data_uri is None:
            del payload["DataUri"]
        return payload

    @staticmethod
    def scoring_input(**overrides: Any) -> dict[str, Any]:
        """The scoring rule's fixed input (the event adds Bucket and Key)."""
        fixed = {k: v for k, v in scoring.EXAMPLE_INPUT.items() if k not in ("Bucket", "Key")}
        return {**fixed, "NamePrefix": PREFIX, "ArtifactsUri": ARTIFACTS, "ProcessingImage": PROCESSING_IMAGE,
                **overrides}  # fmt: skip

    def monitoring_input(self, retrain_on: str | None, **overrides: Any) -> dict[str, Any]:
        """The schedule's input; ``retrain_on``: a training data URI to retrain both algorithms on when drift
        is found (None: no retraining)."""
        retrain = {
            "Enabled": retrain_on is not None,
            "Inputs": [self.training_input(a, retrain_on) for a in ALGORITHMS] if retrain_on else [],
        }
        return {**monitoring.EXAMPLE_INPUT, "NamePrefix": PREFIX, "ArtifactsUri": ARTIFACTS,
                "ProcessingImage": PROCESSING_IMAGE, "Retrain": retrain, **overrides}  # fmt: skip

    # -- running -----------------------------------------------------------------------------------------------
    def execute(
        self, machine: str, payload: dict[str, Any], name: str, on_event: Callable[[str], None] | None = None
    ) -> Execution:
        """Start an execution and follow it to its end, reporting each state as it is entered and left."""
        arn = self.client("stepfunctions").start_execution(
            stateMachineArn=self.machines[machine], name=name, input=json.dumps(payload)
        )["executionArn"]
        return self.follow(arn, on_event)

    def follow(self, arn: str, on_event: Callable[[str], None] | None = None) -> Execution:
        """Follow a started execution to its end; its SNS messages are the ones published meanwhile."""
        sfn = self.client("stepfunctions")
        t0 = time.perf_counter()
        seen = 0
        runs: list[StateRun] = []
        open_runs: dict[str, StateRun] = {}
        deadline = time.monotonic() + EXECUTION_TIMEOUT_S
        while True:
            described = sfn.describe_execution(executionArn=arn)
            history = sfn.get_execution_history(executionArn=arn, maxResults=1000)["events"]
            for event in history[seen:]:
                self._follow(event, runs, open_runs, on_event)
            seen = len(history)
            if described["status"] in TERMINAL:
                break
            if time.monotonic() > deadline:
                sfn.stop_execution(executionArn=arn, error="LocalTimeout", cause="local execution took too long")
                raise TimeoutError(f"execution {described['name']} did not end within {EXECUTION_TIMEOUT_S} s")
            time.sleep(0.2)
        output = described.get("output")
        return Execution(
            name=described["name"],
            status=described["status"],
            output=json.loads(output) if output else None,
            error=described.get("error"),
            cause=described.get("cause"),
            states=runs,
            messages=self.notifications(),
            seconds=time.perf_counter() - t0,
        )

    @staticmethod
    def _follow(event: dict, runs: list[StateRun], open_runs: dict[str, StateRun], on_event) -> None:
        kind = event["type"]
        if kind.endswith("StateEntered"):
            name = event["stateEnteredEventDetails"]["name"]
            run = StateRun(name, event["timestamp"])
            runs.append(run)
            open_runs[name] = run
            if on_event:
                on_event(f"-> {name}")
        elif kind.endswith("StateExited"):
            name = event["stateExitedEventDetails"]["name"]
            exited = open_runs.pop(name, None)
            if exited is not None:
                exited.exited = event["timestamp"]
                if on_event:
                    on_event(f"<- {name} ({exited.seconds:.1f} s)")
        elif kind in ("TaskFailed", "ExecutionFailed") and on_event:
            details = event.get("taskFailedEventDetails") or event.get("executionFailedEventDetails") or {}
            cause = " ".join(str(details.get("cause", "")).split())
            on_event(f"   {kind} {details.get('error', '')}: {cause[:300]}")

    def notifications(self) -> list[dict[str, str]]:
        """SNS messages published since the last call (each delivered once to the subscribed queue)."""
        sqs = self.client("sqs")
        out: list[dict[str, str]] = []
        while True:
            got = sqs.receive_message(QueueUrl=self._queue_url, MaxNumberOfMessages=10).get("Messages", [])
            if not got:
                return out
            for m in got:
                body = json.loads(m["Body"])
                out.append({"Subject": body.get("Subject", ""), "Message": body.get("Message", "")})
                sqs.delete_message(QueueUrl=self._queue_url, ReceiptHandle=m["ReceiptHandle"])

    def download(self, uri: str, dest: Path) -> list[Path]:
        """Every object under an S3 prefix into ``dest``, keeping the layout below the prefix."""
        bucket, _, prefix = uri.removeprefix("s3://").partition("/")
        prefix = prefix.rstrip("/") + "/"
        s3, out = self.client("s3"), []
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                target = dest / obj["Key"][len(prefix) :]
                target.parent.mkdir(parents=True, exist_ok=True)
                s3.download_file(bucket, obj["Key"], str(target))
                out.append(target)
        return out

    def extract(self, uri: str, dest: Path) -> Path:
        """A model archive (model.tar.gz) from S3, unpacked into ``dest`` (no links, nothing outside it)."""
        bucket, _, key = uri.removeprefix("s3://").partition("/")
        dest.mkdir(parents=True, exist_ok=True)
        archive = dest.parent / "model.tar.gz"
        self.client("s3").download_file(bucket, key, str(archive))
        with tarfile.open(archive, "r:gz") as tar:
            tar.extractall(dest, filter="data")
        return dest

    def parameter(self, name: str) -> str | None:
        try:
            return self.client("ssm").get_parameter(Name=name)["Parameter"]["Value"]
        except self.client("ssm").exceptions.ParameterNotFound:
            return None


@contextlib.contextmanager
def _env(key: str, value: str) -> Iterator[None]:
    old = os.environ.get(key)
    os.environ[key] = value
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = old
