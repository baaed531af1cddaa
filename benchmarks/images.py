"""Benchmark: image sizes and cold start (`docker run` -> first `/ping` 200) of the images, against a baseline.

    python -m benchmarks.images [--tag lean] [--baseline latest] [--repeats 5]

For each image, built under --tag and under --baseline (another tag of the same repositories, e.g. the images built
from main before a change): its size as `docker images` reports it, the distributions it carries, its user; for
the two serving images, the cold start: the time from `docker run -d` until the first `GET /ping` answers 200
(polled every 10 ms on a published 127.0.0.1 port), median and range of --repeats runs (the images interleaved,
so they share the machine's load), each as SageMaker starts an
endpoint: `serve`, the model mounted read-only, default settings (one worker per core), read-only root with a
tmpfs /tmp, as a non-root uid. The floor is `docker run` of `/bin/true` in the same image (container creation and
start, no Python). The model: the real entry point (`python -m algorithms.train`) on cardata/car_prices.csv.

Prints the machine and its load before and after: other processes on a shared 2-core machine stretch cold starts.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from benchmarks.machine import describe

ROOT = Path(__file__).resolve().parent.parent
SERVING = ("xgboost", "linear")
ALL = (*SERVING, "monitor")
READY_TIMEOUT = 60.0
# What the distributions listing runs inside an image: no pip needed.
LIST_DISTRIBUTIONS = (
    "import importlib.metadata as m, json;"
    "print(json.dumps(sorted({d.metadata['Name'].lower() for d in m.distributions()})))"
)


def docker(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode:
        raise SystemExit(f"benchmarks.images: docker {' '.join(args[:3])}... exited {proc.returncode}: {proc.stderr}")
    return proc


def exists(image: str) -> bool:
    return docker("image", "inspect", image, check=False).returncode == 0


def size_mb(image: str) -> float:
    return int(docker("image", "inspect", "-f", "{{.Size}}", image).stdout) / 1e6


def user_of(image: str) -> str:
    return docker("image", "inspect", "-f", "{{.Config.User}}", image).stdout.strip() or "root (unset)"


def distributions(image: str) -> list[str]:
    proc = docker("run", "--rm", "--read-only", "--entrypoint", "python", image, "-c", LIST_DISTRIBUTIONS)
    return json.loads(proc.stdout)


def train_model(work: Path, algorithm: str) -> Path:
    """The model the endpoint serves, trained by the real entry point on the bundled data."""
    base = work / algorithm
    config, channel = base / "input" / "config", base / "input" / "data" / "train"
    config.mkdir(parents=True)
    channel.mkdir(parents=True)
    (channel / "car_prices.csv").write_bytes((ROOT / "cardata" / "car_prices.csv").read_bytes())
    (config / "hyperparameters.json").write_text(json.dumps({"target": "price"}))
    (config / "inputdataconfig.json").write_text(json.dumps({"train": {"ContentType": "text/csv"}}))
    (config / "resourceconfig.json").write_text(json.dumps({"current_host": "algo-1", "hosts": ["algo-1"]}))
    env = {**os.environ, "SAGEMAKER_BASE_DIR": str(base), "ALGORITHM": algorithm}
    proc = subprocess.run([sys.executable, "-m", "algorithms.train"], env=env, cwd=ROOT, capture_output=True)
    if proc.returncode:
        raise SystemExit(f"benchmarks.images: training {algorithm} failed:\n{proc.stderr.decode()[-2000:]}")
    model = base / "model"
    model.chmod(0o755)
    for path in model.iterdir():
        path.chmod(0o644)  # readable by whichever uid the image runs as
    return model


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.sendall(b"GET /ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            return s.recv(64).startswith(b"HTTP/1.1 200")
    except OSError:
        return False


def cold_start(image: str, model: Path) -> float:
    port, name = free_port(), f"byoc-bench-{uuid.uuid4().hex[:8]}"
    args = ["run", "-d", "--name", name, "--read-only", "--tmpfs", "/tmp", "--user", "1000:1000"]
    args += ["-v", f"{model}:/opt/ml/model:ro", "-p", f"127.0.0.1:{port}:8080", image, "serve"]
    t0 = time.perf_counter()
    try:
        docker(*args)
        while not ping(port):
            if time.perf_counter() - t0 > READY_TIMEOUT:
                logs = docker("logs", name, check=False)
                raise SystemExit(f"benchmarks.images: {image} not ready in {READY_TIMEOUT:.0f} s:\n{logs.stderr}")
            time.sleep(0.01)
        return time.perf_counter() - t0
    finally:
        docker("rm", "-f", name, check=False)


def floor(image: str) -> float:
    t0 = time.perf_counter()
    docker("run", "--rm", "--read-only", "--user", "1000:1000", "--entrypoint", "/bin/true", image)
    return time.perf_counter() - t0


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):5.2f} s (min {min(values):.2f}, max {max(values):.2f})"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.images", description=__doc__.splitlines()[0])
    p.add_argument("--tag", default="latest", help="the images measured (byoc-<name>:TAG)")
    p.add_argument("--baseline", help="the images compared against (byoc-<name>:BASELINE); none: no comparison")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--images", default=",".join(ALL), help=f"some of {','.join(ALL)}")
    p.add_argument("--json", type=Path, help="also write the figures here")
    args = p.parse_args(argv)
    names = [n for n in args.images.split(",") if n]
    tags = [t for t in (args.baseline, args.tag) if t]
    missing = [f"byoc-{n}:{t}" for n in names for t in tags if not exists(f"byoc-{n}:{t}")]
    if missing:
        raise SystemExit(f"benchmarks.images: images not built: {', '.join(missing)}")
    print(describe(["xgboost-cpu", "numpy"]))
    print(docker("version", "-f", "docker {{.Server.Version}}").stdout.strip())
    figures: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="bench-images-") as tmp:
        os.chmod(tmp, 0o755)
        models = {n: train_model(Path(tmp), n) for n in names if n in SERVING}
        for name in names:
            images = [f"byoc-{name}:{tag}" for tag in tags]
            for image in images:
                figures[image] = {
                    "size_mb": size_mb(image),
                    "user": user_of(image),
                    "distributions": distributions(image),
                }
            if name in models:
                for image in images:
                    cold_start(image, models[name])  # warm the page cache: every run then starts alike
                    figures[image].update(cold_start_s=[], floor_s=[])
                # Interleaved, so the images share whatever load the machine has while they are measured.
                for _ in range(args.repeats):
                    for image in images:
                        figures[image]["cold_start_s"].append(cold_start(image, models[name]))
                        figures[image]["floor_s"].append(floor(image))
            print(f"\nbyoc-{name}")
            for tag, image in zip(tags, images, strict=True):
                row = figures[image]
                print(f"  {tag:>12}: {row['size_mb']:5.0f} MB, user {row['user']}, {len(row['distributions'])} dists")
                if "cold_start_s" in row:
                    cold, base = spread(row["cold_start_s"]), spread(row["floor_s"])
                    print(f"  {'':>12}  cold start {cold}; docker run floor {base}")
            if len(tags) == 2:
                before, after = (figures[image] for image in images)
                gone = sorted(set(before["distributions"]) - set(after["distributions"]))
                new = sorted(set(after["distributions"]) - set(before["distributions"]))
                print(f"  size {after['size_mb'] / before['size_mb']:.2f}x of {args.baseline}", end="")
                if "cold_start_s" in after:
                    ratio = statistics.median(after["cold_start_s"]) / statistics.median(before["cold_start_s"])
                    print(f", cold start {ratio:.2f}x", end="")
                print(f"\n  left out: {', '.join(gone) or '-'}\n  added: {', '.join(new) or '-'}")
    load = os.getloadavg()
    print(f"\nload average at end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print("targets: algorithm images < 350 MB, cold start < 1 s on an idle machine")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
