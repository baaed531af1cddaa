"""The training state machine as code: the checked-in file is what the builder writes, every request it can send
fits botocore's service models (and a misspelled one is caught), its shape follows the house rules, and the
README's diagram is the one generated from it."""

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
        if state["Type"] == "Parallel":
            for branch in state["Branches"]:
                yield from _tasks(branch["States"], f"{prefix}{name}/")
        elif state["Type"] == "Task":
            yield f"{prefix}{name}", state


def test_checked_in_definition_is_what_the_builder_writes():
    for name in definitions.BUILDERS:
        assert definitions.path(name).read_text() == definitions.render(name), "run python -m pipelines build"


def test_every_request_fits_botocores_models():
    assert requests.check(definitions.load("training")) == []


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


def test_every_task_retries_transient_errors_and_catches():
    for where, state in _tasks(definitions.load("training")["States"]):
        assert state["Retry"], where
        assert all(r["MaxAttempts"] >= 1 for r in state["Retry"]), where
        if "/" in where:  # inside a Parallel branch: the Parallel's Catch notifies
            continue
        assert any("States.ALL" in c["ErrorEquals"] for c in state["Catch"]), where


def test_the_parallel_state_catches_its_branches():
    state = definitions.load("training")["States"][training.BASELINES]
    assert state["Catch"][0]["ErrorEquals"] == ["States.ALL"]
    assert state["Catch"][0]["Next"] == training.NOTIFY_FAILURE


def test_transitions_name_existing_states_and_every_state_is_reachable():
    doc = definitions.load("training")

    def check(machine: dict) -> None:
        states = machine["States"]
        targets = {machine["StartAt"]}
        for state in states.values():
            targets |= {state.get("Next"), state.get("Default")} - {None}
            targets |= {c["Next"] for c in state.get("Choices", []) + state.get("Catch", [])}
            for branch in state.get("Branches", []):
                check(branch)
        assert targets <= set(states), targets - set(states)
        assert set(states) <= targets, f"unreachable: {set(states) - targets}"

    check(doc)


def test_substitutions_are_exactly_the_declared_ones():
    text = definitions.path("training").read_text()
    assert set(re.findall(r"\$\{(\w+)\}", text)) == set(training.SUBSTITUTIONS)
    with pytest.raises(KeyError, match="SageMakerRoleArn"):
        definitions.substitute(text, {k: "x" for k in training.SUBSTITUTIONS if k != "SageMakerRoleArn"})


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
        sources += [{k: v for k, v in c.items() if k != "Next"} for c in state.get("Choices", [])]
        for text in strings(sources):
            found |= set(re.findall(r"(?<![$])\$\.([A-Za-z]+)", text))
        for branch in state.get("Branches", []):
            found |= _input_paths(branch["States"])
    return found


def test_the_example_input_fills_every_input_path():
    """Each ``$.Field`` the definition reads from its input is a field of the documented example input."""
    derived = {"Names", "Splits", "StoppingCondition", "Training", "Evaluation", "Comparison",
               "Existing", "DescribeError", "Endpoint", "EndpointFailure", "Deployment", "Error"}  # fmt: skip
    read = _input_paths(definitions.load("training")["States"]) - derived
    assert read == set(training.EXAMPLE_INPUT), read ^ set(training.EXAMPLE_INPUT)


def test_readme_diagram_is_generated_from_the_definition():
    readme = (REPO / "README.md").read_text()
    block = re.search(r"<!-- diagram:training -->\n```mermaid\n(.*?)```\n<!-- /diagram:training -->", readme, re.S)
    assert block, "README has no generated training diagram"
    assert block.group(1) == diagram.mermaid(definitions.load("training"), training.NOTIFY_FAILURE)


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
