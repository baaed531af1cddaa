"""pipelines/template.yaml's three state machines against the definitions and pipelines/events.py: each machine
deploys its checked-in definition with exactly its module's DefinitionSubstitutions, each substituted ARN is a
resource of the right type, each role allows what its definition calls (and the scoring and monitoring roles
nothing more), and the EventBridge rules are the ones ``events.rules()`` describes, their inputs complete
execution inputs. Static: the template is decoded, not deployed."""

from __future__ import annotations

import fnmatch
import importlib
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from pipelines import definitions, events, monitoring, requests, scoring, training
from tests.cfn_template import PIPELINES, sub

MACHINES = {
    "training": "TrainingStateMachine",
    "scoring": "ScoringStateMachine",
    "monitoring": "MonitoringStateMachine",
}
BUCKET = "cars-artifacts-123456789012-eu-west-1"
# what a deployment gives the parameters without defaults, and the pseudo parameters
GIVEN = {
    "TrainingImageXgboost": "123456789012.dkr.ecr.eu-west-1.amazonaws.com/byoc-xgboost@sha256:" + "a" * 64,
    "TrainingImageLinear": "123456789012.dkr.ecr.eu-west-1.amazonaws.com/byoc-linear@sha256:" + "b" * 64,
    "ProcessingImage": "123456789012.dkr.ecr.eu-west-1.amazonaws.com/byoc-monitor@sha256:" + "c" * 64,
    "ArtifactBucket": BUCKET,
}
ARTIFACTS = f"s3://{BUCKET}/pipelines"


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def fill(template: dict[str, Any], text: str, extra: dict[str, str] | None = None) -> str:
    """A ``!Sub`` string with the parameters at their defaults (GIVEN where there is none)."""
    values = {**GIVEN, **(extra or {})}
    for name, parameter in template["Parameters"].items():
        if "Default" in parameter:
            values.setdefault(name, str(parameter["Default"]))

    def one(match: re.Match) -> str:
        assert match.group(1) in values, f"no value for ${{{match.group(1)}}}"
        return values[match.group(1)]

    return re.sub(r"\$\{([\w:.]+)\}", one, text)


def statements(resources, role: str) -> list[dict[str, Any]]:
    assert resources[role]["Type"] == "AWS::IAM::Role"
    out = [s for p in resources[role]["Properties"]["Policies"] for s in p["PolicyDocument"]["Statement"]]
    assert all(s["Effect"] == "Allow" for s in out)
    return out


def allowed(resources, role: str) -> dict[str, list[Any]]:
    """Action -> every Resource the role allows it on (as written in the template)."""
    out: dict[str, list[Any]] = {}
    for s in statements(resources, role):
        for action in as_list(s["Action"]):
            out.setdefault(action, []).extend(as_list(s["Resource"]))
    return out


def role_of(resources, logical_id: str) -> str:
    role = resources[logical_id]["Properties"]["Role"]
    assert set(role) == {"Fn::GetAtt"} and role["Fn::GetAtt"][1] == "Arn", role
    return role["Fn::GetAtt"][0]


def tasks(states: dict[str, Any]):
    """(Resource, Parameters) of every Task, inside Map and Parallel states too."""
    for state in states.values():
        if state["Type"] == "Task":
            yield state["Resource"], state.get("Parameters", {})
        for inner in [state.get("ItemProcessor") or state.get("Iterator"), *state.get("Branches", [])]:
            if inner:
                yield from tasks(inner["States"])


def machine_name(resources, name: str) -> str:
    return sub(resources[MACHINES[name]]["Properties"]["Name"])


def arn(service: str, resource: str) -> str:
    return f"arn:${{AWS::Partition}}:{service}:${{AWS::Region}}:${{AWS::AccountId}}:{resource}"


# -- the state machines and their substitutions ----------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(MACHINES))
def test_machine_deploys_its_definition_with_exactly_its_substitutions(resources, name):
    props = resources[MACHINES[name]]["Properties"]
    assert resources[MACHINES[name]]["Type"] == "AWS::Serverless::StateMachine"
    assert (PIPELINES / props["DefinitionUri"]).resolve() == definitions.path(name)
    assert definitions.path(name).is_file()
    substitutions = props["DefinitionSubstitutions"]
    assert set(substitutions) == set(definitions.MODULES[name].SUBSTITUTIONS)
    # and the checked-in definition uses exactly those (CloudFormation would leave any other ${...} in place)
    definitions.substitute(definitions.path(name).read_text(), {k: "x" for k in substitutions})
    assert machine_name(resources, name) == f"${{NamePrefix}}-{name}"


def test_no_two_resources_are_the_same_substitution(resources):
    """The machines' shared names resolve to the same resources (one topic, one SageMaker role)."""
    for key in ("NotificationTopicArn", "SageMakerRoleArn"):
        values = {json.dumps(resources[m]["Properties"]["DefinitionSubstitutions"][key]) for m in MACHINES.values()}
        assert len(values) == 1, (key, values)


@pytest.mark.parametrize("name", sorted(MACHINES))
def test_each_substitution_resolves_to_a_resource_of_its_kind(resources, name):
    for key, value in resources[MACHINES[name]]["Properties"]["DefinitionSubstitutions"].items():
        if key.endswith("FunctionArn"):
            assert value["Fn::GetAtt"][1] == "Arn", value
            target = resources[value["Fn::GetAtt"][0]]
            assert target["Type"] == "AWS::Serverless::Function", key
        elif key == "NotificationTopicArn":
            assert resources[value["Ref"]]["Type"] == "AWS::SNS::Topic"
        elif key == "SageMakerRoleArn":
            role = resources[value["Fn::GetAtt"][0]]
            assert value["Fn::GetAtt"][1] == "Arn" and role["Type"] == "AWS::IAM::Role"
            trust = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
            assert [s["Principal"] for s in trust] == [{"Service": "sagemaker.amazonaws.com"}]
        elif key == "TrainingStateMachineArn":
            assert value == {"Ref": MACHINES["training"]}  # a state machine's Ref is its ARN
        else:
            pytest.fail(f"no check for substitution {key}")


# -- the Lambdas -----------------------------------------------------------------------------------------------------
FUNCTIONS = {
    "QueryMetricsFunction": "pipelines.lambdas.query_metrics",
    "CompareBestFunction": "pipelines.lambdas.compare_best",
    "SingleRunFunction": "pipelines.lambdas.single_run",
    "FindNewDataFunction": "pipelines.lambdas.find_new_data",
    "EvaluateDriftFunction": "monitoring.evaluate",
}


@pytest.mark.parametrize("logical_id", sorted(FUNCTIONS))
def test_function_handler_is_the_modules(resources, logical_id):
    props = resources[logical_id]["Properties"]
    module_name, _, attr = props["Handler"].partition(".")
    module = importlib.import_module(FUNCTIONS[logical_id])
    assert (PIPELINES / props["CodeUri"] / f"{module_name}.py").samefile(module.__file__)
    assert callable(getattr(module, attr))
    assert props["Runtime"] == "python3.11"
    assert resources[props["LoggingConfig"]["LogGroup"]["Ref"]]["Type"] == "AWS::Logs::LogGroup"
    assert sub(props["FunctionName"]).startswith("${NamePrefix}-")


def test_every_substituted_function_is_a_checked_one(resources):
    used = {
        v["Fn::GetAtt"][0]
        for m in MACHINES.values()
        for k, v in resources[m]["Properties"]["DefinitionSubstitutions"].items()
        if k.endswith("FunctionArn")
    }
    assert used == set(FUNCTIONS)


def test_evaluate_drift_package_is_evaluate_py_alone(resources, tmp_path):
    """sam build's makefile method runs `make build-<LogicalId>` in CodeUri with ARTIFACTS_DIR set: do the same."""
    from monitoring import evaluate

    function = resources["EvaluateDriftFunction"]
    assert function["Metadata"]["BuildMethod"] == "makefile"
    if not shutil.which("make"):
        pytest.skip("make not installed")
    source = tmp_path / "source"
    shutil.copytree(PIPELINES / function["Properties"]["CodeUri"], source, ignore=shutil.ignore_patterns("__pycache__"))
    artifacts = tmp_path / "artifacts"
    artifacts.mkdir()
    subprocess.run(["make", "-C", str(source), f"ARTIFACTS_DIR={artifacts}", "build-EvaluateDriftFunction"], check=True)
    assert [p.name for p in artifacts.iterdir()] == ["evaluate.py"]
    assert (artifacts / "evaluate.py").read_bytes() == Path(evaluate.__file__).read_bytes()
    # alone it imports: the standard library only (boto3 lazily, from the runtime)
    imports = re.findall(r"^(?:from|import) (\w+)", (artifacts / "evaluate.py").read_text(), re.M)
    assert set(imports) <= {"__future__", "json", "os", "re", "datetime", "pathlib", "typing"}


def test_single_run_lists_and_describes_only_the_training_machine(resources):
    by_action = allowed(resources, role_of(resources, "SingleRunFunction"))
    name = machine_name(resources, "training")
    assert [sub(r) for r in by_action.pop("states:ListExecutions")] == [arn("states", f"stateMachine:{name}")]
    assert [sub(r) for r in by_action.pop("states:DescribeExecution")] == [arn("states", f"execution:{name}:*")]
    assert set(by_action) == {"logs:CreateLogStream", "logs:PutLogEvents"}


def test_find_new_data_reads_the_records_and_bookmark_and_lists_the_bucket(resources):
    by_action = allowed(resources, role_of(resources, "FindNewDataFunction"))
    assert sorted(sub(r) for r in by_action.pop("ssm:GetParameter")) == sorted(
        arn("ssm", f"parameter/${{NamePrefix}}/{p}") for p in ("*/deployment", "monitoring/bookmark")
    )
    assert by_action.pop("s3:ListBucket") == [{"Fn::GetAtt": ["ArtifactBucket", "Arn"]}]
    assert set(by_action) == {"logs:CreateLogStream", "logs:PutLogEvents"}


def test_evaluate_drift_reaches_the_keys_the_monitoring_machine_gives_it(template, resources):
    """The output and state URIs of the "Evaluate drift" payload, with the schedule's ArtifactsUri, fall under the
    role's S3 resources; it publishes to the topic only."""
    by_action = allowed(resources, role_of(resources, "EvaluateDriftFunction"))
    bucket_arn = f"arn:aws:s3:::{BUCKET}"

    def patterns(action: str) -> list[str]:
        return [sub(r).replace("${ArtifactBucket.Arn}", bucket_arn) for r in by_action.pop(action)]

    artifacts = schedule_input(template, resources)["ArtifactsUri"]
    assert artifacts == ARTIFACTS
    prefix = artifacts.removeprefix(f"s3://{BUCKET}/")
    state_key = f"{prefix}/monitoring/state/realtime-xgboost.json"  # the payload's state_uri, filled in
    files = ("constraint_violations.json", "model_quality/constraint_violations.json", "monitoring_report.json")
    output_keys = [f"{prefix}/monitoring/run-1/realtime-xgboost/{f}" for f in files]
    reads, writes = patterns("s3:GetObject"), patterns("s3:PutObject")
    for key in [state_key, *output_keys]:
        assert any(fnmatch.fnmatchcase(f"{bucket_arn}/{key}", p) for p in reads), key
    assert any(fnmatch.fnmatchcase(f"{bucket_arn}/{state_key}", p) for p in writes)
    assert not any(fnmatch.fnmatchcase(f"{bucket_arn}/{k}", p) for k in output_keys for p in writes)
    assert by_action.pop("sns:Publish") == [{"Ref": "NotificationTopic"}]
    assert by_action.pop("s3:ListBucket") == [{"Fn::GetAtt": ["ArtifactBucket", "Arn"]}]
    assert set(by_action) == {"logs:CreateLogStream", "logs:PutLogEvents"}
    # the payload builds the state URI as checked above
    payload = next(p["Payload"] for r, p in tasks(definitions.load("monitoring")["States"])
                   if r == "arn:aws:states:::lambda:invoke" and p["FunctionName"] == monitoring.EVALUATE)  # fmt: skip
    assert payload["state_uri.$"].startswith("States.Format('{}/monitoring/state/{}.json', $.ArtifactsUri")


# -- what each machine's role allows -------------------------------------------------------------------------------
IAM_PREFIX = {"stepfunctions": "states"}
IAM_ACTION = {("lambda", "Invoke"): "lambda:InvokeFunction"}
SYNC_RULES = {
    "createProcessingJob": "StepFunctionsGetEventsForSageMakerProcessingJobsRule",
    "createTrainingJob": "StepFunctionsGetEventsForSageMakerTrainingJobsRule",
    "createTransformJob": "StepFunctionsGetEventsForSageMakerTransformJobsRule",
}
# what every state machine role has besides its definition's calls
LOG_DELIVERY = {
    "logs:CreateLogDelivery",
    "logs:GetLogDelivery",
    "logs:UpdateLogDelivery",
    "logs:DeleteLogDelivery",
    "logs:ListLogDeliveries",
    "logs:PutResourcePolicy",
    "logs:DescribeResourcePolicies",
    "logs:DescribeLogGroups",
}


def needed(name: str) -> tuple[set[str], set[str]]:
    """(IAM actions, managed .sync rules) the definition's Tasks need."""
    actions, rules = set(), set()
    definition = definitions.load(name)
    for r in requests.requests(definition):
        actions.add(IAM_ACTION.get((r.service, r.operation), f"{IAM_PREFIX.get(r.service, r.service)}:{r.operation}"))
    for resource, _ in tasks(definition["States"]):
        if resource.endswith(".sync"):
            action = resource.removeprefix("arn:aws:states:::sagemaker:").removesuffix(".sync")
            job = action.removeprefix("create")
            actions |= {f"sagemaker:Describe{job}", f"sagemaker:Stop{job}", "sagemaker:ListTags"}
            actions |= {"events:PutTargets", "events:PutRule", "events:DescribeRule"}
            rules.add(SYNC_RULES[action])
    if any("RoleArn" in p for _, p in tasks(definition["States"])):
        actions.add("iam:PassRole")
    return actions, rules


@pytest.mark.parametrize("name", sorted(MACHINES))
def test_role_allows_what_the_definition_calls(resources, name):
    by_action = allowed(resources, role_of(resources, MACHINES[name]))
    actions, rules = needed(name)
    assert actions <= set(by_action), actions - set(by_action)
    assert {sub(r).rsplit("/", 1)[1] for r in by_action["events:PutRule"]} >= rules
    # every Lambda the definition invokes, by the substituted ARN
    substitutions = resources[MACHINES[name]]["Properties"]["DefinitionSubstitutions"]
    for resource, params in tasks(definitions.load(name)["States"]):
        if resource == "arn:aws:states:::lambda:invoke":
            key = params["FunctionName"].removeprefix("${").removesuffix("}")
            assert substitutions[key] in by_action["lambda:InvokeFunction"], key


@pytest.mark.parametrize("name", ["scoring", "monitoring"])
def test_scoring_and_monitoring_roles_allow_nothing_else(resources, name):
    by_action = allowed(resources, role_of(resources, MACHINES[name]))
    actions, rules = needed(name)
    assert set(by_action) - LOG_DELIVERY == actions
    assert {sub(r).rsplit("/", 1)[1] for r in by_action["events:PutRule"]} == rules
    prefix = arn("sagemaker", "")
    for action in [a for a in actions if a.startswith("sagemaker:") and a != "sagemaker:ListTags"]:
        for r in by_action[action]:
            assert sub(r).startswith(prefix) and sub(r).endswith("/${NamePrefix}-*"), (action, r)


def test_ssm_access_is_the_parameters_the_definitions_name(resources):
    scoring_role = allowed(resources, role_of(resources, "ScoringStateMachine"))
    assert sorted(sub(r) for r in scoring_role["ssm:GetParameters"]) == sorted(
        arn("ssm", f"parameter/${{NamePrefix}}/{a}/deployment") for a in ("linear", "xgboost")
    )
    names = json.dumps(definitions.load("scoring"))
    assert "/{}/xgboost/deployment" in names and "/{}/linear/deployment" in names
    monitoring_role = allowed(resources, role_of(resources, "MonitoringStateMachine"))
    assert [sub(r) for r in monitoring_role["ssm:PutParameter"]] == [
        arn("ssm", "parameter/${NamePrefix}/monitoring/bookmark")
    ]
    assert "States.Format('/{}/monitoring/bookmark', $.NamePrefix)" in json.dumps(definitions.load("monitoring"))


def test_start_execution_only_where_needed(resources):
    """Only the monitoring machine starts another (the training machine), and the rules start exactly the three."""
    for name, logical_id in MACHINES.items():
        by_action = allowed(resources, role_of(resources, logical_id))
        starts = [a for a in by_action if a.startswith("states:")]
        if name == "monitoring":
            assert starts == ["states:StartExecution"]
            assert by_action["states:StartExecution"] == [{"Ref": MACHINES["training"]}]
        else:
            assert starts == [], name
    for logical_id, resource in resources.items():
        if resource["Type"] != "AWS::IAM::Role" or logical_id in ("PipelineEventsRole", "MonitoringStateMachineRole"):
            continue
        assert "states:StartExecution" not in allowed(resources, logical_id), logical_id
    events_role = allowed(resources, "PipelineEventsRole")
    assert list(events_role) == ["states:StartExecution"]
    assert sorted(r["Ref"] for r in events_role["states:StartExecution"]) == sorted(MACHINES.values())


def test_pass_role_is_only_the_sagemaker_role_to_sagemaker(resources):
    found = 0
    for logical_id, resource in resources.items():
        if resource["Type"] != "AWS::IAM::Role":
            continue
        for s in statements(resources, logical_id):
            assert "*" not in as_list(s["Action"]) and "iam:*" not in as_list(s["Action"])
            if "iam:PassRole" in as_list(s["Action"]):
                found += 1
                assert as_list(s["Action"]) == ["iam:PassRole"]
                assert as_list(s["Resource"]) == [{"Fn::GetAtt": ["SageMakerExecutionRole", "Arn"]}]
                assert s["Condition"] == {"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}}
    assert found == 3  # the three state machine roles


# -- the EventBridge rules -------------------------------------------------------------------------------------------
def expected_rules() -> dict[str, events.Rule]:
    """events.rules() with the template's bucket reference (the inputs are checked separately)."""
    bucket = {"Ref": "ArtifactBucket"}
    trainings: dict[str, dict[str, str]] = {a: {} for a in training.HYPERPARAMETERS}
    return {r.name: r for r in events.rules(bucket, trainings, {}, {})}  # type: ignore[arg-type]


def template_rules(resources) -> dict[str, tuple[str, dict[str, Any]]]:
    """events.py name -> (logical id, properties) of the template's rules, named ${NamePrefix}-<name>."""
    out = {}
    for logical_id, resource in resources.items():
        if resource["Type"] == "AWS::Events::Rule":
            name = sub(resource["Properties"]["Name"]).removeprefix("${NamePrefix}-")
            assert name not in out
            out[name] = (logical_id, resource["Properties"])
    return out


def target(props: dict[str, Any]) -> dict[str, Any]:
    assert len(props["Targets"]) == 1
    return props["Targets"][0]


def test_the_rules_are_events_rules(template, resources):
    rules, ours = expected_rules(), template_rules(resources)
    assert set(ours) == set(rules)
    for name, rule in rules.items():
        _, props = ours[name]
        assert props.get("State", "ENABLED") == "ENABLED"
        t = target(props)
        assert t["Arn"] == {"Ref": MACHINES[rule.machine]}, name
        assert t["RoleArn"] == {"Fn::GetAtt": ["PipelineEventsRole", "Arn"]}
        if rule.pattern is None:
            assert "EventPattern" not in props
            parameter = props["ScheduleExpression"]["Ref"]
            assert template["Parameters"][parameter]["Default"] == rule.schedule == events.SCHEDULE
            assert "Input" in t and "InputTransformer" not in t
        else:
            pattern = props["EventPattern"]
            assert pattern == rule.pattern, name
            assert pattern["source"] == ["aws.s3"] and pattern["detail-type"] == ["Object Created"]
            assert t["InputTransformer"]["InputPathsMap"] == rule.input_paths == events.PATHS


def test_the_bucket_sends_its_events_to_eventbridge(resources):
    config = resources["ArtifactBucket"]["Properties"]["NotificationConfiguration"]
    assert config["EventBridgeConfiguration"]["EventBridgeEnabled"] is True


def transformed(template, props: dict[str, Any], bucket: str, key: str) -> dict[str, Any]:
    """The execution input EventBridge makes of an object event: parameters at their defaults, then the
    placeholders (inside JSON strings) replaced by the event's values."""
    t = target(props)["InputTransformer"]
    text = fill(template, sub(t["InputTemplate"]))
    json.loads(text)  # a valid JSON document before the placeholders are replaced too
    for placeholder, value in {"bucket": bucket, "key": key}.items():
        assert placeholder in t["InputPathsMap"]
        text = text.replace(f"<{placeholder}>", value)
    assert not re.search(r"<\w+>", text)
    return json.loads(text)


def training_input(algorithm: str, data_uri: str) -> dict[str, Any]:
    """The training input the stack's defaults should give: EXAMPLE_INPUT with the stack's names."""
    return {
        **training.EXAMPLE_INPUT,
        "Algorithm": algorithm,
        "DataUri": data_uri,
        "ArtifactsUri": ARTIFACTS,
        "TrainingImage": GIVEN[f"TrainingImage{algorithm.capitalize()}"],
        "ProcessingImage": GIVEN["ProcessingImage"],
        "HyperParameters": training.HYPERPARAMETERS[algorithm],
    }


@pytest.mark.parametrize("algorithm", sorted(training.HYPERPARAMETERS))
def test_training_rule_input_is_a_whole_training_input(template, resources, algorithm):
    _, props = template_rules(resources)[f"new-training-data-{algorithm}"]
    got = transformed(template, props, BUCKET, "data/training/cars.csv")
    assert set(got) == set(training.EXAMPLE_INPUT)
    assert got == training_input(algorithm, f"s3://{BUCKET}/data/training/cars.csv")
    assert {k: type(v) for k, v in got.items()} == {k: type(v) for k, v in training.EXAMPLE_INPUT.items()}


def test_scoring_rule_input_is_a_whole_scoring_input(template, resources):
    _, props = template_rules(resources)["new-scoring-data"]
    got = transformed(template, props, BUCKET, "data/scoring/2024-01-01.csv")
    assert set(got) == set(scoring.EXAMPLE_INPUT)
    assert got == {
        **scoring.EXAMPLE_INPUT,
        "Bucket": BUCKET,
        "Key": "data/scoring/2024-01-01.csv",
        "ArtifactsUri": ARTIFACTS,
        "ProcessingImage": GIVEN["ProcessingImage"],
    }


def resolve_if(template, value: Any, overrides: dict[str, str]) -> str:
    """A ``!If [HasX, !Ref X, !Sub ...]`` of a parameter-is-not-empty condition, for the given parameter values."""
    condition, yes, no = value["Fn::If"]
    negated = template["Conditions"][condition]["Fn::Not"][0]["Fn::Equals"]
    parameter = negated[0]["Ref"]
    current = overrides.get(parameter, template["Parameters"][parameter]["Default"])
    if current != negated[1]:
        assert yes == {"Ref": parameter}
        return current
    return fill(template, sub(no))


def schedule_input(template, resources, **overrides: str) -> dict[str, Any]:
    _, props = template_rules(resources)["monitoring-schedule"]
    text, variables = target(props)["Input"]["Fn::Sub"]
    values = {k: resolve_if(template, v, overrides) for k, v in variables.items()}
    return json.loads(fill(template, text, {**values, **overrides}))


def test_schedule_input_is_a_whole_monitoring_input(template, resources):
    got = schedule_input(template, resources)
    assert set(got) == set(monitoring.EXAMPLE_INPUT)
    assert set(got["Retrain"]) == set(monitoring.EXAMPLE_INPUT["Retrain"])
    assert got["Retrain"]["Enabled"] is False  # the default: drift is reported, nothing retrains
    assert got == {
        **monitoring.EXAMPLE_INPUT,
        "ArtifactsUri": ARTIFACTS,
        "ProcessingImage": GIVEN["ProcessingImage"],
        "Retrain": got["Retrain"],
    }
    assert got["Algorithms"] == list(training.HYPERPARAMETERS)


def test_retraining_inputs_are_the_training_rules_inputs(template, resources):
    """Retrain.Inputs: one per algorithm, each the training rule's input with the training folder (or the
    RetrainDataUri parameter) as DataUri, so a drift-started run trains as a data-started one."""
    rules = template_rules(resources)
    default = schedule_input(template, resources)
    other = schedule_input(template, resources, RetrainDataUri="s3://elsewhere/data/", RetrainEnabled="true")
    assert other["Retrain"]["Enabled"] is True
    for got, data_uri in ((default, f"s3://{BUCKET}/data/training/"), (other, "s3://elsewhere/data/")):
        inputs = got["Retrain"]["Inputs"]
        assert [i["Algorithm"] for i in inputs] == list(training.HYPERPARAMETERS)
        for item in inputs:
            _, props = rules[f"new-training-data-{item['Algorithm']}"]
            from_rule = transformed(template, props, "b", "k")
            assert item == {**from_rule, "DataUri": data_uri}
            assert item == training_input(item["Algorithm"], data_uri)


def test_hyperparameter_defaults_are_the_modules(template):
    for algorithm, hyperparameters in training.HYPERPARAMETERS.items():
        default = template["Parameters"][f"HyperParameters{algorithm.capitalize()}"]["Default"]
        assert json.loads(default) == hyperparameters


def test_example_outputs_are_the_rules_inputs_on_the_training_folder(template, resources):
    rules = template_rules(resources)
    for algorithm in training.HYPERPARAMETERS:
        output = json.loads(fill(template, sub(template["Outputs"][f"ExampleInput{algorithm.capitalize()}"]["Value"])))
        _, props = rules[f"new-training-data-{algorithm}"]
        data_uri = f"s3://{BUCKET}/data/training/"
        assert output == {**transformed(template, props, "b", "k"), "DataUri": data_uri}


def test_outputs_name_the_new_machines_and_functions(template):
    outputs = template["Outputs"]
    assert outputs["ScoringStateMachineArn"]["Value"] == {"Ref": "ScoringStateMachine"}
    assert outputs["MonitoringStateMachineArn"]["Value"] == {"Ref": "MonitoringStateMachine"}
    for logical_id in FUNCTIONS:
        assert outputs[f"{logical_id}Arn"]["Value"] == {"Fn::GetAtt": [logical_id, "Arn"]}
