"""A Mermaid flowchart of a definition, for the README (regenerated and compared by a test).

Tasks are boxes, Choices diamonds, Waits hexagons, the end states rounded. Every Task's generic Catch leads to the
same failure notification; those edges are left out (a note says so) so that the flow stays readable. Catches on
a specific error, and Choice rules, are labelled.
"""

from __future__ import annotations

import re
from typing import Any

_SHAPES = {
    "Task": ("[", "]"),
    "Choice": ("{", "}"),
    "Wait": ("{{", "}}"),
    "Pass": ("[/", "/]"),
    "Succeed": ("([", "])"),
    "Fail": ("([", "])"),
    "Parallel": ("[[", "]]"),
}


def _id(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9]", "_", name)


def _rule(choice: dict[str, Any]) -> str:
    for key, value in choice.items():
        if key in ("Variable", "Next"):
            continue
        if key in ("And", "Or"):
            return f" {key.lower()} ".join(_rule(c) for c in value)
        variable = choice.get("Variable", "").removeprefix("$.")
        target = str(value).removeprefix("$.") if key.endswith("Path") else value
        op = {
            "StringEquals": "=",
            "StringEqualsPath": "=",
            "BooleanEquals": "=",
            "NumericLessThanEqualsPath": "<=",
            "StringMatches": "matches",
            "IsPresent": "present:",
        }.get(key, key)
        return f"{variable} {op} {str(target).lower() if isinstance(target, bool) else target}"
    return "?"


def _label(text: str) -> str:
    return '"' + text.replace('"', "'") + '"'


def _states(states: dict[str, Any], failure: str, lines: list[str], indent: str) -> None:
    for name, state in states.items():
        kind = state["Type"]
        if kind in ("Parallel", "Map"):
            inner = state["Branches"] if kind == "Parallel" else [state["ItemProcessor"]]
            title = name if kind == "Parallel" else f"{name} (for each)"
            lines.append(f"{indent}subgraph {_id(name)}[{_label(title)}]")
            lines.append(f"{indent}  direction LR" if kind == "Parallel" else f"{indent}  direction TB")
            for branch in inner:
                _states(branch["States"], failure, lines, indent + "  ")
            lines.append(f"{indent}end")
        else:
            left, right = _SHAPES.get(kind, ("[", "]"))
            lines.append(f"{indent}{_id(name)}{left}{_label(name)}{right}")
    for name, state in states.items():
        if "Next" in state:
            lines.append(f"{indent}{_id(name)} --> {_id(state['Next'])}")
        for choice in state.get("Choices", []):
            lines.append(f"{indent}{_id(name)} -->|{_label(_rule(choice))}| {_id(choice['Next'])}")
        if "Default" in state:
            lines.append(f"{indent}{_id(name)} -->|otherwise| {_id(state['Default'])}")
        for c in state.get("Catch", []):
            if c["Next"] == failure and c["ErrorEquals"] == ["States.ALL"]:
                continue
            lines.append(f"{indent}{_id(name)} -.->|{_label(', '.join(c['ErrorEquals']))}| {_id(c['Next'])}")


def mermaid(definition: dict[str, Any], failure: str) -> str:
    """``failure``: the state every generic Catch leads to."""
    lines = ["flowchart TD"]
    _states(definition["States"], failure, lines, "  ")
    lines.append(f"  note[{_label(f'every Task: Retry on transient errors, Catch -> {failure}')}]")
    return "\n".join(lines) + "\n"
