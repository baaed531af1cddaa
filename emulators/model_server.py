"""The HTTP side of a batch transform: /ping, /execution-parameters and /invocations, the way SageMaker calls them.

- /ping is polled until it answers 200 (each attempt times out after 2 s, as on SageMaker).
- /execution-parameters is optional: any answer but a 200 with a JSON object means "no suggestion".
- /invocations is retried on 5xx answers and connection failures up to InvocationsMaxRetries (default 3),
  each attempt bounded by InvocationsTimeoutInSeconds (default 600) (API ModelClientConfig). A 4xx answer is the
  container rejecting the data: retrying cannot change it, so it fails at once.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import requests

PING_TIMEOUT = 2.0
_MESSAGE_LIMIT = 500


class ServerError(RuntimeError):
    """The model server cannot be used (never healthy, unreachable, nonsense execution parameters)."""


@dataclass
class InvocationError(Exception):
    """/invocations answered with an error status (or not at all)."""

    status: int | None  # None: no HTTP answer (connection refused, timeout)
    message: str
    attempts: int

    def __str__(self) -> str:
        what = f"ClientError: {self.status}" if self.status is not None else "no answer"
        return f"{what}: {self.message}"


def _one_line(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _MESSAGE_LIMIT else text[: _MESSAGE_LIMIT - 3] + "..."


class ModelServer:
    def __init__(self, base_url: str, *, invocation_timeout: float = 600.0, max_retries: int = 3):
        self.base_url = base_url.rstrip("/")
        self.invocation_timeout = invocation_timeout
        self.max_retries = max_retries
        self._local = threading.local()  # a requests.Session is not shared between threads

    @property
    def session(self) -> requests.Session:
        s = getattr(self._local, "session", None)
        if s is None:
            s = self._local.session = requests.Session()
            s.trust_env = False  # never route 127.0.0.1 through a proxy from the environment
        return s

    def wait_until_healthy(self, timeout: float, alive: Callable[[], str | None] = lambda: None) -> None:
        """Poll /ping until 200. ``alive`` returns a reason when the server process died (stop waiting)."""
        deadline = time.monotonic() + timeout
        last = "no answer yet"
        while True:
            try:
                r = self.session.get(f"{self.base_url}/ping", timeout=PING_TIMEOUT)
                if r.status_code == 200:
                    return
                last = f"/ping answered {r.status_code}"
            except requests.RequestException as err:
                last = f"/ping failed: {type(err).__name__}"
            dead = alive()
            if dead:
                raise ServerError(f"the model server stopped before it was healthy: {dead}")
            if time.monotonic() >= deadline:
                raise ServerError(f"the model server at {self.base_url} was not healthy within {timeout:g} s ({last})")
            time.sleep(0.2)

    def execution_parameters(self) -> dict | None:
        try:
            r = self.session.get(f"{self.base_url}/execution-parameters", timeout=PING_TIMEOUT)
        except requests.RequestException:
            return None
        if r.status_code != 200:
            return None
        try:
            answer = r.json()
        except ValueError:
            raise ServerError(f"/execution-parameters answered 200 with a non-JSON body: {r.text[:60]!r}") from None
        if not isinstance(answer, dict):
            raise ServerError(f"/execution-parameters answered {json.dumps(answer)[:80]}; expected a JSON object")
        return answer

    def invoke(self, payload: bytes, content_type: str | None, accept: str | None) -> bytes:
        headers = {}
        if content_type:
            headers["Content-Type"] = content_type
        if accept:
            headers["Accept"] = accept
        attempts = 0
        while True:
            attempts += 1
            try:
                r = self.session.post(
                    f"{self.base_url}/invocations", data=payload, headers=headers, timeout=self.invocation_timeout
                )
            except requests.RequestException as err:
                error = InvocationError(None, f"{type(err).__name__}: {_one_line(str(err))}", attempts)
            else:
                if r.status_code < 400:
                    return r.content
                error = InvocationError(r.status_code, _one_line(r.text) or r.reason or "", attempts)
                if r.status_code < 500:
                    raise error
            if attempts > self.max_retries:
                raise error
