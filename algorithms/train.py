"""The training entry point: `python -m algorithms.train` (what the images run for `docker run IMAGE train`).

ALGORITHM (set by each image) picks the plug-in; SAGEMAKER_BASE_DIR relocates /opt/ml outside a container.

    validate hyperparameters -> read channels -> fit (metrics logged per iteration) -> save model + metadata.json
    -> evaluation.json (test channel, else validation) -> exit 0

Exit codes: 0 success; 1 the user's input is wrong (UserError: /opt/ml/output/failure starts with the one-line
reason); 2 our bug (failure starts with ``internal error: <Type>: <message>``; traceback in the log).
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import logging
import math
import os
import platform
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import metadata as importlib_metadata
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np

from algorithms import base, distributed, registry
from algorithms.hyperparameters import Hyperparameter, HyperparameterSpec
from core.errors import ConfigurationError, HyperparameterError, OutputError, UserError

log = logging.getLogger("algorithms.train")

DEFAULT_BASE_DIR = "/opt/ml"
FAILURE_LIMIT = 1024  # SageMaker shows this many characters of /opt/ml/output/failure as FailureReason
EVALUATION_FILE = "evaluation.json"
# Hyperparameters the platform adds: the SDK's sagemaker_* and automatic model tuning's objective.
IGNORED_PREFIXES = ("sagemaker_", "_tuning_objective_metric")
# Shared by every algorithm and consumed here (data reading), never passed to a plug-in.
COMMON_HYPERPARAMETERS = (
    Hyperparameter("target", str, None, description="label column name in CSV with a header or parquet"),
)
INPUT_MODES = ("File", "FastFile")
FULLY_REPLICATED = "FullyReplicated"
SHARDED = "ShardedByS3Key"
ROWS_IN_MEMORY_ENV = "BYOC_ROWS_IN_MEMORY_MB"
DEFAULT_ROWS_IN_MEMORY_MB = 1024
LIBRARIES = ("numpy", "pandas", "pyarrow", "xgboost-cpu", "xgboost", "sagemaker-training")


@dataclass(frozen=True)
class JobConfig:
    """One read-only snapshot of the job's environment, taken once at start and passed down."""

    algorithm: str
    base_dir: Path
    hyperparameters: Mapping[str, str]  # raw strings, as SageMaker writes them
    channels: Mapping[str, Any]  # name -> algorithms.data.Channel
    current_host: str
    hosts: tuple[str, ...]
    num_cpus: int
    checkpoint_dir: Path | None = None
    resource_config: Mapping[str, Any] = field(default_factory=dict)
    # channel -> S3DistributionType (FullyReplicated or ShardedByS3Key); decides how hosts split a channel
    distributions: Mapping[str, str] = field(default_factory=dict)
    # Encoded rows of a channel kept in memory; the rest go to a temporary file (BYOC_ROWS_IN_MEMORY_MB).
    rows_in_memory_bytes: int = DEFAULT_ROWS_IN_MEMORY_MB << 20

    @property
    def model_dir(self) -> Path:
        return self.base_dir / "model"

    @property
    def output_data_dir(self) -> Path:
        return self.base_dir / "output" / "data"


def failure_path(base_dir: Path) -> Path:
    return base_dir / "output" / "failure"


def _read_json(path: Path, *, required: bool = True) -> Any:
    if not path.is_file():
        if required:
            raise ConfigurationError(f"file {path}: not found")
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ConfigurationError(f"file {path}, line {e.lineno}, column {e.colno}: not valid JSON: {e.msg}") from None


def load_config(algorithm: str | None) -> JobConfig:
    """Read /opt/ml/input/config once, through sagemaker_training.environment."""
    algorithm = registry.checked(algorithm)  # fail early, before any heavy import, on a bad ALGORITHM
    if "SAGEMAKER_BASE_DIR" not in os.environ and not Path(DEFAULT_BASE_DIR).exists():
        # Without either, sagemaker_training invents a tree under ~/sagemaker_local with empty config at import.
        raise ConfigurationError(f"{DEFAULT_BASE_DIR} does not exist and SAGEMAKER_BASE_DIR is not set")
    from sagemaker_training import environment  # honours SAGEMAKER_BASE_DIR; creates <base>/code at import

    config_dir = Path(environment.input_config_dir)
    hp_raw = _read_json(config_dir / environment.HYPERPARAMETERS_FILE, required=False) or {}
    input_data = _read_json(config_dir / environment.INPUT_DATA_CONFIG_FILE, required=False) or {}
    resource = _read_json(config_dir / environment.RESOURCE_CONFIG_FILE)
    checkpoint = _read_json(config_dir / "checkpointconfig.json", required=False)
    for path, doc in (("hyperparameters.json", hp_raw), ("inputdataconfig.json", input_data)):
        if not isinstance(doc, dict):
            raise ConfigurationError(f"file {config_dir / path}: expected a JSON object")
    if not isinstance(resource, dict) or not isinstance(resource.get("hosts"), list) or "current_host" not in resource:
        raise ConfigurationError(
            f"file {config_dir / environment.RESOURCE_CONFIG_FILE}: expected an object with current_host and hosts"
        )
    for name, cfg in input_data.items():
        mode = (cfg or {}).get("TrainingInputMode") or "File"
        # FastFile mounts the same files lazily under the same path, so it reads as File; Pipe streams through
        # FIFOs (<channel>_<epoch>), which the readers do not take.
        if mode not in INPUT_MODES:
            raise ConfigurationError(
                f"channel '{name}': TrainingInputMode {mode!r} is not supported; use File or FastFile"
            )
    # SageMaker writes strings; a hand-written file may hold numbers or booleans: keep the text a person meant.
    hyperparameters = {k: v if isinstance(v, str) else json.dumps(v) for k, v in hp_raw.items()}
    # Pass our own reads in: Environment would otherwise json-decode every hyperparameter ("1e3" -> 1000.0).
    env = environment.Environment(
        resource_config=resource, input_data_config=input_data, hyperparameters=dict(hyperparameters) or None
    )

    from algorithms.data import Channel

    channels = {
        name: Channel(name, Path(env.channel_input_dirs[name]), (cfg or {}).get("ContentType"))
        for name, cfg in env.input_data_config.items()
    }
    checkpoint_dir = None
    if checkpoint is not None:
        local = (checkpoint or {}).get("LocalPath") or "/opt/ml/checkpoints"
        if not isinstance(local, str) or ".." in Path(local).parts:
            raise ConfigurationError(
                f"file {config_dir / 'checkpointconfig.json'}: field 'LocalPath': {local!r} leaves its directory "
                "(no '..' allowed)"
            )
        checkpoint_dir = Path(local) if Path(local).is_absolute() else Path(environment.base_dir) / local
    return JobConfig(
        rows_in_memory_bytes=_rows_in_memory(),
        algorithm=algorithm,
        base_dir=Path(environment.base_dir),
        hyperparameters=MappingProxyType(hyperparameters),
        channels=MappingProxyType(channels),
        current_host=env.current_host,
        hosts=tuple(env.hosts),
        num_cpus=env.num_cpus,
        checkpoint_dir=checkpoint_dir,
        resource_config=MappingProxyType(dict(resource)),
        distributions=MappingProxyType(
            {name: (cfg or {}).get("S3DistributionType") or FULLY_REPLICATED for name, cfg in input_data.items()}
        ),
    )


def _rows_in_memory() -> int:
    raw = os.environ.get(ROWS_IN_MEMORY_ENV, str(DEFAULT_ROWS_IN_MEMORY_MB)).strip()
    if not raw.isascii() or not raw.isdigit() or int(raw) > 1 << 30:
        raise ConfigurationError(
            f"environment variable {ROWS_IN_MEMORY_ENV}: expected a whole number of MiB (0 or more), received {raw!r}"
        )
    return int(raw) << 20


def hyperparameter_spec(plugin: type[base.Algorithm]) -> HyperparameterSpec:
    return HyperparameterSpec([*COMMON_HYPERPARAMETERS, *plugin.hyperparameters], plugin.hyperparameters.rules)


def validate_hyperparameters(plugin: type[base.Algorithm], raw: Mapping[str, str]) -> tuple[dict, dict]:
    """(common values, the plug-in's values), all validated in one place."""
    ignore = [k for k in raw if k.startswith(IGNORED_PREFIXES)]
    values = hyperparameter_spec(plugin).validate(raw, ignore=ignore)
    common = {p.name: values.pop(p.name) for p in COMMON_HYPERPARAMETERS}
    if common["target"] is not None and not common["target"].strip():
        raise HyperparameterError("hyperparameter 'target': received '', expected a column name")
    return common, values


def run(job: JobConfig) -> None:
    plugin = registry.get(job.algorithm)
    common, params = validate_hyperparameters(plugin, job.hyperparameters)
    log.info("algorithm %s; hyperparameters %s", job.algorithm, json.dumps({**common, **params}, sort_keys=True))
    if len(job.hosts) > 1:
        run_distributed(job, plugin, common, params)
    else:
        train(job, plugin, common, params, distributed.SINGLE)


def run_distributed(job: JobConfig, plugin, common: dict, params: dict) -> None:
    """Several hosts: agree on who has data, then train together (algorithms.distributed)."""
    from algorithms import data

    settings = distributed.Settings.from_env()
    hosts = tuple(sorted(job.hosts))
    if job.current_host not in hosts:
        raise ConfigurationError(f"resourceconfig.json: current_host {job.current_host!r} is not in hosts {hosts}")
    t0 = time.perf_counter()
    addresses = distributed.wait_for_hosts(hosts, settings.host_wait_seconds)
    log.info("%d hosts resolved in %.2fs: %s", len(hosts), time.perf_counter() - t0, addresses)
    channel = job.channels.get("train")
    has_data = channel is not None and channel.path.is_dir() and bool(data.data_files(channel.path))
    with_data = distributed.hosts_with_data(hosts, job.current_host, addresses[hosts[0]], has_data, settings)
    if not with_data:
        # raises the single-host error, naming the channel
        data.read_channels(job.channels, target=common["target"], spill_bytes=job.rows_in_memory_bytes)
    if not has_data:
        log.warning(
            "host %s received no training data: it takes no part (hosts training: %s)",
            job.current_host,
            ", ".join(with_data),
        )
        return
    log.info("hosts training: %s; this host is rank %d", ", ".join(with_data), with_data.index(job.current_host))
    if len(with_data) == 1:
        train(job, plugin, common, params, distributed.SINGLE)
        return
    # A fresh port: the first round's is in TIME_WAIT on the first host and cannot be bound again yet.
    port = settings.tracker_port + 1
    with distributed.communicator(with_data, job.current_host, addresses[with_data[0]], port, settings) as comm:
        train(job, plugin, common, params, comm)


def read_data(job: JobConfig, target: str | None, comm: distributed.Collective):
    """This host's part of every channel, and the schema every host uses.

    ShardedByS3Key: the files this host received. FullyReplicated: every host has every row and takes the
    contiguous slice [n*rank//N, n*(rank+1)//N) of them, in file order (so the hosts' rows, concatenated in
    rank order, are the rows one host would read). A validation or test shard without files is empty here.
    """
    from algorithms import base, data

    if not comm.distributed:
        return data.read_channels(job.channels, target=target, spill_bytes=job.rows_in_memory_bytes)
    local = {
        name: ch
        for name, ch in job.channels.items()
        if name == "train" or (ch.path.is_dir() and data.data_files(ch.path))
    }
    present = {name: local[name] for name in data.CHANNELS if name in local}
    given = distributed.agree_given_schema(comm, data.given_schema(present, target))
    settle = None if given is not None else (lambda s: distributed.agree_inferred_schema(comm, s))
    datasets, schema = data.read_channels(
        local, target=target, schema=given, settle_schema=settle, spill_bytes=job.rows_in_memory_bytes
    )
    for name in data.CHANNELS:
        if name in job.channels and name not in datasets:
            datasets[name] = base.Dataset(name, np.empty((0, schema.n_features)), np.empty(0))
    for name, ds in list(datasets.items()):
        kind = job.distributions.get(name, FULLY_REPLICATED)
        if kind != SHARDED:
            rows = distributed.row_slice(len(ds), comm.rank, comm.world_size)
            datasets[name] = ds.window(rows.start, rows.stop)
        log.info("channel %s (%s): %d rows on this host", name, kind, len(datasets[name]))
    return datasets, schema


def _predict(model, ds) -> np.ndarray:
    """Predictions for a channel, a block at a time (it may be larger than memory)."""
    parts = [model.predict(X) for X, _ in ds.blocks()]
    return np.concatenate(parts) if parts else np.empty(0)


def _final_metrics(model, ds, cached: np.ndarray | None, comm) -> dict[str, float]:
    """The saved model's metrics on a channel, a block at a time: nothing per row is kept (the channel may be
    larger than memory); ``cached``: its predictions when the algorithm had them for free."""
    from algorithms import metrics

    sums = metrics.RegressionSums()
    if cached is not None:  # the algorithm read the labels to train: no pass over the stored rows
        sums.add(ds.y, cached)
    else:
        for X, y in ds.blocks():
            sums.add(y, model.predict(X))
    return sums.metrics(comm)


def train(job: JobConfig, plugin, common: dict, params: dict, comm: distributed.Collective) -> None:
    from algorithms import metrics

    t0 = time.perf_counter()
    datasets, schema = read_data(job, common["target"], comm)
    log.info("read channels in %.2fs", time.perf_counter() - t0)

    metric_log = metrics.MetricLogger()
    context = base.TrainingContext(
        checkpoint_dir=job.checkpoint_dir,
        num_cpus=job.num_cpus,
        hosts=job.hosts,
        current_host=job.current_host,
        collective=comm,
    )
    t0 = time.perf_counter()
    model = plugin(params, schema).fit(datasets["train"], datasets.get("validation"), log=metric_log, context=context)
    log.info("trained in %.2fs", time.perf_counter() - t0)

    # Final metrics of the model that is saved, on every channel (over every host's rows); the last values
    # SageMaker records.
    final = {}
    fitted = {n: p for n, p in model.fitted_predictions().items() if n in datasets and len(p) == len(datasets[n])}
    for name, ds in datasets.items():
        final[name] = _final_metrics(model, ds, fitted.get(name), comm)
        metric_log(name, final[name])
        undefined = [k for k, v in final[name].items() if not math.isfinite(v)]
        if undefined:  # e.g. r2 of a constant label: written as null in metadata.json and evaluation.json
            log.warning("channel %s: metric(s) %s undefined on this data (constant label?)", name, ", ".join(undefined))

    split = "test" if "test" in datasets else "validation" if "validation" in datasets else None
    if split is not None:  # the bootstrap of evaluation.json resamples rows: this channel's labels and predictions
        y = datasets[split].y
        p = fitted[split] if split in fitted else _predict(model, datasets[split])
        if comm.distributed:  # every row, gathered on every host
            y, p = comm.gather(y), comm.gather(p)
    if comm.is_master:
        save_model(model, plugin, job, schema, {**common, **params}, final)
        if split is None:
            log.info("no test or validation channel: no %s", EVALUATION_FILE)
        else:
            report = metrics.evaluation(y, p)
            path = job.output_data_dir / EVALUATION_FILE
            with _writing(job.output_data_dir, [EVALUATION_FILE]):
                job.output_data_dir.mkdir(parents=True, exist_ok=True)
                path.write_text(json.dumps(report, indent=2, allow_nan=False) + "\n")
            log.info("wrote %s (channel %s, %d rows)", path, split, len(y))
    else:
        log.info("host %s: the first host (%s) writes the model and the evaluation", job.current_host, comm.hosts[0])
    # The other hosts exit only once the first has written everything: SageMaker local mode (docker-compose
    # --abort-on-container-exit) stops every container when the first one exits.
    comm.allreduce([0])


# errno values that say the location is not writable: the platform's or the user's setup, not our bug.
_NOT_WRITABLE = {errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOSPC, errno.EDQUOT}


@contextlib.contextmanager
def _writing(directory: Path, names: list[str]):
    """Refuse to write through symbolic links; report an unwritable directory as a one-line OutputError."""
    links = base.linked_files(directory, names)
    if links:
        raise OutputError(f"{links[0]} is a symbolic link: refusing to write through it")
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=directory):  # XGBoost reports an unwritable file as its own error
            pass
        yield
    except OSError as e:
        if e.errno not in _NOT_WRITABLE:
            raise
        raise OutputError(f"cannot write to {directory}: {e.strerror} ({e.filename or directory})") from None


def save_model(model, plugin, job: JobConfig, schema, hyperparameters: dict, final: dict) -> None:
    names = [*plugin.MODEL_FILES, "schema.json", base.METADATA_FILE]
    with _writing(job.model_dir, names):
        _save_model(model, plugin, job, schema, hyperparameters, final)
    log.info("model saved to %s: %s", job.model_dir, ", ".join(names))


def _save_model(model, plugin, job: JobConfig, schema, hyperparameters: dict, final: dict) -> None:
    job.model_dir.mkdir(parents=True, exist_ok=True)
    written = sorted(p.name for p in model.save(job.model_dir))
    expected = sorted([*plugin.MODEL_FILES, "schema.json"])
    if written != expected:
        raise RuntimeError(f"plug-in {job.algorithm} wrote {written}, declared {expected}")
    doc = {
        "kind": "training-metadata (not a model)",
        "algorithm": job.algorithm,
        "model_files": list(plugin.MODEL_FILES),
        "schema": schema.to_dict(),
        "hyperparameters": hyperparameters,
        "metrics": final,
        "best_iteration": getattr(model, "best_iteration", None),
        "versions": versions(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    text = json.dumps(_finite(doc), indent=2, default=_jsonable, allow_nan=False)
    (job.model_dir / base.METADATA_FILE).write_text(text + "\n")


def _jsonable(v: Any) -> Any:
    return None if v is None else str(v)


def _finite(v: Any) -> Any:
    """NaN and infinities as null: JSON has no such numbers (r2 of a constant label is NaN)."""
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {k: _finite(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_finite(x) for x in v]
    return v


def versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for name in LIBRARIES:
        with contextlib.suppress(importlib_metadata.PackageNotFoundError):
            found[name] = importlib_metadata.version(name)
    return found


# -- failure reporting ---------------------------------------------------------------------------------------------
def write_failure(base_dir: Path, text: str) -> None:
    path = failure_path(base_dir)
    try:
        if path.is_symlink():
            raise OSError(errno.ELOOP, "is a symbolic link", str(path))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text[:FAILURE_LIMIT])
    except OSError as e:  # the reason is in the log already; say why the file is missing too
        log.error("cannot write %s: %s", path, e.strerror or e)


def _configure_logging() -> None:
    # Unbuffered lines to stdout (CloudWatch); quiet the third-party loggers that chat at INFO.
    if isinstance(sys.stdout, io.TextIOWrapper):  # not when a caller replaced it (a test's capture)
        sys.stdout.reconfigure(line_buffering=True)
    level = os.environ.get("LOG_LEVEL", "INFO").upper()
    logging.basicConfig(
        stream=sys.stdout, level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True
    )
    for name in ("sagemaker-training-toolkit", "boto3", "botocore", "s3transfer", "urllib3"):
        logging.getLogger(name).setLevel(max(logging.WARNING, logging.getLogger().level))


STOPPED_EXIT = 128 + signal.SIGTERM  # the shell's code for a process ended by SIGTERM
STOPPED = "training stopped by SIGTERM (StopTrainingJob, a spot interruption or docker stop)"


class _Stopped(BaseException):
    """Raised in the main thread by SIGTERM: not an Exception, so no handler on the way mistakes it for an error."""


def _stop(signum, frame) -> None:
    raise _Stopped()


def _finished(signum, frame) -> None:
    os._exit(0)  # everything is written: a SIGTERM now (the other host of a local-mode job exited) ends us cleanly


def main() -> int:
    # The image runs this as PID 1, which the kernel spares every signal it has no handler for: without one, a
    # SIGTERM is ignored and SageMaker (or docker stop) waits its grace period out, then kills with SIGKILL.
    signal.signal(signal.SIGTERM, _stop)
    _configure_logging()
    base_dir = Path(os.environ.get("SAGEMAKER_BASE_DIR", DEFAULT_BASE_DIR))
    try:
        failure_path(base_dir).unlink(missing_ok=True)  # a stale reason from an earlier run in the same tree
    except OSError as e:  # a read-only /opt/ml/output: the run itself will say what it cannot write
        log.warning("cannot remove %s: %s", failure_path(base_dir), e.strerror or e)
    try:
        job = load_config(os.environ.get("ALGORITHM"))
        run(job)
        signal.signal(signal.SIGTERM, _finished)
    except _Stopped:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second SIGTERM must not cut the reason short
        log.error("%s", STOPPED)
        write_failure(base_dir, STOPPED + "\n")
        return STOPPED_EXIT
    except UserError as e:
        reason = str(e)
        log.error("%s", reason)
        log.debug("traceback:\n%s", traceback.format_exc())
        write_failure(base_dir, reason + "\n")
        return e.exit_code
    except Exception as e:
        reason = " ".join(f"internal error: {type(e).__name__}: {e}".split())
        log.error("%s\n%s", reason, traceback.format_exc())
        write_failure(base_dir, reason + "\n")
        return 2
    log.info("training finished")
    return 0


if __name__ == "__main__":
    sys.exit(main())
