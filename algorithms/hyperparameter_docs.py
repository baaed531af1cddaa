"""`python -m algorithms.hyperparameter_docs ALGORITHM`: the algorithm's hyperparameters as a Markdown table.

Generated from the declarations, so the README's tables cannot drift from what training validates
(tests/test_readme.py checks them).
"""

from __future__ import annotations

import sys

from algorithms import registry
from algorithms.train import hyperparameter_spec
from core.errors import ConfigurationError

HEADER = "| name | type | default | allowed | tuning range | description |\n|---|---|---|---|---|---|"


def table(algorithm: str) -> str:
    spec = hyperparameter_spec(registry.get(algorithm))
    rows = [HEADER]
    for r in spec.as_table():
        default = "" if r["default"] is None else str(r["default"]).lower() if r["type"] == "boolean" else r["default"]
        rows.append(
            f"| `{r['name']}` | {r['type']} | {default} | {r['allowed']} | {r['tuning']} | {r['description']} |"
        )
    rules = spec.rules_text()
    if rules:
        rows += ["", "Rules (a value that would be ignored is refused; the default always passes):", ""]
        rows += [f"- {rule}" for rule in rules]
    return "\n".join(rows)


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(f"usage: python -m algorithms.hyperparameter_docs {{{','.join(registry.NAMES)}}}", file=sys.stderr)
        return 2
    try:
        print(table(argv[0]))
    except ConfigurationError as e:
        print(f"hyperparameter_docs: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
