"""Append a scoring run or monitor runs to the analytics tables: the ``tables`` command of the monitor image, run
as a SageMaker Processing job (inputs under /opt/ml/processing/input/, the tables root at
/opt/ml/processing/tables, which the job uploads to the tables' S3 prefix), or from a shell with explicit paths.

    python -m analytics.append scoring --run-id JOB --model xgboost|linear [--target NAME] [--scored-at TIME]
                                       [--input OUT_FILE_OR_DIR] [--schema SCHEMA_JSON|MODEL_DIR|MODEL_TAR_GZ]
                                       [--tables DIR]
    python -m analytics.append monitoring [--run-id ID] [--input RUN_DIR_OR_DIR_OF_RUNS] [--tables DIR]

Bad input exits 1 with one line naming the file (and line, column) on stderr and in /opt/ml/output/message (the
processing job's ExitMessage); our own bugs exit 2. ``SAGEMAKER_BASE_DIR`` relocates /opt/ml.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from datetime import UTC, datetime
from pathlib import Path

from analytics import runs, scoring
from analytics.tables import (
    DRIFT_RESULTS,
    DRIFT_SCHEMA,
    MODEL_QUALITY,
    MODELS,
    QUALITY_SCHEMA,
    SCORED_RECORDS,
    AnalyticsError,
    Appended,
    remove_run,
    write_run,
)

MESSAGE_LIMIT = 1024  # bytes of /opt/ml/output/message that DescribeProcessingJob returns
INTERNAL_ERROR_EXIT = 2


def base_dir() -> Path:
    return Path(os.environ.get("SAGEMAKER_BASE_DIR", "/opt/ml"))


def processing(*parts: str) -> Path:
    return base_dir().joinpath("processing", *parts)


# -- Python API ------------------------------------------------------------------------------------------------
def append_scoring(
    tables: Path,
    source: Path,
    schema: Path,
    *,
    run_id: str,
    model: str,
    target: str | None = None,
    scored_at: datetime | None = None,
) -> Appended:
    """Append a batch transform's joined output (a ``.out`` file or a folder of them) to ``scored_records``.

    One run is ``(run_id, model)``: appending it again replaces its rows. ``target`` (default ``run_id``) is what
    the monitor calls the batch job, so drift results join back to these records; ``scored_at`` (default now, UTC)
    fixes the date partition: pass the job's time to make a rerun land on the same S3 key."""
    if model not in MODELS:
        raise AnalyticsError(f"model: expected one of {', '.join(MODELS)}, received {model!r}")
    if not run_id:
        raise AnalyticsError("run_id is empty")
    when = _utc(scored_at or datetime.now(UTC).replace(microsecond=0))
    features = scoring.load_schema(Path(schema))
    files = scoring.output_files(Path(source))
    run = scoring.Run(run_id, target or run_id, model, when)
    return write_run(
        Path(tables), SCORED_RECORDS, when, (run_id, model), scoring.schema(features),
        scoring.batches(files, features, run),
    )  # fmt: skip


def append_monitoring(tables: Path, source: Path, *, run_id: str | None = None) -> list[Appended]:
    """Append monitor runs to ``drift_results`` and ``model_quality``: ``source`` is one run's output folder or a
    folder of them. A run is its ``run_id`` (default: target and completion time); appending it again replaces
    its rows. A run with no new data adds nothing."""
    folders = run_folders(Path(source))
    if run_id and len(folders) > 1:
        raise AnalyticsError(f"--run-id names one run, but it holds {len(folders)} monitor runs", file=source)
    # read every run before writing any: a bad folder leaves the tables as they were
    parsed = [runs.read_run(f, run_id) for f in folders]
    out = []
    for run in parsed:
        for table, rows, schema in (
            (DRIFT_RESULTS, run.drift, DRIFT_SCHEMA),
            (MODEL_QUALITY, run.quality, QUALITY_SCHEMA),
        ):
            if rows.num_rows:
                out.append(write_run(Path(tables), table, run.monitored_at, (run.run_id,), schema, rows.to_batches()))
            else:
                remove_run(Path(tables), table, run.run_id)
    return out


def run_folders(source: Path) -> list[Path]:
    if (source / runs.REPORT).is_file():
        return [source]
    if not source.is_dir():
        raise AnalyticsError("does not exist", file=source)
    found = sorted(p.parent for p in source.rglob(runs.REPORT))
    if not found:
        raise AnalyticsError(f"holds no monitor output ({runs.REPORT})", file=source)
    return found


def _utc(t: datetime) -> datetime:
    return t.astimezone(UTC).replace(tzinfo=None) if t.tzinfo else t


def parse_time(text: str) -> datetime:
    try:
        return _utc(datetime.fromisoformat(text))
    except ValueError:
        raise AnalyticsError(
            f"--scored-at: expected an ISO 8601 time (2026-12-01T14:45:57Z), received {text!r}"
        ) from None


# -- CLI -------------------------------------------------------------------------------------------------------
class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse would print usage and exit 2; the job contract is one line, exit 1
        raise AnalyticsError(f"{self.prog}: {message}")


def parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m analytics.append", description=__doc__.split("\n")[0])
    p.add_argument("--message-file", type=Path, help="default: $SAGEMAKER_BASE_DIR/output/message (in a job)")
    sub = p.add_subparsers(dest="kind", required=True, parser_class=_Parser)
    s = sub.add_parser("scoring", help="a batch transform's joined output -> scored_records")
    s.add_argument("--run-id", required=True, help="the scoring run (e.g. the transform job name)")
    s.add_argument("--model", required=True, choices=MODELS)
    s.add_argument("--target", help="the batch job name the monitor reports (default: the run id)")
    s.add_argument("--scored-at", type=str, help="ISO 8601, UTC unless an offset is given (default: now)")
    s.add_argument("--input", type=Path, default=None, help="default: /opt/ml/processing/input/scoring")
    s.add_argument("--schema", type=Path, default=None, help="default: /opt/ml/processing/input/model")
    s.add_argument("--tables", type=Path, default=None, help="default: /opt/ml/processing/tables")
    m = sub.add_parser("monitoring", help="monitor output folders -> drift_results, model_quality")
    m.add_argument("--run-id", help="default: <target>-<completed_at>")
    m.add_argument("--input", type=Path, default=None, help="default: /opt/ml/processing/input/monitoring")
    m.add_argument("--tables", type=Path, default=None, help="default: /opt/ml/processing/tables")
    return p


def run(argv: list[str] | None) -> str:
    args = parser().parse_args(argv)
    tables = args.tables or processing("tables")
    if args.kind == "scoring":
        done = [
            append_scoring(
                tables, args.input or processing("input", "scoring"), args.schema or processing("input", "model"),
                run_id=args.run_id, model=args.model, target=args.target,
                scored_at=parse_time(args.scored_at) if args.scored_at else None,
            )
        ]  # fmt: skip
    else:
        done = append_monitoring(tables, args.input or processing("input", "monitoring"), run_id=args.run_id)
    return "; ".join(a.line() for a in done) or "nothing to append (no new data)"


def _write_message(path: Path | None, text: str) -> None:
    if path is None:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(text.encode("utf-8")[:MESSAGE_LIMIT].decode("utf-8", "ignore").encode("utf-8"))
    except OSError as e:
        print(f"could not write {path}: {e}", file=sys.stderr)


def _message_path(argv: list[str]) -> Path | None:
    """--message-file if given, else $SAGEMAKER_BASE_DIR/output/message when that base exists (i.e. in a job)."""
    for i, a in enumerate(argv):
        if a == "--message-file" and i + 1 < len(argv):
            return Path(argv[i + 1])
        if a.startswith("--message-file="):
            return Path(a.split("=", 1)[1])
    return base_dir() / "output" / "message" if base_dir().is_dir() else None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    message = _message_path(argv)
    try:
        summary = run(argv)
    except AnalyticsError as e:
        print(f"tables failed: {e}", file=sys.stderr)
        _write_message(message, str(e))
        return e.exit_code
    except Exception as e:  # our bug, not the input's: traceback to the log, one line to SageMaker
        traceback.print_exc()
        reason = f"internal error in analytics.append: {type(e).__name__}: {' '.join(str(e).split())}"
        print(reason, file=sys.stderr)
        _write_message(message, reason)
        return INTERNAL_ERROR_EXIT
    print(summary)
    _write_message(message, summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
