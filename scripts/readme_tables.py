"""Regenerate the README's hyperparameter tables from the declarations: .venv/bin/python scripts/readme_tables.py"""

import functools
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from algorithms import hyperparameter_docs, registry

readme = Path(__file__).resolve().parent.parent / "README.md"
text = readme.read_text()


def with_table(table: str, m: re.Match[str]) -> str:
    return m.group(1) + table + m.group(2)


for name in registry.NAMES:
    pattern = rf"(<!-- hyperparameters:{name} -->\n).*?(\n<!-- /hyperparameters:{name} -->)"
    text = re.sub(pattern, functools.partial(with_table, hyperparameter_docs.table(name)), text, flags=re.S)
readme.write_text(text)
