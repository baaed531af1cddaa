"""A local batch transform that honours what CreateTransformJob tells the container, DataProcessing included.

SageMaker local mode ignores InputFilter / JoinSource / OutputFilter and sends one request at a time; this runner
does what the service does (sagemaker dg "batch-transform", "your-algorithms-batch-code",
"batch-transform-data-processing"; API CreateTransformJob, TransformInput, TransformOutput, ModelClientConfig):

    python -m emulators.transform --endpoint http://127.0.0.1:8080 --input scoring.csv --output out/ \\
        --content-type text/csv --accept text/csv --split-type Line --assemble-with Line \\
        --input-filter '$[1:]' --join-source Input --output-filter '$[0,-1]'

or ``--image IMAGE --model-dir DIR`` to start the serving image itself. Exit codes: 0 done; 1 the job failed
(a record, a file or the server); 2 the job is invalid and nothing was sent to /invocations; 130 interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from emulators import dataprocessing as dpmod
from emulators.minibatch import MIB, Batch, Record, RecordTooLarge, pack, split_records
from emulators.model_server import InvocationError, ModelServer, ServerError

DEFAULTS: dict[str, int | str] = {"MaxConcurrentTransforms": 1, "BatchStrategy": "MultiRecord", "MaxPayloadInMB": 6}
MAX_PAYLOAD_MB = 100
_STRATEGIES = {"MultiRecord": "MultiRecord", "MULTI_RECORD": "MultiRecord", "SingleRecord": "SingleRecord",
               "SINGLE_RECORD": "SingleRecord"}  # fmt: skip
_ENV_STRATEGY = {"MultiRecord": "MULTI_RECORD", "SingleRecord": "SINGLE_RECORD"}
_ENV_KEY = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]{0,1023}")
_LINE_IN_MESSAGE = re.compile(r"\bline (\d+)\b")


class JobError(Exception):
    """The job is invalid; raised before any /invocations request (exit code 2)."""

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))


class FileFailed(Exception):
    """One input file could not be transformed; its message names the file, batch / record and the cause."""

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))


# -- the job ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TransformJob:
    inputs: Path
    output: Path
    content_type: str | None = None
    accept: str | None = None
    split_type: str = "None"
    assemble_with: str = "None"
    # None = not set by the job: the container's /execution-parameters answer, then the defaults, decide.
    batch_strategy: str | None = None
    max_payload_mb: int | None = None
    max_concurrent_transforms: int | None = None
    input_filter: str = "$"
    join_source: str = "None"
    output_filter: str = "$"
    environment: Mapping[str, str] = field(default_factory=dict)
    invocations_timeout: int = 600
    invocations_max_retries: int = 3

    def data_processing(self) -> dpmod.DataProcessing:
        try:
            return dpmod.DataProcessing.build(
                input_filter=self.input_filter,
                join_source=self.join_source,
                output_filter=self.output_filter,
                content_type=self.content_type,
                accept=self.accept,
                split_type=self.split_type,
                assemble_with=self.assemble_with,
            )
        except dpmod.DataProcessingError as err:
            raise JobError(str(err)) from None

    def validate(self) -> dpmod.DataProcessing:
        """Everything CreateTransformJob validates; raises JobError."""
        if self.split_type not in ("None", "Line"):
            raise JobError(f"SplitType {self.split_type!r} is not supported here; expected 'None' or 'Line'")
        if self.assemble_with not in ("None", "Line"):
            raise JobError(f"AssembleWith {self.assemble_with!r} is not valid; expected 'None' or 'Line'")
        if self.batch_strategy is not None and self.batch_strategy not in ("MultiRecord", "SingleRecord"):
            raise JobError(f"BatchStrategy {self.batch_strategy!r} is not valid; expected MultiRecord or SingleRecord")
        if self.max_payload_mb is not None and not 0 <= self.max_payload_mb <= MAX_PAYLOAD_MB:
            raise JobError(f"MaxPayloadInMB must be between 0 and {MAX_PAYLOAD_MB}; received {self.max_payload_mb}")
        if self.max_concurrent_transforms is not None and self.max_concurrent_transforms < 0:
            raise JobError(f"MaxConcurrentTransforms must be 0 or more; received {self.max_concurrent_transforms}")
        if self.max_payload_mb and self.max_concurrent_transforms:
            check_product(self.max_concurrent_transforms, self.max_payload_mb, "the job")
        if not 1 <= self.invocations_timeout <= 3600:
            raise JobError(f"InvocationsTimeoutInSeconds must be 1-3600; received {self.invocations_timeout}")
        if not 0 <= self.invocations_max_retries <= 3:
            raise JobError(f"InvocationsMaxRetries must be 0-3; received {self.invocations_max_retries}")
        if len(self.environment) > 16:
            raise JobError(f"Environment has {len(self.environment)} entries; SageMaker allows at most 16")
        for key, value in self.environment.items():
            if not _ENV_KEY.fullmatch(key):
                raise JobError(f"Environment key {key!r} must match [a-zA-Z_][a-zA-Z0-9_]* (at most 1024 characters)")
            if len(value) > 10240:
                raise JobError(f"Environment value of {key} is {len(value)} characters; at most 10240 are allowed")
        return self.data_processing()

    def container_environment(self) -> dict[str, str]:
        """SAGEMAKER_* variables batch transform sets, only for the values the job sets (as documented)."""
        env = {"SAGEMAKER_BATCH": "true"}
        if self.max_payload_mb is not None:
            env["SAGEMAKER_MAX_PAYLOAD_IN_MB"] = str(self.max_payload_mb)
        if self.batch_strategy is not None:
            env["SAGEMAKER_BATCH_STRATEGY"] = _ENV_STRATEGY[self.batch_strategy]
        if self.max_concurrent_transforms:
            env["SAGEMAKER_MAX_CONCURRENT_TRANSFORMS"] = str(self.max_concurrent_transforms)
        return {**env, **self.environment}


def check_product(concurrent: int, payload_mb: int, source: str) -> None:
    if payload_mb and concurrent * payload_mb > MAX_PAYLOAD_MB:
        raise JobError(
            f"MaxConcurrentTransforms x MaxPayloadInMB must not exceed {MAX_PAYLOAD_MB} MB; {source} gives "
            f"{concurrent} x {payload_mb} = {concurrent * payload_mb}"
        )


@dataclass(frozen=True)
class ExecutionParameters:
    max_concurrent_transforms: int
    batch_strategy: str
    max_payload_mb: int
    sources: Mapping[str, str]

    def describe(self) -> str:
        strategy = _ENV_STRATEGY[self.batch_strategy]
        origin = ", ".join(f"{k} from {v}" for k, v in self.sources.items())
        return (
            f"MaxConcurrentTransforms={self.max_concurrent_transforms}, MaxPayloadInMB={self.max_payload_mb}, "
            f"BatchStrategy={strategy} ({origin})"
        )


def resolve_execution_parameters(job: TransformJob, answer: Mapping | None) -> ExecutionParameters:
    """Precedence (sagemaker dg your-algorithms-batch-code): the job's values, the container's answer, defaults."""
    requested = {
        "MaxConcurrentTransforms": job.max_concurrent_transforms or None,  # 0 means "not set"
        "BatchStrategy": job.batch_strategy,
        "MaxPayloadInMB": job.max_payload_mb,
    }
    values: dict[str, int | str] = {}
    sources: dict[str, str] = {}
    for key, default in DEFAULTS.items():
        asked = requested[key]
        if asked is not None:
            values[key], sources[key] = asked, "the job"
        elif answer is not None and answer.get(key) is not None:
            values[key], sources[key] = _container_value(key, answer[key]), "/execution-parameters"
        else:
            values[key], sources[key] = default, "the defaults"
    params = ExecutionParameters(
        int(values["MaxConcurrentTransforms"]),
        str(values["BatchStrategy"]),
        int(values["MaxPayloadInMB"]),
        sources,
    )
    check_product(
        params.max_concurrent_transforms,
        params.max_payload_mb,
        f"{sources['MaxConcurrentTransforms']} and {sources['MaxPayloadInMB']}",
    )
    return params


def _container_value(key: str, value: object) -> int | str:
    bad = JobError(f"/execution-parameters answered {key}={value!r}, which is not valid")
    if key == "BatchStrategy":
        if value not in _STRATEGIES:
            raise bad
        return _STRATEGIES[str(value)]
    if isinstance(value, bool) or not isinstance(value, int):
        raise bad
    if key == "MaxConcurrentTransforms" and value < 1:
        raise bad
    if key == "MaxPayloadInMB" and not 0 <= value <= MAX_PAYLOAD_MB:
        raise bad
    return value


def list_inputs(inputs: Path, output: Path) -> list[tuple[Path, str]]:
    """(file, name relative to the input) in order: a folder is every file under it, like an S3 prefix."""
    if inputs.is_file():
        return [(inputs, inputs.name)]
    if not inputs.is_dir():
        raise JobError(f"--input {inputs}: no such file or folder")
    out, root = output.resolve(), inputs.resolve()
    if out == root or root in out.parents:
        raise JobError(f"--output {output} is inside --input {inputs}; the outputs would become inputs")
    files = sorted((p for p in inputs.rglob("*") if p.is_file()), key=lambda p: p.relative_to(inputs).as_posix())
    if not files:
        raise JobError(f"--input {inputs}: the folder holds no file")
    return [(p, p.relative_to(inputs).as_posix()) for p in files]


# -- running ------------------------------------------------------------------------------------------------
@dataclass
class Report:
    files: int = 0
    records: int = 0
    batches: int = 0
    seconds: float = 0.0
    outputs: list[Path] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def summary(self) -> str:
        failed = f", {len(self.failures)} failed" if self.failures else ""
        return (
            f"{self.files} file(s){failed}, {self.records} records, {self.batches} batches (requests) "
            f"in {self.seconds:.2f} s"
        )


def in_order(
    batches: Iterable[Batch], call: Callable[[Batch], bytes], concurrency: int
) -> Generator[tuple[Batch, bytes]]:
    """Up to ``concurrency`` requests in flight; answers come back in input order whatever order they finish in."""
    pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="invoke")
    window: deque[tuple[Batch, Future[bytes]]] = deque()
    interrupted = False
    try:
        for batch in batches:
            window.append((batch, pool.submit(call, batch)))
            if len(window) >= concurrency:
                b, fut = window.popleft()
                yield b, fut.result()
        while window:
            b, fut = window.popleft()
            yield b, fut.result()
    except KeyboardInterrupt:
        interrupted = True
        raise
    finally:
        for _, fut in window:
            fut.cancel()
        # After a failure, wait for the requests in flight so the next file never exceeds the concurrency;
        # after Ctrl-C, don't: the cleanup (container removal) comes first.
        pool.shutdown(wait=not interrupted, cancel_futures=True)


class FileTransformer:
    """Transforms one input file into ``<name>.out``, written to ``<name>.out.partial`` and renamed when complete."""

    def __init__(self, job: TransformJob, dp: dpmod.DataProcessing, params: ExecutionParameters, server: ModelServer):
        self.job, self.dp, self.params, self.server = job, dp, params, server
        accept = dpmod.media_type(job.accept)
        self.line_based_output = accept in (dpmod.CSV, dpmod.JSONLINES)
        # Output is matched record by record when DataProcessing needs it, or when each transformed record gets
        # its own line (AssembleWith Line) and the Accept type is one record per line.
        self.split_output = dp.per_record_output or (job.assemble_with == "Line" and self.line_based_output)
        self.separator = b"\n" if job.assemble_with == "Line" else b""

    def encode(self, name: str) -> Callable[[Record], bytes]:
        def encode(record: Record) -> bytes:
            try:
                return self.dp.request_record(record.data)
            except dpmod.RecordError as err:
                raise FileFailed(f"{name}: record {record.number} (line {record.line}): {err}") from None

        return encode

    def output_records(self, name: str, batch: Batch, body: bytes) -> list[bytes]:
        n = len(batch.records)
        if self.job.split_type == "None" or (n == 1 and not self.line_based_output):
            parts = [body.rstrip(b"\r\n")]
        else:
            parts = [p.rstrip(b"\r") for p in body.split(b"\n")]
            if parts and parts[-1] == b"":
                parts.pop()  # the terminator of the last line
        if len(parts) != n:
            raise FileFailed(
                f"{name}: batch {batch.number} ({batch.span}): expected {n} output records, received {len(parts)}; "
                f"the container must answer one line per record, in order"
            )
        return parts

    def render(self, name: str, batch: Batch, body: bytes) -> bytes:
        if not self.split_output:
            return body + self.separator
        out = []
        for record, output in zip(batch.records, self.output_records(name, batch, body), strict=True):
            try:
                out.append(self.dp.output_record(record.data, output) + self.separator)
            except dpmod.RecordError as err:
                raise FileFailed(f"{name}: record {record.number} (line {record.line}): {err}") from None
        return b"".join(out)

    def invocation_failure(self, name: str, batch: Batch, err: InvocationError) -> FileFailed:
        where = f"record {batch.records[0].number} (line {batch.records[0].line})"
        if len(batch.records) > 1:
            where = f"batch {batch.number} ({batch.span})"
            m = _LINE_IN_MESSAGE.search(err.message)
            if m and 1 <= int(m.group(1)) <= len(batch.records):
                # The container names a line of the payload: say which record of the file that is.
                r = batch.records[int(m.group(1)) - 1]
                where += f", record {r.number} (line {r.line}) is the container's line {m.group(1)}"
        tries = f" after {err.attempts} attempts" if err.attempts > 1 else ""
        return FileFailed(f"{name}: {where}: {err}{tries}")

    def run(self, path: Path, name: str, target: Path, report: Report) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(target.name + ".partial")
        target.unlink(missing_ok=True)  # a stale .out from an earlier run must not pass for this run's result
        limit = self.params.max_payload_mb * MIB or None
        records = batches = 0
        try:
            with path.open("rb") as src, partial.open("wb") as dst:
                packed = pack(
                    split_records(src, self.job.split_type),
                    split_type=self.job.split_type,
                    strategy=self.params.batch_strategy,
                    limit=limit,
                    encode=self.encode(name),
                )

                def call(batch: Batch) -> bytes:
                    try:
                        return self.server.invoke(batch.payload, self.job.content_type, self.job.accept)
                    except InvocationError as err:
                        raise self.invocation_failure(name, batch, err) from None

                answers = in_order(packed, call, self.params.max_concurrent_transforms)
                try:
                    for batch, body in answers:
                        dst.write(self.render(name, batch, body))
                        records += len(batch.records)
                        batches += 1
                finally:
                    answers.close()
                dst.flush()
                os.fsync(dst.fileno())
            os.replace(partial, target)
        except RecordTooLarge as err:
            partial.unlink(missing_ok=True)
            raise FileFailed(f"{name}: {err}") from None
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        report.records += records
        report.batches += batches
        report.outputs.append(target)


def run_transform(
    job: TransformJob,
    server: ModelServer,
    *,
    dp: dpmod.DataProcessing | None = None,
    log: Callable[[str], None] = print,
) -> Report:
    """Run a validated job against a healthy server. Files fail independently, like SageMaker's; the report lists
    the failures (the job failed if there is any)."""
    dp = dp or job.validate()
    files = list_inputs(job.inputs, job.output)
    params = resolve_execution_parameters(job, server.execution_parameters())
    log(f"[local transform]: {params.describe()}")
    transformer = FileTransformer(job, dp, params, server)
    report = Report()
    started = time.monotonic()
    for path, name in files:
        target = job.output / f"{name}.out"
        try:
            transformer.run(path, name, target, report)
        except FileFailed as err:
            report.failures.append(str(err))
            log(f"[local transform]: FAILED {err}")
        else:
            log(f"[local transform]: {name} -> {target}")
        report.files += 1
    report.seconds = time.monotonic() - started
    return report


# -- command line -------------------------------------------------------------------------------------------
class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2 (argparse prints the usage too)
        raise JobError(f"{self.prog}: {message}")


def _env(item: str) -> tuple[str, str]:
    key, sep, value = item.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, received {item!r}")
    return key, value


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m emulators.transform", description=__doc__.split("\n\n")[0])
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--image", help="serving image to start (docker run IMAGE serve)")
    where.add_argument("--endpoint", help="URL of a running model server, e.g. http://127.0.0.1:8080")
    p.add_argument("--model-dir", type=Path, help="with --image: model directory (or model.tar.gz) for /opt/ml/model")
    p.add_argument("--input", type=Path, required=True, help="input file, or folder (every file in it, sorted)")
    p.add_argument("--output", type=Path, required=True, help="output folder: one <name>.out per input file")
    p.add_argument("--content-type", help="TransformInput.ContentType, sent with each request")
    p.add_argument("--accept", help="TransformOutput.Accept, sent with each request")
    p.add_argument("--split-type", choices=("None", "Line"), default="None", help="TransformInput.SplitType")
    p.add_argument("--strategy", choices=("MultiRecord", "SingleRecord"), help="BatchStrategy")
    p.add_argument("--max-payload-mb", type=int, help="MaxPayloadInMB (0-100; 0 = no limit)")
    p.add_argument("--max-concurrent-transforms", type=int, help="MaxConcurrentTransforms (0 = not set)")
    p.add_argument("--assemble-with", choices=("None", "Line"), default="None", help="TransformOutput.AssembleWith")
    p.add_argument("--input-filter", default="$", help="DataProcessing.InputFilter (JSONPath)")
    p.add_argument("--join-source", choices=("None", "Input"), default="None", help="DataProcessing.JoinSource")
    p.add_argument("--output-filter", default="$", help="DataProcessing.OutputFilter (JSONPath)")
    p.add_argument("--env", type=_env, action="append", default=[], metavar="KEY=VALUE", help="container environment")
    p.add_argument("--invocations-timeout", type=int, default=600, help="ModelClientConfig.InvocationsTimeoutInSeconds")
    p.add_argument("--invocations-max-retries", type=int, default=3, help="ModelClientConfig.InvocationsMaxRetries")
    p.add_argument("--startup-timeout", type=float, default=240.0, help="seconds to wait for /ping (default 240)")
    return p


def job_from_args(args: argparse.Namespace) -> TransformJob:
    if args.image and args.model_dir is None:
        raise JobError("--image needs --model-dir (the model SageMaker would put in /opt/ml/model)")
    if args.endpoint and (args.model_dir is not None or args.env):
        raise JobError("--model-dir and --env apply to --image only; a running --endpoint keeps its own model and env")
    return TransformJob(
        inputs=args.input,
        output=args.output,
        content_type=args.content_type,
        accept=args.accept,
        split_type=args.split_type,
        assemble_with=args.assemble_with,
        batch_strategy=args.strategy,
        max_payload_mb=args.max_payload_mb,
        max_concurrent_transforms=args.max_concurrent_transforms,
        input_filter=args.input_filter,
        join_source=args.join_source,
        output_filter=args.output_filter,
        environment=dict(args.env),
        invocations_timeout=args.invocations_timeout,
        invocations_max_retries=args.invocations_max_retries,
    )


@contextlib.contextmanager
def _server(args: argparse.Namespace, job: TransformJob) -> Iterator[ModelServer]:
    make = lambda url: ModelServer(  # noqa: E731
        url, invocation_timeout=job.invocations_timeout, max_retries=job.invocations_max_retries
    )
    if args.endpoint:
        server = make(args.endpoint)
        server.wait_until_healthy(args.startup_timeout)
        yield server
        return
    from emulators.serving_container import run_serving_container

    with run_serving_container(args.image, args.model_dir, job.container_environment()) as container:
        server = make(container.url())
        print(f"[local transform]: started {args.image} as container {container.name} at {server.base_url}")
        try:
            server.wait_until_healthy(args.startup_timeout, alive=container.exit_reason)
        except ServerError as err:
            raise ServerError(f"{err}; container log: {container.log_tail(3)}") from None
        yield server


def _raise_interrupt(signum, frame):  # SIGTERM -> the same cleanup path as Ctrl-C
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        job = job_from_args(args)
        dp = job.validate()
        list_inputs(job.inputs, job.output)
    except JobError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        with _server(args, job) as server:
            report = run_transform(job, server, dp=dp)
    except JobError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except (ServerError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted; no partial output was kept", file=sys.stderr)
        return 130
    except Exception as err:  # e.g. docker failures: one line, not a traceback
        from emulators.serving_container import ContainerError

        if isinstance(err, ContainerError):
            print(f"error: {err}", file=sys.stderr)
            return 1
        raise
    print(f"[local transform]: {report.summary()}")
    if report.failures:
        print(f"error: the transform job failed: {report.failures[0]}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
