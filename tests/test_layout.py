"""The house's import rules, read from the source (every import statement, top level or inside a function): the core
imports nothing of the repository, each role's package depends only on the core (and on what its role needs), and no
product package imports the main job, the test harness, the benchmarks or the tests."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("core", "algorithms", "serving", "processing", "monitoring", "analytics", "pipelines", "emulators",
            "cardata", "lifecycle", "harness", "benchmarks", "tests")  # fmt: skip
# What each product package may import of the repository, beyond itself. Serving loads models through the
# algorithm plug-ins; the monitor image's `tables` job is analytics; the capture proxy writes monitoring's format;
# the local AWS runs the emulators and the monitor's Lambda.
ALLOWED = {
    "core": set(),
    "algorithms": {"core"},
    "serving": {"core", "algorithms"},
    "processing": {"core"},
    "monitoring": {"core", "analytics"},
    "analytics": set(),
    "cardata": set(),
    "emulators": {"core", "monitoring"},
    "pipelines": {"core", "algorithms", "emulators", "monitoring", "serving", "processing", "analytics"},
}
NEVER = {"lifecycle", "harness", "benchmarks", "tests"}


def imported_packages(package: str) -> dict[str, set[str]]:
    """Repository package -> the files of ``package`` that import it."""
    found: dict[str, set[str]] = {}
    for path in sorted((REPO / package).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top in PACKAGES and top != package:
                    found.setdefault(top, set()).add(str(path.relative_to(REPO)))
    return found


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_product_packages_import_only_what_their_role_needs(package):
    imports = imported_packages(package)
    forbidden = {name: sorted(files) for name, files in imports.items() if name not in ALLOWED[package]}
    assert not forbidden, f"{package} imports {forbidden}"
    assert not set(imports) & NEVER


def test_the_core_imports_nothing_of_the_repository():
    assert imported_packages("core") == {}


def test_the_rules_see_imports_inside_functions(tmp_path, monkeypatch):
    """The checker itself: a late import (inside a function) of the main job is found."""
    pkg = tmp_path / "serving"
    pkg.mkdir()
    (pkg / "late.py").write_text("def f():\n    from lifecycle import pipeline\n    import harness.capturegen\n")
    monkeypatch.setattr(sys.modules[__name__], "REPO", tmp_path)
    assert imported_packages("serving") == {"lifecycle": {"serving/late.py"}, "harness": {"serving/late.py"}}


def test_test_helpers_are_not_in_the_product_packages():
    """What only tests and demos use lives in harness/, which no image copies."""
    dockerfile = (REPO / "containers" / "Dockerfile").read_text()
    assert "harness" not in dockerfile and "lifecycle" not in dockerfile and "tests/" not in dockerfile
    for gone in ("serving/local.py", "monitoring/capturegen.py", "local_mode"):
        assert not (REPO / gone).exists()
