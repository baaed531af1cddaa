"""Numbered progress lines with timings, and the one way a step fails (a one-line reason, exit 1)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from pipelines.local.runners import RunnerError

INDENT = "      "


# A step cannot go on: one line for the user, ``log`` the job output that explains it. The same class as the
# runners' error, so a runner failure is a step failure without converting it.
StepFailed = RunnerError


class Progress:
    def __init__(self, total: int, out=None):
        self.total, self.n = total, 0
        self.current = ""
        self.timings: list[tuple[str, float]] = []
        self._out = out

    def say(self, text: str = "") -> None:
        print(text, file=self._out, flush=True)

    def detail(self, text: str) -> None:
        for line in text.splitlines() or [""]:
            self.say(INDENT + line)

    @contextmanager
    def step(self, name: str, title: str) -> Iterator[StepResult]:
        """``with progress.step("train", "train both algorithms") as result: ...; result.ok("one line")``."""
        self.n += 1
        self.current = name
        self.say(f"[{self.n}/{self.total}] {title}")
        t0 = time.perf_counter()
        result = StepResult()
        yield result
        elapsed = time.perf_counter() - t0
        self.timings.append((name, elapsed))
        self.say(f"{INDENT}-> {result.line or 'done'} ({elapsed:.1f}s)")


class StepResult:
    def __init__(self) -> None:
        self.line = ""

    def ok(self, line: str) -> None:
        self.line = line


def tail(log: str, lines: int = 12) -> str:
    kept = [line for line in log.splitlines() if line.strip()][-lines:]
    return "\n".join(kept)
