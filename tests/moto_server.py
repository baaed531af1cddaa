"""A moto server of a test module's own, on a free port: `with moto_server() as url: ...`."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import requests

from emulators.local_server import free_port

START_SECONDS = 60


@contextlib.contextmanager
def moto_server() -> Iterator[str]:
    port = free_port()
    exe = Path(sys.executable).parent / "moto_server"
    proc = subprocess.Popen(
        [str(exe), "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_SECONDS
        while True:
            try:
                requests.get(f"{url}/moto-api/", timeout=0.5)
                break
            except requests.ConnectionError:
                assert proc.poll() is None, f"moto_server exited: {proc.stderr.read().decode() if proc.stderr else ''}"
                assert time.monotonic() < deadline, f"moto_server did not answer {url} within {START_SECONDS} s"
                time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)
