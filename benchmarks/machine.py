"""The machine a benchmark ran on, printed with its figures (numbers from another machine don't compare)."""

from __future__ import annotations

import contextlib
import os
import platform
import re
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path


def describe(packages: Iterable[str]) -> str:
    cpu = "unknown CPU"
    with contextlib.suppress(OSError, StopIteration):
        cpu = next(
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        )
    mem = ""
    with contextlib.suppress(OSError, AttributeError):
        kb = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1))  # type: ignore[union-attr]
        mem = f", {kb / 1024 / 1024:.0f} GiB RAM"
    load = os.getloadavg()
    versions = ", ".join(f"{p} {metadata.version(p)}" for p in packages)
    return (
        f"{cpu}, {len(os.sched_getaffinity(0))} cores{mem}; {platform.platform()}\n"
        f"python {platform.python_version()}, {versions}\n"
        f"load average at start: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
    )
