"""Run `python -m serving.serve` as a local process on a free port: `docker run IMAGE serve`, without Docker.

Used by the tests, the benchmark and the main job::

    with LocalServer("xgboost", base_dir) as server:       # base_dir/model holds what training wrote
        requests.post(server.url + "/invocations", ...)
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_port_pair() -> int:
    """A port p with p and p + 1 free: XGBoost's tracker uses both (algorithms.distributed)."""
    for _ in range(50):
        port = free_port()
        try:
            with socket.socket() as s:
                s.bind(("127.0.0.1", port + 1))
            return port
        except OSError:
            continue
    raise RuntimeError("no two consecutive free ports on 127.0.0.1")


class LocalServer:
    def __init__(
        self,
        algorithm: str,
        base_dir: str | Path,
        *,
        workers: int = 1,
        port: int | None = None,
        env: Mapping[str, str] | None = None,
        module: str = "serving.serve",
    ):
        self.algorithm, self.base_dir, self.workers = algorithm, Path(base_dir), workers
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.extra_env = dict(env or {})
        self.module = module
        self.process: subprocess.Popen | None = None
        self._log = tempfile.NamedTemporaryFile(prefix="serving-", suffix=".log", delete=False)  # noqa: SIM115

    def command(self) -> list[str]:
        return [sys.executable, "-m", self.module]

    def environment(self) -> dict[str, str]:
        return {
            **os.environ,
            "PYTHONUNBUFFERED": "1",
            "ALGORITHM": self.algorithm,
            "SAGEMAKER_BASE_DIR": str(self.base_dir),
            "SAGEMAKER_BIND_TO_PORT": str(self.port),
            "SAGEMAKER_MODEL_SERVER_WORKERS": str(self.workers),
            **self.extra_env,
        }

    def start(self, timeout: float = 60) -> int:
        """Start and wait until /ping answers (200, or 500 when the model cannot load); return its status."""
        self.process = subprocess.Popen(
            self.command(), cwd=REPO, env=self.environment(), stdout=self._log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}:\n{self.log()}")
            try:
                with urllib.request.urlopen(self.url + "/ping", timeout=2) as response:
                    return response.status
            except urllib.error.HTTPError as e:
                return e.code
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"server did not answer /ping within {timeout:g}s:\n{self.log()}")

    @property
    def pid(self) -> int:
        """The server's (gunicorn arbiter's) process id; the server must be running."""
        if self.process is None:
            raise RuntimeError("the server is not started")
        return self.process.pid

    def stop(self, timeout: float = 30) -> int | None:
        """SIGTERM (what SageMaker sends), wait for the drain; SIGKILL only if it overstays ``timeout``."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def log(self) -> str:
        self._log.flush()
        return Path(self._log.name).read_text(errors="replace")

    def __enter__(self) -> LocalServer:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
        Path(self._log.name).unlink(missing_ok=True)
