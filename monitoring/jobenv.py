"""The processing-job environment: Model Monitor's env variables (CLI flags override them for local use), where
outputs go, and how a job fails (one-line reason first in /opt/ml/output/failure, non-zero exit).

``SAGEMAKER_BASE_DIR`` moves /opt/ml (as it does for sagemaker-training), so tests and local runs can relocate
the failure file and the CloudWatch metric files.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import traceback
from collections.abc import Callable, Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

from core.errors import ConfigurationError, UserError
from monitoring.readers import parse_time

log = logging.getLogger("monitoring")


def parser(prog: str, description: str, names: Iterable[str]) -> argparse.ArgumentParser:
    """A ``--flag`` for every environment setting, so a job runs the same from a shell as in a processing job."""
    p = argparse.ArgumentParser(prog=prog, description=description)
    for name in names:
        p.add_argument(f"--{name.replace('_', '-')}", dest=name, default=None)
    return p


def base_dir() -> Path:
    return Path(os.environ.get("SAGEMAKER_BASE_DIR", "/opt/ml"))


def failure_path() -> Path:
    return base_dir() / "output" / "failure"


def cloudwatch_dir() -> Path:
    return base_dir() / "output" / "metrics" / "cloudwatch"


def setting(args: Any, name: str, default: Any = None) -> Any:
    """CLI flag when given, else the env variable of the same name, else ``default``."""
    value = getattr(args, name, None)
    if value is None:
        value = os.environ.get(name)
    return default if value is None or value == "" else value


def time_setting(args: Any, name: str) -> datetime | None:
    raw = setting(args, name)
    if raw is None:
        return None
    try:
        return parse_time(str(raw))
    except ValueError:
        raise ConfigurationError(
            f"{name}: expected an ISO 8601 time such as 2019-12-01T15:20:00Z, received {raw!r}"
        ) from None


def enabled_setting(args: Any, name: str, default: str = "Disabled") -> bool:
    raw = str(setting(args, name, default)).strip().lower()
    if raw in ("enabled", "true", "1"):
        return True
    if raw in ("disabled", "false", "0"):
        return False
    raise ConfigurationError(f"{name}: expected Enabled or Disabled, received {setting(args, name)!r}")


def strict_bool(value: Any, where: str) -> bool:
    """true/false as JSON booleans or strings (case-insensitive): the BYOC contract writes "true"/"false"."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise ConfigurationError(f"{where}: expected true or false, received {value!r}")


def csv_header(fmt: dict[str, Any]) -> bool | None:
    """``{"csv": {"header": ...}}``'s value, strictly parsed; None when not given."""
    opts = fmt.get("csv") or {}
    if not isinstance(opts, dict) or "header" not in opts:
        return None
    return strict_bool(opts["header"], "dataset_format csv.header")


def int_setting(args: Any, name: str, default: int, minimum: int = 0) -> int:
    raw = setting(args, name, default)
    try:
        value = int(raw)
    except (TypeError, ValueError):
        raise ConfigurationError(f"{name}: expected an integer, received {raw!r}") from None
    if value < minimum:
        raise ConfigurationError(f"{name}: expected an integer >= {minimum}, received {value}")
    return value


def dataset_format(args: Any) -> dict[str, Any]:
    raw = setting(args, "dataset_format")
    if raw is None:
        return {}
    try:
        doc = json.loads(raw) if isinstance(raw, str) else raw
    except json.JSONDecodeError as e:
        raise ConfigurationError(f"dataset_format: not valid JSON ({e.msg}): {raw!r}") from None
    if not isinstance(doc, dict) or len(doc) != 1:
        raise ConfigurationError(
            'dataset_format: expected one of {"sagemakerCaptureJson": {...}}, {"csv": {"header": false}}, '
            f'{{"json": {{"line": true}}}}, {{"parquet": {{}}}}; received {raw!r}'
        )
    kind = next(iter(doc))
    if kind == "sagemaker_capture_json":  # the SageMaker Python SDK's older spelling
        doc = {"sagemakerCaptureJson": doc[kind]}
        kind = "sagemakerCaptureJson"
    if kind not in ("sagemakerCaptureJson", "csv", "json", "parquet"):
        raise ConfigurationError(
            f"dataset_format: unknown format {kind!r} in {raw!r}; expected sagemakerCaptureJson, csv, json or parquet"
        )
    return doc


def run_job(main: Callable[[], int]) -> int:
    """Run a job: a UserError becomes the failure file's first line and exit 1; anything else is our bug."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return main()
    except UserError as e:
        _write_failure(str(e))
        print(f"ERROR: {e}", file=sys.stderr)
        return e.exit_code
    except Exception as e:
        _write_failure(f"internal error in the monitor ({type(e).__name__}: {' '.join(str(e).split())})")
        traceback.print_exc()
        return 2


def _write_failure(reason: str) -> None:
    try:
        path = failure_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(reason[:1024] + "\n")
    except OSError as e:
        print(f"could not write the failure file: {e}", file=sys.stderr)
