"""The README's generated sections match the code they document."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from algorithms import hyperparameter_docs, registry

README = Path(__file__).resolve().parent.parent / "README.md"


@pytest.mark.parametrize("algorithm", registry.NAMES)
def test_hyperparameter_table_is_the_declared_one(algorithm):
    text = README.read_text()
    m = re.search(rf"<!-- hyperparameters:{algorithm} -->\n(.*?)\n<!-- /hyperparameters:{algorithm} -->", text, re.S)
    assert m, f"README has no hyperparameters:{algorithm} section"
    assert m.group(1) == hyperparameter_docs.table(algorithm), (
        f"README table for {algorithm} is stale: regenerate with scripts/readme_tables.py"
    )


def test_readme_has_exactly_the_two_newcomer_commands():
    block = re.search(r"## Two commands\n.*?```bash\n(.*?)```", README.read_text(), re.S)
    assert block and [line.split("#")[0].strip() for line in block.group(1).strip().splitlines()] == [
        "make demo",
        "make test",
    ]
