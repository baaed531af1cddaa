"""The state machines as code: each checked-in file is what its builder writes, every request it can send fits
botocore's service models (and a misspelled one is caught), its shape follows the house rules, and the README's
diagrams are the ones generated from them."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest

from pipelines import asl, definitions, diagram, requests, training

REPO = Path(__file__).resolve().parents[1]


def _tasks(states: dict, prefix: str = ""):
    for name, state in states.items():
        for inner in [*state.get("Branches", []), *([state["ItemProcessor"]] if "ItemProcessor" in state else [])]:
            yield from _tasks(inner["States"], f"{prefix}{name}/")
        if state["Type"] == "Task":
            yield f"{prefix}{name}", state


def test_checked_in_definition_is_what_the_builder_writes():
    for name in definitions.BUILDERS:
        assert definitions.path(name).read_text() == definitions.render(name), "run python -m pipelines build"


MACHINES = sorted(definitions.MODULES)
DERIVED = {  # what states write into a machine's data, as opposed to what its input must carry
    "training": {"Names", "Guard", "Splits", "StoppingCondition", "Training", "Evaluation", "Comparison", "Existing",
                 "DescribeError", "Endpoint", "EndpointFailure", "Deployment", "Error"},
    "scoring": {"Names", "Deployed", "Schema", "Prepared", "Scored", "Error"},
    "monitoring": {"Names", "Found", "Results", "Drift", "Retraining", "Error"},
}  # fmt: skip


@pytest.mark.parametrize("name", MACHINES)
def test_every_request_fits_botocores_models(name):
    assert requests.check(definitions.load(name)) == []


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ('"HyperParameters.$"', '"HyperParameter.$"', "unknown parameter 'HyperParameter'"),
        ('"TrainingInputMode": "File"', '"TrainingInputMode": "Files"', "'Files' is not one of"),
        ('"VolumeSizeInGB": 30', '"VolumeSizeInGB": "30"', "VolumeSizeInGB"),
        ('"EndpointConfigName.$": "$.Names.EndpointConfig",\n', "", "Missing required parameter"),
        ('"ScalableDimension": "sagemaker:variant:DesiredInstanceCount"', '"ScalableDim": "x"', "ScalableDim"),
    ],
)
def test_a_broken_request_is_named(old, new, expected):
    text = definitions.path("training").read_text()
    assert old in text
    problems = requests.check(json.loads(text.replace(old, new, 1)))
    assert problems, f"replacing {old!r} went unnoticed"
    assert any(expected in p for p in problems), problems
    assert all(p.startswith("state '") for p in problems)


@pytest.mark.parametrize("name", MACHINES)
def test_every_task_retries_transient_errors_and_catches(name):
    for where, state in _tasks(definitions.load(name)["States"]):
        assert state["Retry"], where
        assert all(r["MaxAttempts"] >= 1 for r in state["Retry"]), where
        if "/" in where:  # inside a Parallel branch or a Map iteration: that state's Catch notifies
            continue
        assert any("States.ALL" in c["ErrorEquals"] for c in state["Catch"]), where


def test_the_parallel_state_catches_its_branches():
    state = definitions.load("training")["States"][training.BASELINES]
    assert state["Catch"][0]["ErrorEquals"] == ["States.ALL"]
    assert state["Catch"][0]["Next"] == training.NOTIFY_FAILURE


@pytest.mark.parametrize("name", MACHINES)
def test_transitions_name_existing_states_and_every_state_is_reachable(name):
    doc = definitions.load(name)

    def check(machine: dict) -> None:
        states = machine["States"]
        targets = {machine["StartAt"]}
        for state in states.values():
            targets |= {state.get("Next"), state.get("Default")} - {None}
            targets |= {c["Next"] for c in state.get("Choices", []) + state.get("Catch", [])}
            for branch in [*state.get("Branches", []), state.get("ItemProcessor") or {"StartAt": "", "States": {}}]:
                if branch["States"]:
                    check(branch)
        assert targets <= set(states), targets - set(states)
        assert set(states) <= targets, f"unreachable: {set(states) - targets}"

    check(doc)


@pytest.mark.parametrize("name", MACHINES)
def test_substitutions_are_exactly_the_declared_ones(name):
    declared = definitions.MODULES[name].SUBSTITUTIONS
    text = definitions.path(name).read_text()
    assert set(re.findall(r"\$\{(\w+)\}", text)) == set(declared)
    with pytest.raises(KeyError, match="SageMakerRoleArn"):
        definitions.substitute(text, {k: "x" for k in declared if k != "SageMakerRoleArn"})


def test_the_metric_definitions_are_the_training_images_own():
    from algorithms import metrics

    train = definitions.load("training")["States"][training.TRAIN]
    assert train["Parameters"]["AlgorithmSpecification"]["MetricDefinitions"] == metrics.metric_definitions()


def _input_paths(states: dict) -> set[str]:
    """The top-level fields that states read from their input (not from a task's result)."""
    found: set[str] = set()

    def strings(value):
        if isinstance(value, dict):
            for v in value.values():
                yield from strings(v)
        elif isinstance(value, list):
            for v in value:
                yield from strings(v)
        elif isinstance(value, str):
            yield value

    for state in states.values():
        sources = [state.get("Parameters", {}), state.get("InputPath", ""), state.get("SecondsPath", "")]
        sources += [state.get("ItemSelector", {}), state.get("ItemsPath", "")]  # a Map's items: not its input
        sources += [{k: v for k, v in c.items() if k != "Next"} for c in state.get("Choices", [])]
        for text in strings(sources):
            found |= set(re.findall(r"(?<![$])\$\.([A-Za-z]+)", text))
        for branch in state.get("Branches", []):
            found |= _input_paths(branch["States"])
    return found


@pytest.mark.parametrize("name", MACHINES)
def test_the_example_input_fills_every_input_path(name):
    """Each ``$.Field`` the definition reads from its input is a field of the documented example input."""
    read = _input_paths(definitions.load(name)["States"]) - DERIVED[name]
    example = definitions.MODULES[name].EXAMPLE_INPUT
    assert read == set(example), read ^ set(example)


@pytest.mark.parametrize("name", MACHINES)
def test_readme_diagram_is_generated_from_the_definition(name):
    readme = (REPO / "README.md").read_text()
    block = re.search(rf"<!-- diagram:{name} -->\n```mermaid\n(.*?)```\n<!-- /diagram:{name} -->", readme, re.S)
    assert block, f"README has no generated {name} diagram"
    assert block.group(1) == diagram.mermaid(definitions.load(name), definitions.MODULES[name].NOTIFY_FAILURE)


def test_asl_builders_keep_retry_and_catch_on_tasks():
    state = asl.sagemaker("createModel", {}, on_error="X", next_state="Y")
    assert state["Resource"] == "arn:aws:states:::sagemaker:createModel"
    assert state["Catch"] == [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.Error", "Next": "X"}]
    sync = copy.deepcopy(asl.sagemaker("createTrainingJob", {}, sync=True, on_error="X"))
    assert sync["Resource"].endswith(".sync") and sync["End"] is True


def test_cli_check_and_diagram(capsys):
    from pipelines.__main__ import main

    assert main(["check"]) == 0
    assert "every request fits botocore's service models" in capsys.readouterr().out
    assert main(["diagram"]) == 0
    assert capsys.readouterr().out == diagram.mermaid(definitions.load("training"), training.NOTIFY_FAILURE)


def test_example_hyperparameters_are_valid_for_each_algorithm():
    from algorithms import registry

    for algorithm, values in training.HYPERPARAMETERS.items():
        assert all(isinstance(v, str) for v in values.values())
        registry.get(algorithm).hyperparameters.validate(values)
