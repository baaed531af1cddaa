"""A small local model registry (the stand-in for the pipeline's SSM parameter / model registry) and the gate.

``registry.json`` (default ``build/registry.json``; it persists across runs) records every gate decision; an
approved model is copied into a versioned folder beside it (``<registry>-models/<algorithm>/v0001/``: ``model/``
and ``evaluation.json``), so a later run never overwrites it. Layout::

    {"version": 1,
     "best": {"xgboost": 2, "linear": 1},
     "entries": [{"algorithm": "xgboost", "status": "approved", "version": 2, "reason": "...",
                  "model_dir": "registry-models/xgboost/v0002/model", "metrics": {"rmse": ..., "mae": ..., ...},
                  "model_hash": "sha256:...", "data_hash": "sha256:...", "threshold": 4000.0,
                  "time": "2024-03-05T07:59:59Z", "runner": "local"}, ...]}

The gate, per algorithm, on the test split's RMSE (from the training job's evaluation.json):

- above the threshold: **rejected**;
- the same model files as the current best (a rerun on the same data trains byte-identical models): **kept** -
  "equal to the best: kept the existing one", no new version;
- worse than the current best: **rejected** ("worse than the previous best", the pipeline's SNS notification);
- otherwise (first model, better, or equal RMSE from different files): **approved** as a new version, the new best.

A rejected model leaves the best as it was; the run goes on with the best. Paths in the file are relative to it.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lifecycle.progress import StepFailed

APPROVED, KEPT, REJECTED = "approved", "kept", "rejected"
METRICS = ("rmse", "mae", "mse", "r2")


def sha256_files(paths: Iterable[Path]) -> str:
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.name.encode() + b"\0")
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return "sha256:" + digest.hexdigest()


def model_hash(model_dir: Path) -> str:
    """The model files and schema.json; not metadata.json, which records when and where training ran."""
    return sha256_files(sorted(p for p in model_dir.iterdir() if p.is_file() and p.name != "metadata.json"))


@dataclass(frozen=True)
class Decision:
    algorithm: str
    status: str
    reason: str
    rmse: float
    serving: dict[str, Any] | None  # the registry entry whose model the run serves (None: no approved model)

    @property
    def version_dir(self) -> Path | None:
        return Path(self.serving["_version_dir"]) if self.serving else None


class Registry:
    def __init__(self, path: Path):
        self.path = path.resolve()
        self.models_root = self.path.parent / f"{self.path.stem}-models"
        self.doc: dict[str, Any] = {"version": 1, "best": {}, "entries": []}
        if self.path.exists():
            self.doc = self._read()

    def _read(self) -> dict[str, Any]:
        try:
            doc = json.loads(self.path.read_text())
        except json.JSONDecodeError as e:
            raise StepFailed(
                f"registry {self.path}: line {e.lineno}, column {e.colno}: not valid JSON ({e.msg})"
            ) from None
        except OSError as e:
            raise StepFailed(f"registry {self.path}: cannot read it ({e.strerror})") from None
        if not (isinstance(doc, dict) and isinstance(doc.get("best"), dict) and isinstance(doc.get("entries"), list)):
            raise StepFailed(f"registry {self.path}: expected an object with 'best' and 'entries' (is it ours?)")
        return doc

    # -- reading ---------------------------------------------------------------------------------------------
    def _resolve(self, rel: str) -> Path:
        return (self.path.parent / rel).resolve()

    def best(self, algorithm: str) -> dict[str, Any] | None:
        version = self.doc["best"].get(algorithm)
        for entry in self.doc["entries"]:
            if (
                entry.get("algorithm") == algorithm
                and entry.get("status") == APPROVED
                and entry.get("version") == version
            ):
                model_dir = self._resolve(entry["model_dir"])
                if not model_dir.is_dir():
                    raise StepFailed(f"registry {self.path}: {algorithm} v{version}'s model folder {model_dir} is gone")
                return {**entry, "_version_dir": str(model_dir.parent)}
        return None

    # -- the gate ----------------------------------------------------------------------------------------------
    def gate(
        self,
        algorithm: str,
        training_dir: Path,
        evaluation: dict[str, Any],
        *,
        threshold: float,
        data_hash: str,
        runner: str,
    ) -> Decision:
        metrics = {m: float(evaluation["regression_metrics"][m]["value"]) for m in METRICS}
        rmse = metrics["rmse"]
        candidate = training_dir / "model"
        digest = model_hash(candidate)
        best = self.best(algorithm)
        other_data = " (the best was trained on other data)" if best and best.get("data_hash") != data_hash else ""
        if not math.isfinite(rmse):
            status, reason = REJECTED, f"test RMSE is {rmse}"
        elif rmse > threshold:
            status, reason = REJECTED, f"test RMSE {rmse:,.1f} exceeds the threshold {threshold:,.1f}"
        elif best and best.get("model_hash") == digest:
            status, reason = KEPT, f"equal to the best (v{best['version']}, same model files): kept the existing one"
        elif best and rmse > best["metrics"]["rmse"]:
            status = REJECTED
            reason = f"test RMSE {rmse:,.1f} is worse than the previous best v{best['version']} "
            reason += f"({best['metrics']['rmse']:,.1f}){other_data}"
        else:
            status = APPROVED
            reason = f"test RMSE {rmse:,.1f} <= threshold {threshold:,.1f}"
            if best:
                reason += f" and not worse than the previous best v{best['version']} ({best['metrics']['rmse']:,.1f})"
                reason += other_data
            else:
                reason += " (first model)"
        entry: dict[str, Any] = {
            "algorithm": algorithm,
            "status": status,
            "reason": reason,
            "metrics": metrics,
            "model_hash": digest,
            "data_hash": data_hash,
            "threshold": threshold,
            "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "runner": runner,
        }
        if status == APPROVED:
            version = self._next_version(algorithm)
            version_dir = self.models_root / algorithm / f"v{version:04d}"
            shutil.copytree(candidate, version_dir / "model")
            shutil.copy2(training_dir / "output" / "data" / "evaluation.json", version_dir / "evaluation.json")
            entry.update(version=version, model_dir=os.path.relpath(version_dir / "model", self.path.parent))
            self.doc["best"][algorithm] = version
        elif status == KEPT:
            entry.update(version=best["version"], model_dir=best["model_dir"])
        else:
            entry["model_dir"] = str(candidate)  # the work dir's copy: not kept by the registry
        self.doc["entries"].append(entry)
        self.save()
        return Decision(algorithm, status, reason, rmse, self.best(algorithm))

    def _next_version(self, algorithm: str) -> int:
        used = [e["version"] for e in self.doc["entries"] if e.get("algorithm") == algorithm and e.get("version")]
        folder = self.models_root / algorithm
        if folder.is_dir():  # folders left by a registry file that was deleted are never reused
            used += [int(m.group(1)) for p in folder.iterdir() if (m := re.fullmatch(r"v(\d+)", p.name))]
        return max(used, default=0) + 1

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps(self.doc, indent=1) + "\n")
        tmp.replace(self.path)
