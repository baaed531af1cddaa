"""`python -m serving.serve`: what the images run for `serve`. gunicorn's arbiter + our worker, for every algorithm.

Settings (environment):
  ALGORITHM                          which plug-in loads /opt/ml/model (xgboost | linear)
  SAGEMAKER_BASE_DIR                 relocates /opt/ml outside a container
  SAGEMAKER_BIND_TO_PORT             port (default 8080), bound on 0.0.0.0
  SAGEMAKER_MODEL_SERVER_WORKERS     worker processes (default: CPU count)
  SAGEMAKER_MODEL_SERVER_TIMEOUT     seconds a request may take (default 60)
  SAGEMAKER_MAX_PAYLOAD_IN_MB        request size limit in MiB (default 6; batch transform sends up to 100)
  SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT  format for an empty or */* Accept (default text/csv)
  SERVING_UNKNOWN_CATEGORY           error (default: 400) | missing (treat unseen levels as missing)
  SERVING_WORKER_CLASS               async (default): serving.front, one asyncio loop per worker, scoring off the
                                     loop; gthread: gunicorn's threads (serving.worker, the former default); sync
                                     and gevent: gunicorn's own, for measurements
  SERVING_HEADER_TIMEOUT             seconds for a request's headers to arrive (default 10; async): else 408
  SERVING_BODY_TIMEOUT               seconds for a request's body to arrive (default 60; async): else 408
  SERVING_THREADS                    threads per gthread worker (default 2)
  SERVING_MAX_REQUESTS_PER_CONNECTION  requests before a keep-alive connection is closed (default 100)
  SERVING_ACCESS_LOG                 1 (default): one compact line per request except /ping; 0: none
  SAGEMAKER_MULTI_MODEL              true: a multi-model endpoint (serving.multimodel); no /opt/ml/model
  SERVING_MME_MEMORY_MB              multi-model: memory for loaded models, whole container (default: half of it)

Each worker loads the model once when it starts (never on a request), with max(1, cpus // workers) numeric
threads so workers don't fight over cores. SIGTERM drains in-flight requests and exits 0 (SageMaker sends
SIGKILL 30 s after SIGTERM; the drain gets 25 s).
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
from collections.abc import Mapping

from gunicorn.app.base import BaseApplication
from gunicorn.glogging import Logger

from core.errors import ConfigurationError
from serving.settings import choice, model_options, switch

log = logging.getLogger("serving")
GRACEFUL_TIMEOUT = 25
# SERVING_WORKER_CLASS -> gunicorn worker class. async: serving.front (event-driven); the others are gunicorn's.
WORKER_CLASSES = {
    "async": "serving.front.AsyncWorker",
    "gthread": "serving.worker.Worker",
    "sync": "sync",
    "gevent": "gevent",
}


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 1, maximum: int | None = None) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigurationError(f"environment variable {name}: expected an integer, received {raw!r}") from None
    if value < minimum or (maximum is not None and value > maximum):
        allowed = f">= {minimum}" if maximum is None else f"in [{minimum}, {maximum}]"
        raise ConfigurationError(f"environment variable {name}: expected an integer {allowed}, received {value}")
    return value


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


class Settings:
    def __init__(self, env: Mapping[str, str] = os.environ):
        cpus = cpu_count()
        self.port = _int(env, "SAGEMAKER_BIND_TO_PORT", 8080, minimum=0, maximum=65535)
        self.workers = _int(env, "SAGEMAKER_MODEL_SERVER_WORKERS", cpus)
        self.timeout = _int(env, "SAGEMAKER_MODEL_SERVER_TIMEOUT", 60)
        self.max_payload_mb = _int(env, "SAGEMAKER_MAX_PAYLOAD_IN_MB", 6)
        self.worker_class = choice(env, "SERVING_WORKER_CLASS", tuple(WORKER_CLASSES), "async")
        self.threads = _int(env, "SERVING_THREADS", 2)
        self.max_requests_per_connection = _int(env, "SERVING_MAX_REQUESTS_PER_CONNECTION", 100)
        self.header_timeout = _int(env, "SERVING_HEADER_TIMEOUT", 10)
        self.body_timeout = _int(env, "SERVING_BODY_TIMEOUT", 60)
        self.numeric_threads = max(1, cpus // self.workers)
        self.access_log = switch(env, "SERVING_ACCESS_LOG", True)
        # Checked here too, so that a bad value stops the server instead of leaving every worker not ready.
        self.model = model_options(env)

    def describe(self) -> str:
        threads = f" x {self.threads} threads" if self.worker_class == "gthread" else ""
        return (
            f"bind=0.0.0.0:{self.port} workers={self.workers} ({self.worker_class}{threads}) "
            f"numeric_threads_per_worker={self.numeric_threads} timeout={self.timeout}s "
            f"max_payload={self.max_payload_mb}MiB"
        )


class QuietPingLogger(Logger):
    """Access log: one compact line per request, none for /ping (SageMaker pings every few seconds)."""

    def access(self, resp, req, environ, request_time):
        if environ.get("PATH_INFO") == "/ping" or not self.access_log_enabled:
            return
        ms = request_time.total_seconds() * 1000
        status = str(resp.status).split(" ", 1)[0]
        self.access_log.info(
            '%s "%s %s" %s %sB %.1fms', req.peer_addr[0] if req.peer_addr else "-", req.method, req.path, status,
            getattr(resp, "sent", "-"), ms,
        )  # fmt: skip


def _post_worker_init(worker) -> None:
    served = worker.app.served
    if served is not None and not served.ready and worker.age == 1:
        # One line for the whole server, not one per worker or per restart.
        log.error("model not loaded: %s (/ping answers 500, /invocations 503)", served.reason)


class Server(BaseApplication):
    def __init__(self, settings: Settings, registry: str | None = None, models_budget: int = 0):
        self.settings = settings
        self.served = None
        self.registry, self.models_budget = registry, models_budget  # multi-model endpoints only
        super().__init__()

    def load_config(self) -> None:
        s = self.settings
        options = {
            "bind": f"0.0.0.0:{s.port}",
            "workers": s.workers,
            "worker_class": WORKER_CLASSES[s.worker_class],
            "threads": s.threads,
            "timeout": s.timeout,
            "graceful_timeout": GRACEFUL_TIMEOUT,
            "keepalive": 5,  # idle seconds a client connection stays open (load balancers reuse them)
            "logger_class": QuietPingLogger,
            "accesslog": "-" if s.access_log else None,
            "errorlog": "-",
            "post_worker_init": _post_worker_init,
            "preload_app": False,  # each worker loads its own model: OpenMP thread pools don't survive fork
            "control_socket_disable": True,  # gunicorn 27's socket in $HOME: not needed, and clashes between servers
            "worker_tmp_dir": "/dev/shm" if os.path.isdir("/dev/shm") else None,
        }
        for key, value in options.items():
            self.cfg.set(key, value)

    def load(self):
        # Runs in each worker right after fork, before it accepts connections.
        from serving import model
        from serving.app import create_app
        from serving.front import AsyncWorker
        from serving.worker import Worker

        s = self.settings
        Worker.max_requests_per_connection = AsyncWorker.max_requests_per_connection = s.max_requests_per_connection
        AsyncWorker.header_timeout, AsyncWorker.body_timeout = s.header_timeout, s.body_timeout

        options = {"workers": s.workers, "max_payload_mb": s.max_payload_mb, "timeout": s.timeout}
        if self.registry is not None:
            from serving.multimodel import MultiModel

            models = MultiModel(
                self.registry, threads=s.numeric_threads, budget=max(1, self.models_budget // s.workers)
            )
            return create_app(model.Served(reason="multi-model server"), multimodel=models, **options)
        self.served = model.load(threads=self.settings.numeric_threads)
        return create_app(self.served, **options)


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s [%(process)d] [%(levelname)s] %(message)s")
    from serving import multimodel

    try:
        settings = Settings()
        multi = multimodel.enabled()
        budget = multimodel.budget_bytes() if multi else 0
    except ConfigurationError as e:
        print(f"serving: {e}", file=sys.stderr)
        return 1
    # Before any worker imports a numeric library: one OpenMP pool of this size per worker.
    os.environ.setdefault("OMP_NUM_THREADS", str(settings.numeric_threads))
    from serving.model import model_dir

    if not multi:
        log.info("serving ALGORITHM=%s model=%s %s", os.environ.get("ALGORITHM"), model_dir(), settings.describe())
        Server(settings).run()
        return 0
    registry = multimodel.create_registry()
    log.info(
        "serving ALGORITHM=%s multi-model (registry %s, %.0f MiB for models: %.0f MiB per worker) %s",
        os.environ.get("ALGORITHM"), registry, budget / 2**20, budget / settings.workers / 2**20, settings.describe(),
    )  # fmt: skip
    try:
        Server(settings, registry, budget).run()
    finally:
        shutil.rmtree(registry, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
