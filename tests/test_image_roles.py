"""Each image role's requirement file covers what its code imports (containers/Dockerfile installs nothing else).

The import graph is read from the source (every import, also those inside functions), starting at the modules the
role's image runs; a third-party package found there must come with the role's requirements (directly or as a
dependency), so an import added to monitoring/ that only the algorithm images carry fails here, without Docker.
"""

from __future__ import annotations

import ast
import re
import sys
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parent.parent
REQUIREMENTS = REPO / "requirements"
OWN = {"core", "algorithms", "serving", "processing", "monitoring", "analytics"}
ROLES = {
    # role: (entry modules the image runs, requirement files; a *-nodeps file is installed without dependencies)
    "algorithm": (
        ["algorithms.train", "serving.serve", "algorithms.xgboost_regressor", "algorithms.linear"],
        ["runtime-algorithm.txt", "runtime-algorithm-nodeps.txt"],
    ),
    "monitor": (
        ["processing.preprocess", "monitoring.baseline", "monitoring.monitor", "monitoring.merge",
         "monitoring.report", "analytics.append"],
        ["runtime-monitor.txt"],
    ),
}  # fmt: skip
# Imports reached in the source that the image never runs, each with the reason.
NOT_IN_IMAGE = {
    "monitor": {"duckdb": "analytics.query, for the report's --tables, which checks find_spec('duckdb') first"},
}


def module_file(name: str) -> Path | None:
    base = REPO / name.replace(".", "/")
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def imports_of(name: str) -> set[str]:
    path = module_file(name)
    assert path is not None, name
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, *([node.module] if node.module else [])])
            else:
                base = node.module or ""
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def third_party_imports(entries: list[str]) -> set[str]:
    """Top-level names of every non-stdlib, non-repository module the entries reach."""
    seen: set[str] = set()
    todo = list(entries)
    outside: set[str] = set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        for imported in imports_of(name):
            top = imported.split(".")[0]
            if top in OWN:
                parts = imported.split(".")
                todo.extend(c for i in range(1, len(parts) + 1) if module_file(c := ".".join(parts[:i])))
            elif top not in sys.stdlib_module_names and top != "__future__":
                outside.add(top)
    return outside


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def installed_closure(files: list[str]) -> set[str]:
    """Distributions a role's files install: the pins and, except for *-nodeps files, what they require."""
    todo: list[tuple[str, bool]] = []
    for file in files:
        for line in (REQUIREMENTS / file).read_text().splitlines():
            line = line.split("#")[0].strip()
            if line:
                todo.append((norm(line.split("==")[0]), not file.endswith("-nodeps.txt")))
    seen: set[str] = set()
    while todo:
        name, follow = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        if not follow:
            continue
        for line in metadata.requires(name) or []:
            requirement = Requirement(line)
            # The image's platform is this one's (Linux, CPython 3.11); no extras are installed.
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                todo.append((norm(requirement.name), True))
    return seen


@pytest.mark.parametrize("role", ROLES)
def test_role_requirements_cover_what_its_code_imports(role):
    entries, files = ROLES[role]
    providers = metadata.packages_distributions()
    installed = installed_closure(files)
    missing = {}
    for top in sorted(third_party_imports(entries) - set(NOT_IN_IMAGE.get(role, {}))):
        dists = {norm(d) for d in providers.get(top, [top])}
        if not dists & installed:
            missing[top] = sorted(dists)
    assert not missing, f"the {role} images would lack {missing}: add them to {', '.join(files)}"


def test_the_monitor_role_does_not_install_the_algorithm_stack():
    installed = installed_closure(ROLES["monitor"][1])
    assert not installed & {"xgboost-cpu", "scipy", "flask", "gunicorn", "boto3", "sagemaker-training"}


def test_the_algorithm_role_does_not_install_pyarrow_or_sagemaker_trainings_dependencies():
    installed = installed_closure(ROLES["algorithm"][1])
    assert "sagemaker-training" in installed
    assert not installed & {"pyarrow", "gevent", "paramiko", "psutil", "protobuf", "pip", "datasketches"}


def test_the_checker_sees_imports_inside_functions(tmp_path, monkeypatch):
    pkg = tmp_path / "monitoring"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "late.py").write_text("def f():\n    import scipy.stats\n    from . import other\n")
    (pkg / "other.py").write_text("import xgboost\n")
    monkeypatch.setattr(sys.modules[__name__], "REPO", tmp_path)
    assert third_party_imports(["monitoring.late"]) == {"scipy", "xgboost"}
