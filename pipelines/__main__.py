"""The pipelines' command line.

    python -m pipelines build                 write pipelines/definitions/*.asl.json from the builders
    python -m pipelines check                 the files are current, and every request fits botocore's models
    python -m pipelines diagram [NAME]        the Mermaid flowchart of a definition
    python -m pipelines run training [--algorithm xgboost|linear|both] [--data FILE] [--runner auto|docker|local]
                                     [--workdir DIR] [--rmse-threshold N] [--hyperparameter KEY=VALUE ...]

``run`` executes the checked-in definition unchanged in moto's ASL interpreter, with SageMaker jobs and endpoints
run by our images on this machine (see pipelines/local). It prints each state as it is entered and left, the
SNS messages, and the execution's result. Exit codes: 0 every execution succeeded (a model kept because the
deployed one is as good counts as success), 1 an execution failed, 2 bad command line.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from pipelines import definitions, diagram, requests, training

REPO = Path(__file__).resolve().parent.parent


def _build(_: argparse.Namespace) -> int:
    for path in definitions.write_all():
        print(f"wrote {path.relative_to(REPO)}")
    return 0


def _check(_: argparse.Namespace) -> int:
    problems = []
    for name in definitions.BUILDERS:
        path = definitions.path(name)
        if not path.is_file() or path.read_text() != definitions.render(name):
            problems.append(f"{path.relative_to(REPO)} is not what the builder writes: run python -m pipelines build")
        problems += requests.check(definitions.BUILDERS[name]())
    for p in problems:
        print(p, file=sys.stderr)
    if not problems:
        print(f"{len(definitions.BUILDERS)} definition(s) current; every request fits botocore's service models")
    return 1 if problems else 0


def _diagram(args: argparse.Namespace) -> int:
    print(diagram.mermaid(definitions.load(args.name), definitions.MODULES[args.name].NOTIFY_FAILURE), end="")
    return 0


def _hyperparameter(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, received {text!r}")
    return key, value


def _run(args: argparse.Namespace) -> int:
    from pipelines.local import runners
    from pipelines.local.execute import LocalAws

    algorithms = ("xgboost", "linear") if args.algorithm == "both" else (args.algorithm,)
    runner = runners.pick(args.runner)
    print(f"runner: {runner.describe()}")
    failed = False
    with LocalAws(args.workdir.resolve(), runner) as aws:
        data_uri = aws.upload(args.data, f"data/training/{args.data.name}")
        for algorithm in algorithms:
            overrides: dict = {"RmseThreshold": args.rmse_threshold}
            if args.hyperparameter:
                overrides["HyperParameters"] = dict(args.hyperparameter)
            payload = aws.training_input(algorithm, data_uri, **overrides)
            name = f"{algorithm}-{time.strftime('%Y%m%d%H%M%S')}"
            print(f"\nexecution {name} of {aws.machines['training']}")
            result = aws.execute("training", payload, name, on_event=lambda line: print("  " + line, flush=True))
            for m in result.messages:
                print(f"  SNS: {m['Subject']}\n       {m['Message']}")
            print(f"  {result.status} in {result.seconds:.1f} s")
            if result.status == "SUCCEEDED":
                print("  output: " + json.dumps(result.output))
            else:
                print(f"  error: {result.error}: {result.cause}")
                failed = True
    return 1 if failed else 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m pipelines", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("build", help="write the ASL files").set_defaults(func=_build)
    sub.add_parser("check", help="files current, requests valid").set_defaults(func=_check)
    d = sub.add_parser("diagram", help="Mermaid flowchart")
    d.add_argument("name", nargs="?", default="training", choices=sorted(definitions.BUILDERS))
    d.set_defaults(func=_diagram)
    r = sub.add_parser("run", help="execute a pipeline on this machine")
    r.add_argument("machine", choices=["training"])
    r.add_argument("--algorithm", choices=("xgboost", "linear", "both"), default="both")
    r.add_argument("--data", type=Path, default=REPO / "cardata" / "car_prices.csv")
    r.add_argument("--runner", choices=("auto", "docker", "local"), default="auto")
    r.add_argument("--workdir", type=Path, default=REPO / "build" / "pipelines")
    r.add_argument("--rmse-threshold", type=float, default=training.EXAMPLE_INPUT["RmseThreshold"])
    r.add_argument("--hyperparameter", type=_hyperparameter, action="append", metavar="KEY=VALUE")
    r.set_defaults(func=_run)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if getattr(args, "data", None) is not None and not args.data.is_file():
        parser().error(f"--data {args.data}: no such file")
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
