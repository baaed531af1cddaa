"""The state machines this package defines, and their checked-in ASL files (``pipelines/definitions/*.asl.json``).

The files are what a deployment uses (the template's DefinitionUri) and what the local execution runs; they are
generated from the builders here, and a test regenerates them and compares bytes.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pipelines import monitoring, scoring, training

FOLDER = Path(__file__).resolve().parent / "definitions"
# Each module builds one state machine: definition(), SUBSTITUTIONS, EXAMPLE_INPUT, NOTIFY_FAILURE.
MODULES = {"training": training, "scoring": scoring, "monitoring": monitoring}
BUILDERS: dict[str, Callable[[], dict[str, Any]]] = {name: m.definition for name, m in MODULES.items()}


def path(name: str) -> Path:
    return FOLDER / f"{name}.asl.json"


def render(name: str) -> str:
    return json.dumps(BUILDERS[name](), indent=2, ensure_ascii=False) + "\n"


def load(name: str) -> dict[str, Any]:
    """The checked-in definition (what is deployed and run), not a fresh build."""
    return json.loads(path(name).read_text())


def write_all() -> list[Path]:
    FOLDER.mkdir(exist_ok=True)
    written = []
    for name in BUILDERS:
        path(name).write_text(render(name))
        written.append(path(name))
    return written


def substitute(definition: str, values: dict[str, str]) -> str:
    """Apply DefinitionSubstitutions as CloudFormation does (``${Name}`` -> value); unknown names are an error."""
    out = definition
    for key, value in values.items():
        out = out.replace("${" + key + "}", value)
    left = sorted({part.split("}", 1)[0] for part in out.split("${")[1:]})
    if left:
        raise KeyError(f"no value for DefinitionSubstitutions {', '.join(left)}")
    return out
