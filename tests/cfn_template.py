"""pipelines/template.yaml decoded as CloudFormation reads it (cfn-lint's decoder, intrinsic functions as dicts),
for the template tests: fixtures ``template`` and ``resources``, and ``sub`` for a one-argument ``!Sub``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
PIPELINES = ROOT / "pipelines"


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    decode = pytest.importorskip("cfnlint.decode").decode
    template, errors = decode(str(PIPELINES / "template.yaml"))
    assert not errors
    return template


@pytest.fixture(scope="module")
def resources(template) -> dict[str, Any]:
    return template["Resources"]


def sub(value: Any) -> str:
    """The string of a ``!Sub "..."`` (the one-argument form)."""
    assert isinstance(value, dict) and set(value) == {"Fn::Sub"} and isinstance(value["Fn::Sub"], str), value
    return value["Fn::Sub"]
