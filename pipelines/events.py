"""What starts the pipelines: EventBridge rules, as data the template and the local run share.

- new training data (S3 ``Object Created`` under ``data/training/``) starts the training state machine, once per
  algorithm, with the object as ``DataUri``;
- a new file under ``data/scoring/`` starts the scoring state machine with its bucket and key;
- a schedule starts the monitoring state machine.

The bucket must send its events to EventBridge (``NotificationConfiguration: EventBridgeConfiguration``). Each
rule's input transformer turns the event into the machine's input: ``<bucket>`` and ``<key>`` from the event, the
rest (images, instance types, ...) fixed by the deployment. A test checks the template's rules against these.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

TRAINING_PREFIX = "data/training/"
SCORING_PREFIX = "data/scoring/"
SCHEDULE = "rate(1 hour)"
PATHS = {"bucket": "$.detail.bucket.name", "key": "$.detail.object.key"}


@dataclass(frozen=True)
class Rule:
    name: str
    machine: str  # the state machine it starts
    pattern: dict[str, Any] | None = None  # an event pattern, or None for a schedule
    schedule: str | None = None
    input_paths: dict[str, str] = field(default_factory=dict)
    input_template: str = ""  # EventBridge's template: "<bucket>" is replaced by the event's value
    input: dict[str, Any] | None = None  # a schedule's constant input


def object_created(bucket: str, prefix: str) -> dict[str, Any]:
    return {
        "source": ["aws.s3"],
        "detail-type": ["Object Created"],
        "detail": {"bucket": {"name": [bucket]}, "object": {"key": [{"prefix": prefix}]}},
    }


def _template(fixed: dict[str, Any], from_event: dict[str, str]) -> str:
    """A JSON input template: ``fixed`` values as they are, ``from_event`` fields as ``"<placeholder>"`` strings
    (EventBridge replaces a placeholder inside quotes with the event's string)."""
    doc = {**fixed, **{k: f"__{v}__" for k, v in from_event.items()}}
    text = json.dumps(doc, separators=(",", ":"))
    for v in from_event.values():
        text = text.replace(f"__{v}__", v)
    return text


def rules(bucket: str, training_inputs: dict[str, dict[str, Any]], scoring_input: dict[str, Any],
          monitoring_input: dict[str, Any]) -> list[Rule]:  # fmt: skip
    """The deployment's rules. ``training_inputs``: per algorithm, the training input without ``DataUri``;
    ``scoring_input`` without ``Bucket``/``Key``; ``monitoring_input`` complete."""
    out = [
        Rule(
            f"new-training-data-{algorithm}",
            "training",
            object_created(bucket, TRAINING_PREFIX),
            input_paths=PATHS,
            input_template=_template(fixed, {"DataUri": "s3://<bucket>/<key>"}),
        )
        for algorithm, fixed in training_inputs.items()
    ]
    out.append(
        Rule(
            "new-scoring-data",
            "scoring",
            object_created(bucket, SCORING_PREFIX),
            input_paths=PATHS,
            input_template=_template(scoring_input, {"Bucket": "<bucket>", "Key": "<key>"}),
        )
    )
    out.append(Rule("monitoring-schedule", "monitoring", schedule=SCHEDULE, input=monitoring_input))
    return out
