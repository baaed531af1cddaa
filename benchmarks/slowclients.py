"""Hostile-but-ordinary clients for the serving benchmark and tests: idle connections and slowloris senders.

Only ever against 127.0.0.1. Bounded: a run holds at most ``idle + slowloris`` sockets, sends one byte per
slowloris connection per ``interval``, and stops by itself after ``seconds``.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import statistics
import threading
import time
from typing import cast

_SLOW_HEAD = b"GET /ping HTTP/1.1\r\nHost: x\r\nX-Slow: "


class SlowClients:
    """``idle`` connections that send nothing and ``slowloris`` ones that send a header byte per ``interval``.

    A connection the server closes is opened again, so the pressure stays the same for the whole run.
    """

    def __init__(self, port: int, *, idle: int = 200, slowloris: int = 16, seconds: float = 30, interval: float = 1.0):
        self.port, self.idle, self.slowloris = port, idle, slowloris
        self.seconds, self.interval = seconds, interval
        self.stop = threading.Event()
        self.reconnects = 0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> SlowClients:
        self.thread.start()
        time.sleep(0.5)  # every connection is open before the caller measures
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join(10)

    def _connect(self) -> socket.socket | None:
        try:
            s = socket.create_connection(("127.0.0.1", self.port), timeout=2)
        except OSError:
            return None
        s.setblocking(False)
        return s

    def _run(self) -> None:
        sel = selectors.DefaultSelector()
        slow: dict[socket.socket, int] = {}
        for i in range(self.idle + self.slowloris):
            s = self._connect()
            if s is None:
                continue
            sel.register(s, selectors.EVENT_READ, i >= self.idle)
            if i >= self.idle:
                slow[s] = 0
        end = time.monotonic() + self.seconds
        next_byte = time.monotonic()
        while not self.stop.is_set() and time.monotonic() < end:
            for key, _ in sel.select(timeout=0.1):
                s, is_slow = cast(socket.socket, key.fileobj), key.data
                try:
                    data = s.recv(4096)
                except OSError:
                    data = b""
                if data:
                    continue  # an error page: the server closes next
                sel.unregister(s)
                slow.pop(s, None)
                s.close()
                fresh = self._connect()
                self.reconnects += 1
                if fresh is not None:
                    sel.register(fresh, selectors.EVENT_READ, is_slow)
                    if is_slow:
                        slow[fresh] = 0
            if time.monotonic() >= next_byte:
                next_byte += self.interval
                for s, sent in list(slow.items()):
                    byte = _SLOW_HEAD[sent : sent + 1] or b"a"
                    with contextlib.suppress(OSError):
                        s.send(byte)
                    slow[s] = sent + 1
        for key in list(sel.get_map().values()):
            with contextlib.suppress(OSError):
                key.fileobj.close()  # type: ignore[union-attr]
        sel.close()


def ping_latencies(port: int, seconds: float, interval: float = 0.1, timeout: float = 2.0) -> dict:
    """/ping on a new connection every ``interval`` for ``seconds``: latency figures in ms, and failures (no 200
    within ``timeout``, SageMaker's limit)."""
    request = b"GET /ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    latencies, failures = [], 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        t0 = time.monotonic()
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
                s.settimeout(max(0.01, timeout - (time.monotonic() - t0)))
                s.sendall(request)
                answer = s.recv(1024)
            ok = answer.startswith(b"HTTP/1.1 200")
        except OSError:
            ok = False
        elapsed = time.monotonic() - t0
        if ok and elapsed <= timeout:
            latencies.append(elapsed * 1000)
        else:
            failures += 1
        time.sleep(max(0.0, interval - elapsed))
    latencies.sort()
    n = len(latencies)
    return {
        "pings": n + failures,
        "failures": failures,
        "p50_ms": statistics.median(latencies) if n else None,
        "p99_ms": latencies[min(n - 1, int(n * 0.99))] if n else None,
        "max_ms": latencies[-1] if n else None,
    }
