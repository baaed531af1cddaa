"""Multi-model endpoint benchmark: `python -m benchmarks.mme` (see benchmarks/README.md).

Trains the serving benchmark's XGBoost model (200 trees, `python -m algorithms.train`), then in one run:

  (a) invoke latency of a loaded model: single-record CSV with wrk, concurrency 1 and 8, against
      `POST /models/m/invoke` of a multi-model server and `POST /invocations` of a single-model server (all
      `python -m serving.serve`, the same workers and front, the same model), runs interleaved, with a second
      single-model server as the control: its ratio to the first is what this machine's noise alone gives;
  (b) load time per model: `POST /models` of N copies, one after the other (client-side wall time), with the
      memory each worker measured;
  (c) reload on use: a budget holding a few models, invoked round-robin so every invocation reloads its model,
      against invocations of a model the worker holds (the same workers, so one numeric thread each, as in (b)).
"""

from __future__ import annotations

import argparse
import math
import re
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import requests

from benchmarks.serving import CSV_RECORD, machine, row, train, wrk
from emulators.local_server import LocalServer

MME = {"SAGEMAKER_MULTI_MODEL": "true"}


def load(url: str, name: str, directory: Path) -> float:
    t0 = time.perf_counter()
    r = requests.post(f"{url}/models", json={"model_name": name, "url": str(directory)}, timeout=120)
    elapsed = time.perf_counter() - t0
    r.raise_for_status()
    return elapsed


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def latency(base: Path, tmp: Path, workers: int, seconds: int, rounds: int) -> dict:
    """(a): the same wrk runs against a single-model server, the multi-model one and, as the control, a second
    single-model server (its ratio to the first is the noise of this machine), in rotating order; medians."""
    env = {"SAGEMAKER_MODEL_SERVER_WORKERS": str(workers)}
    empty = tmp / "mme-base"
    empty.mkdir()
    results: dict = {}
    with (
        LocalServer("xgboost", base, workers=workers, env=env) as single,
        LocalServer("xgboost", base, workers=workers, env=env) as control,
        LocalServer("xgboost", empty, workers=workers, env={**env, **MME}) as multi,
    ):
        load(multi.url, "m", base / "model")
        targets = {
            "single": (single, "/invocations"),
            "multi": (multi, "/models/m/invoke"),
            "control": (control, "/invocations"),
        }
        for server, path in targets.values():  # warm-up: every worker has loaded the model and run it
            wrk(server.url, CSV_RECORD, "text/csv", 8, 2, tmp, path=path)
        names = list(targets)
        for c in (1, 8):
            runs: dict[str, list[dict]] = {name: [] for name in names}
            for i in range(rounds):
                for which in names[i % 3 :] + names[: i % 3]:
                    server, path = targets[which]
                    runs[which].append(wrk(server.url, CSV_RECORD, "text/csv", c, seconds, tmp, server.pid, path=path))
            for which, measured in runs.items():
                results[f"{which}_c{c}"] = {
                    key: statistics.median(r[key] for r in measured)
                    for key in ("rps", "p50_ms", "p99_ms", "server_cpu_us", "wrk_cpu_us")
                } | {"errors": sum(r["errors"] for r in measured)}
            # A round's runs are next to each other in time: their ratio drifts less with other load.
            for which in ("multi", "control"):
                results[f"{which}_ratio_c{c}"] = {
                    key: statistics.median(m[key] / s[key] for m, s in zip(runs[which], runs["single"], strict=True))
                    for key in ("rps", "p50_ms", "server_cpu_us")
                }
    return results


def routing_overhead(base: Path, tmp: Path, n: int = 20000) -> float:
    """In-process: microseconds the multi-model path adds to a request of a held model (route + registry stat)."""
    from serving.multimodel import Action, MultiModel, create_registry

    registry = create_registry()
    try:
        mm = MultiModel(registry, env={"ALGORITHM": "xgboost"}, threads=1, budget=1 << 30)
        mm.registry.add("m", str(base / "model"))
        mm.served("m")
        best = math.inf
        for _ in range(5):
            t0 = time.perf_counter()
            for _ in range(n):
                action = mm.handle("POST", "/models/m/invoke", "")
                assert isinstance(action, Action)
                mm.cached(action.name)
            best = min(best, (time.perf_counter() - t0) / n * 1e6)
        return best
    finally:
        shutil.rmtree(registry, ignore_errors=True)


def load_times(base: Path, tmp: Path, workers: int, n: int) -> dict:
    """(b): N copies of the model loaded one after the other."""
    copies = []
    for i in range(n):
        copies.append(tmp / "models" / f"m{i}" / "model")
        shutil.copytree(base / "model", copies[-1])
    empty = tmp / "load-base"
    empty.mkdir()
    with LocalServer("xgboost", empty, workers=workers, env=MME) as server:
        times = [load(server.url, f"m{i}", d) for i, d in enumerate(copies)]
        log = server.log()
    sizes = [float(x) for x in re.findall(r"loaded from .*? \(([\d.]+) MiB\)", log)]
    return {
        "n": n,
        "files_mib": sum(p.stat().st_size for p in (base / "model").iterdir()) / 2**20,
        "median_ms": statistics.median(times) * 1000,
        "p90_ms": pct(times, 0.9) * 1000,
        "first_ms": times[0] * 1000,  # the worker's first load also initialises the library
        "measured_mib": statistics.median(sizes) if sizes else float("nan"),
    }


def reload_on_use(base: Path, tmp: Path, workers: int, n: int, held: int, repeats: int) -> dict:
    """(c): a budget of ``held`` models per worker, ``n`` models invoked round-robin on one keep-alive connection
    (so one worker answers them all): each invocation reloads its model."""
    copies = sorted((tmp / "models").glob("m*/model"))[:n]
    size = sum(p.stat().st_size for p in (base / "model").iterdir())
    env = {**MME, "SERVING_MME_MEMORY_MB": f"{workers * held * size * 1.2 / 2**20:.3f}"}
    empty = tmp / "reload-base"
    empty.mkdir()
    cold, warm = [], []
    headers = {"Content-Type": "text/csv"}
    with LocalServer("xgboost", empty, workers=workers, env=env) as server, requests.Session() as session:
        for i, d in enumerate(copies):
            load(server.url, f"m{i}", d)
        for _ in range(repeats):
            for i in range(len(copies)):
                t0 = time.perf_counter()
                session.post(f"{server.url}/models/m{i}/invoke", data=CSV_RECORD, headers=headers).raise_for_status()
                cold.append(time.perf_counter() - t0)
        for _ in range(repeats * len(copies)):
            t0 = time.perf_counter()
            session.post(f"{server.url}/models/m0/invoke", data=CSV_RECORD, headers=headers).raise_for_status()
            warm.append(time.perf_counter() - t0)
        loads = [float(x) for x in re.findall(r"loaded on use in ([\d.]+) ms", server.log())]
    return {
        "invocations": len(cold),
        "reloads": len(loads),
        "load_median_ms": statistics.median(loads) if loads else float("nan"),
        "cold_median_ms": statistics.median(cold) * 1000,
        "warm_median_ms": statistics.median(warm) * 1000,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.mme", description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=4, help="duration of each wrk run")
    parser.add_argument("--rounds", type=int, default=6, help="wrk runs per server and concurrency (median)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--models", type=int, default=50, help="models loaded in (b)")
    args = parser.parse_args(argv)
    if not shutil.which("wrk"):
        sys.exit("wrk not found (apt-get install wrk)")
    print("Machine:", machine(), sep="\n", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-mme-") as tmp_name:
        tmp = Path(tmp_name)
        print("\nTraining XGBoost (num_round=200, no early stopping) with python -m algorithms.train ...", flush=True)
        base = train(tmp / "job")

        print(f"\n(a) single record, wrk {args.seconds}s x {args.rounds} interleaved runs (median), "
              f"{args.workers} workers, default front", flush=True)  # fmt: skip
        lat = latency(base, tmp, args.workers, args.seconds, args.rounds)
        for c in (1, 8):
            print(row(f"single-model c{c}", lat[f"single_c{c}"]))
            print(row(f"multi-model  c{c}", lat[f"multi_c{c}"]))
            print(row(f"control      c{c}", lat[f"control_c{c}"]), flush=True)

        overhead = routing_overhead(base, tmp)

        print(f"\n(b) POST /models of {args.models} copies, one after the other", flush=True)
        loads = load_times(base, tmp, args.workers, args.models)
        print(f"  {loads['files_mib']:.2f} MiB of files per model; load median {loads['median_ms']:.1f} ms, "
              f"p90 {loads['p90_ms']:.1f} ms (a worker's first: {loads['first_ms']:.0f} ms); measured in memory "
              f"{loads['measured_mib']:.2f} MiB per model", flush=True)  # fmt: skip

        n_reload = min(12, args.models)
        print(f"\n(c) reload on use: a budget of 4 models per worker, {n_reload} models invoked round-robin",
              flush=True)  # fmt: skip
        reload = reload_on_use(base, tmp, args.workers, n_reload, 4, 3)
        print(f"  {reload['invocations']} invocations, {reload['reloads']} reloads: median "
              f"{reload['cold_median_ms']:.1f} ms per invocation (reload {reload['load_median_ms']:.1f} ms), "
              f"vs {reload['warm_median_ms']:.2f} ms for a held model",
              flush=True)  # fmt: skip

    print("\nTargets (issue #13, ratios within this run):")
    for c in (1, 8):
        ratio, noise = lat[f"multi_ratio_c{c}"], lat[f"control_ratio_c{c}"]
        p50 = ratio["p50_ms"]
        print(f"  c{c}: multi-model / single-model (median of paired runs): p50 latency {p50:.2f}x, throughput "
              f"{ratio['rps']:.2f}x, server CPU per request {ratio['server_cpu_us']:.2f}x "
              f"({'met' if p50 <= 1.10 else 'MISSED'}: latency within 10%); the control (a second single-model "
              f"server): {noise['p50_ms']:.2f}x, {noise['rps']:.2f}x, {noise['server_cpu_us']:.2f}x")  # fmt: skip
    single_cpu = lat["single_c1"]["server_cpu_us"]
    print(f"  in-process, the multi-model path adds {overhead:.1f} us per request (route + registry stat) = "
          f"{overhead / single_cpu:.1%} of the single-model server's CPU per request at c1")  # fmt: skip
    print("Note: wrk runs on the same cores as the server; other load on the machine moves every figure.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
