"""Regenerate the README's hyperparameter tables from the declarations: .venv/bin/python scripts/readme_tables.py"""

import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from algorithms import hyperparameter_docs, registry

readme = Path(__file__).resolve().parent.parent / "README.md"
text = readme.read_text()
for name in registry.NAMES:
    pattern = rf"(<!-- hyperparameters:{name} -->\n).*?(\n<!-- /hyperparameters:{name} -->)"
    text = re.sub(pattern, lambda m, n=name: m.group(1) + hyperparameter_docs.table(n) + m.group(2), text, flags=re.S)
readme.write_text(text)
