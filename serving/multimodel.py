"""Multi-model endpoints (``SAGEMAKER_MULTI_MODEL=true``): SageMaker's contract for a container serving many models.

SageMaker copies each model's extracted model.tar.gz to a directory of its own, then calls
``POST /models {"model_name", "url"}`` (409 when the name is loaded, 507 when memory is short), ``GET /models``
(``limit`` and ``next_page_token`` query parameters, ``nextPageToken`` in the answer), ``GET /models/{name}``,
``DELETE /models/{name}`` and ``POST /models/{name}/invoke`` (404 for a name that is not loaded). The invoke
path has the single-model server's codecs, limits and one-line errors: it is the same code with another model.

Workers: gunicorn's workers share one accept queue, so a request reaches any one of them. What SageMaker has
loaded is therefore kept in a registry every worker of the server reads: one small JSON file per model in a
directory the arbiter creates in /dev/shm (a file created with link(2) is the atomic "already loaded" check).
Each worker holds its own copies of the models in memory, as AWS's Multi Model Server does (it loads each model
in each of its worker processes): the worker answering ``POST /models`` loads the model before answering (so
a broken model is refused at once); another worker loads it on the first invocation it receives.

Memory: each worker keeps at most ``SERVING_MME_MEMORY_MB / workers`` of models (default: half the
container's memory, its cgroup limit or else the machine's RAM) and unloads the least recently used ones to
make room. An unloaded model stays registered: its next invocation loads it again from its url, transparently.
A model's size is measured, not guessed: the worker's resident memory growth over the load (freed heap
returned to the system first, with glibc's malloc_trim), and at least the size of its files. 507 when one model
alone is larger than a worker's budget, or when the container's free memory is below the model files' size.
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import ctypes.util
import functools
import hashlib
import json
import logging
import math
import os
import tempfile
import threading
import time
import urllib.parse
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from algorithms import registry as algorithms
from core.errors import ConfigurationError, UserError
from serving import model
from serving.app import _TEXT, read_body
from serving.errors import BadRequest, RequestError
from serving.model import Served

log = logging.getLogger("serving")
ENABLE = "SAGEMAKER_MULTI_MODEL"
MEMORY = "SERVING_MME_MEMORY_MB"
DEFAULT_LIMIT, MAX_LIMIT = 100, 1000  # GET /models page size (Multi Model Server's default is 100)
MAX_NAME = 1024
_JSON = "application/json"
_MIB = 1024 * 1024


# -- settings -------------------------------------------------------------------------------------------------
def enabled(env: Mapping[str, str] = os.environ) -> bool:
    raw = env.get(ENABLE, "").strip().lower()
    if raw in ("", "false"):
        return False
    if raw == "true":
        return True
    raise ConfigurationError(f"environment variable {ENABLE}: expected true or false, received {env[ENABLE]!r}")


def _cgroup_limit() -> int | None:
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        with contextlib.suppress(OSError, ValueError):
            value = int(Path(path).read_text().strip())  # "max" (no limit) raises ValueError
            if value < 1 << 60:  # cgroup v1 writes a huge number for "no limit"
                return value
    return None


def _meminfo(field: str) -> int | None:
    with contextlib.suppress(OSError, StopIteration, ValueError):
        line = next(x for x in Path("/proc/meminfo").read_text().splitlines() if x.startswith(field + ":"))
        return int(line.split()[1]) * 1024
    return None


def container_memory() -> int:
    """The container's memory limit (cgroup), else the machine's RAM."""
    return _cgroup_limit() or _meminfo("MemTotal") or 1 << 30


def available_memory() -> int | None:
    """Memory the container can still take: up to its cgroup limit, and what the machine has available."""
    available = _meminfo("MemAvailable")
    limit = _cgroup_limit()
    if limit is None:
        return available
    cgroups = (
        ("/sys/fs/cgroup/memory.current", "/sys/fs/cgroup/memory.stat", "inactive_file"),
        ("/sys/fs/cgroup/memory/memory.usage_in_bytes", "/sys/fs/cgroup/memory/memory.stat", "total_inactive_file"),
    )
    for usage_file, stat_file, reclaimable in cgroups:
        with contextlib.suppress(OSError, ValueError):
            used = int(Path(usage_file).read_text().strip())
            # Page cache counts as usage but is reclaimed under pressure: the working set is what is held.
            stat = dict(line.split() for line in Path(stat_file).read_text().splitlines() if line.count(" ") == 1)
            left = limit - (used - int(stat.get(reclaimable, 0)))
            return left if available is None else min(available, left)
    return available


def budget_bytes(env: Mapping[str, str] = os.environ) -> int:
    """SERVING_MME_MEMORY_MB (MiB, decimals allowed) for the whole container, in bytes (default: half its memory)."""
    raw = env.get(MEMORY, "").strip()
    if not raw:
        return container_memory() // 2
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise ConfigurationError(f"environment variable {MEMORY}: expected a number of MiB > 0, received {raw!r}")
    return max(1, int(value * _MIB))


def create_registry() -> str:
    """The registry directory of one server (the arbiter calls this before forking its workers)."""
    shm = "/dev/shm"
    where = shm if os.path.isdir(shm) and os.access(shm, os.W_OK) else None
    return tempfile.mkdtemp(prefix="byoc-models-", dir=where)


# -- measuring memory -----------------------------------------------------------------------------------------
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
_malloc_trim: Callable[[int], int] | None
try:
    _malloc_trim = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
except (OSError, AttributeError):  # not glibc: RSS then keeps freed heap, sizes read larger
    _malloc_trim = None


def trim() -> None:
    """Give freed heap back to the system, so that resident memory reflects what is held."""
    if _malloc_trim is not None:
        _malloc_trim(0)


def rss() -> int:
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * _PAGE
    except OSError:
        return 0


def files_size(directory: Path) -> int:
    return sum(p.stat().st_size for p in directory.iterdir() if p.is_file())


# -- the registry shared by the workers -----------------------------------------------------------------------
class Registry:
    """What SageMaker has loaded: one JSON file per model name, in a directory all workers of the server share."""

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)
        # The invoke path looks a name up on every request: hashing and pathlib cost more than the stat itself.
        self._path = functools.lru_cache(maxsize=4096)(self._file)

    def _file(self, name: str) -> str:
        digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()
        return os.path.join(self.directory, digest + ".json")

    def add(self, name: str, url: str) -> bool:
        """Register; False when the name is registered already (atomic across workers: link(2) never replaces)."""
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=self.directory)
        try:
            with os.fdopen(fd, "w") as f:
                json.dump({"modelName": name, "modelUrl": url}, f)
            os.link(tmp, self._path(name))
            return True
        except FileExistsError:
            return False
        finally:
            os.unlink(tmp)

    def remove(self, name: str) -> bool:
        try:
            os.unlink(self._path(name))
            return True
        except FileNotFoundError:
            return False

    def get(self, name: str) -> dict | None:
        try:
            with open(self._path(name), "rb") as f:
                entry = json.loads(f.read())
        except (FileNotFoundError, ValueError):  # ValueError: never, the file is complete before it is linked
            return None
        return entry if entry.get("modelName") == name else None

    def identity(self, name: str) -> tuple[int, int] | None:
        """Changes when a name is unloaded and loaded again (possibly from another url)."""
        try:
            st = os.stat(self._path(name))
        except FileNotFoundError:
            return None
        return st.st_ino, st.st_mtime_ns

    def version(self) -> int:
        return os.stat(self.directory).st_mtime_ns

    def entries(self) -> list[dict]:
        found = []
        for entry in os.scandir(self.directory):
            if entry.name.endswith(".json") and not entry.name.startswith("."):
                with contextlib.suppress(FileNotFoundError, ValueError):
                    found.append(json.loads(Path(entry.path).read_bytes()))
        return sorted(found, key=lambda e: e["modelName"])


# -- one worker's models ---------------------------------------------------------------------------------------
@dataclass
class Loaded:
    served: Served
    size: int
    identity: tuple[int, int] | None
    url: str


@dataclass(frozen=True)
class Action:
    """What a /models request needs beyond a quick answer: ``invoke`` or ``load`` (both may take a while)."""

    kind: str
    name: str = ""


def _text(status: int, message: str) -> tuple[int, str, bytes]:
    return status, _TEXT, (" ".join(message.split()) + "\n").encode("utf-8", "replace")


def _json(status: int, document) -> tuple[int, str, bytes]:
    return status, _JSON, json.dumps(document).encode()


def _quote(name: str) -> str:
    return json.dumps(name, ensure_ascii=False)[:200]


class MultiModel:
    """The models of one worker process: the shared registry, and an LRU of loaded models under a memory budget."""

    def __init__(
        self,
        registry_dir: str | Path,
        *,
        env: Mapping[str, str] = os.environ,
        threads: int | None = None,
        budget: int,
    ):
        self.registry = Registry(registry_dir)
        self.env = dict(env)
        self.threads = threads
        self.budget = budget  # bytes, this worker
        self.problem = model.settings_problem(self.env)
        try:
            # Import the algorithm's libraries now: the first model's measured size must not include them.
            algorithms.get(self.env.get("ALGORITHM"))
        except UserError as e:
            self.problem = self.problem or str(e)
        self._cache: OrderedDict[str, Loaded] = OrderedDict()
        self._lock = threading.Lock()  # the cache (the loop thread and the scoring thread both touch it)
        self._load_lock = threading.Lock()  # one load at a time: sizes are measured as resident memory growth
        self._version = -1
        self._warm = False

    # -- routing -------------------------------------------------------------------------------------------
    def handle(self, method: str, path: str, query: str) -> Action | tuple[int, str, bytes]:
        """Answer the quick requests; say which slow one it is otherwise."""
        if self.problem:
            return _text(503, f"models cannot be served: {self.problem}")
        if path == "/invocations":
            return _text(
                404,
                f"404 Not Found: {method} /invocations; this is a multi-model server ({ENABLE}=true): "
                "POST /models/{model_name}/invoke",
            )
        if path == "/models":
            if method == "GET":
                return self.list(query)
            if method == "POST":
                return Action("load")
            return _text(405, f"405 Method Not Allowed: {method} {path}; use GET or POST")
        rest = path[len("/models/") :]
        invoke = rest.endswith("/invoke")
        raw = rest[: -len("/invoke")] if invoke else rest
        if not raw or "/" in raw:
            return _text(404, f"404 Not Found: {method} {path[:200]}")
        name = urllib.parse.unquote(raw, errors="surrogateescape")
        if invoke:
            if method != "POST":
                return _text(405, f"405 Method Not Allowed: {method} {path[:200]}; use POST")
            return Action("invoke", name)
        if method == "GET":
            return self.describe(name)
        if method == "DELETE":
            return self.unload(name)
        return _text(405, f"405 Method Not Allowed: {method} {path[:200]}; use GET or DELETE")

    def ping(self) -> tuple[int, str, bytes]:
        if self.problem:
            return _text(500, f"models cannot be served: {self.problem}")
        if not self.registry.directory.is_dir():
            return _text(500, f"the model registry {self.registry.directory} is gone")
        return 200, "text/plain", b""

    # -- the quick ones ------------------------------------------------------------------------------------
    def list(self, query: str) -> tuple[int, str, bytes]:
        try:
            params = urllib.parse.parse_qs(query, keep_blank_values=True, strict_parsing=False, errors="strict")
        except (ValueError, UnicodeDecodeError):
            return _text(400, f"invalid query string {query[:60]!r}")
        raw_limit = params.get("limit", [""])[-1]
        limit = DEFAULT_LIMIT
        if raw_limit:
            if not raw_limit.isdigit() or not raw_limit.isascii() or not 1 <= int(raw_limit) <= MAX_LIMIT:
                expected = f"expected an integer in [1, {MAX_LIMIT}]"
                return _text(400, f"query parameter limit: {expected}, received {raw_limit[:40]!r}")
            limit = int(raw_limit)
        after = None
        token = params.get("next_page_token", [""])[-1]
        if token:
            try:
                padded = token.encode("ascii") + b"=" * (-len(token) % 4)
                after = base64.b64decode(padded, altchars=b"-_", validate=True).decode()
            except (ValueError, UnicodeError):
                return _text(400, f"query parameter next_page_token: {token[:60]!r} is not a token this server gave")
        entries = self.registry.entries()
        if after is not None:
            entries = [e for e in entries if e["modelName"] > after]
        page = entries[:limit]
        document: dict = {"models": page}
        if len(entries) > limit:
            document["nextPageToken"] = base64.urlsafe_b64encode(page[-1]["modelName"].encode()).decode().rstrip("=")
        return _json(200, document)

    def describe(self, name: str) -> tuple[int, str, bytes]:
        entry = self.registry.get(name)
        if entry is None:
            return _text(404, f"model {_quote(name)} is not loaded")
        return _json(200, entry)

    def unload(self, name: str) -> tuple[int, str, bytes]:
        if not self.registry.remove(name):
            return _text(404, f"model {_quote(name)} is not loaded")
        if self._drop(name):
            trim()
        log.info("model %s unloaded", _quote(name))
        return _json(200, {"status": f"model {_quote(name)} unloaded"})

    def reconcile(self) -> None:
        """Drop this worker's copies of models another worker unloaded (cheap: one stat when nothing changed)."""
        try:
            version = self.registry.version()
        except OSError:
            return
        if version == self._version:
            return
        self._version = version
        with self._lock:
            names = list(self._cache)
        dropped = [n for n in names if self.registry.identity(n) is None and self._drop(n)]
        if dropped:
            trim()

    # -- loading -------------------------------------------------------------------------------------------
    def load_request(self, body: bytes) -> tuple[int, str, bytes]:
        """POST /models: register and load (off the event loop: it reads files and builds the model)."""
        try:
            name, url = self._parse_load(body)
            if not self.registry.add(name, url):
                return _text(409, f"model {_quote(name)} is already loaded")
            started = time.perf_counter()
            try:
                loaded = self._load(name, url, self.registry.identity(name))
            except BaseException:
                self.registry.remove(name)
                raise
            log.info(
                "model %s loaded from %s in %.1f ms (%.3f MiB)",
                _quote(name), url, (time.perf_counter() - started) * 1000, loaded.size / _MIB,
            )  # fmt: skip
            return _json(200, {"status": f"model {_quote(name)} loaded"})
        except RequestError as e:
            return _text(e.status, e.message)
        except Exception as e:
            log.exception("unexpected error in POST /models")
            return _text(500, f"internal error: {type(e).__name__}: {str(e)[:300]}")

    @staticmethod
    def _parse_load(body: bytes) -> tuple[str, str]:
        try:
            document = json.loads(body)
        except (ValueError, UnicodeDecodeError) as e:
            raise BadRequest(f"POST /models: the body is not JSON ({e})") from None
        if not isinstance(document, dict):
            raise BadRequest('POST /models: expected a JSON object {"model_name": ..., "url": ...}')
        name, url = document.get("model_name"), document.get("url")
        for field, value in (("model_name", name), ("url", url)):
            if not isinstance(value, str) or not value:
                raise BadRequest(f"POST /models: field {field}: expected a non-empty string, received {_show(value)}")
        assert isinstance(name, str) and isinstance(url, str)  # checked just above; for the type checker
        if len(name) > MAX_NAME or any(ord(c) < 32 or ord(c) == 127 for c in name):
            raise BadRequest(
                f"POST /models: field model_name: expected at most {MAX_NAME} characters and no control characters"
            )
        if not os.path.isabs(url):
            raise BadRequest(f"POST /models: field url: expected an absolute directory path, received {_quote(url)}")
        if not os.path.isdir(url):
            raise BadRequest(f"POST /models: field url: {_quote(url)} is not a directory")
        return name, url

    def _load(self, name: str, url: str, identity: tuple[int, int] | None) -> Loaded:
        """Load into this worker's memory, unloading least recently used models beyond the budget."""
        directory = Path(url)
        with self._load_lock:
            with self._lock:
                current = self._cache.get(name)
                if current is not None and current.identity == identity:  # loaded while we waited for the lock
                    return current
            try:
                on_disk = files_size(directory)
            except OSError as e:
                raise BadRequest(f"model {_quote(name)}: cannot read {url}: {e.strerror}") from None
            available = available_memory()
            if available is not None and available < on_disk:
                raise RequestError(
                    f"model {_quote(name)}: the container has {available / _MIB:.1f} MiB free, "
                    f"less than the model's files ({on_disk / _MIB:.1f} MiB)",
                    507,
                )
            if not self._warm:
                # A worker's first load also initialises the library's own state (xgboost: ~2 MiB, once): load
                # once unmeasured, so that this size is not charged to the first model.
                self._warm = self._open(directory).ready
            trim()
            before = rss()
            served = self._open(directory)
            if not served.ready:
                raise RequestError(f"model {_quote(name)}: {served.reason}", 500 if served.internal else 400)
            trim()
            size = max(rss() - before, on_disk)
            if size > self.budget:
                del served
                trim()
                raise RequestError(
                    f"model {_quote(name)} takes {size / _MIB:.1f} MiB, more than a worker's budget of "
                    f"{self.budget / _MIB:.1f} MiB ({MEMORY} / workers)",
                    507,
                )
            loaded = Loaded(served, size, identity, url)
            with self._lock:
                self._cache[name] = loaded
                self._cache.move_to_end(name)
                evicted = []
                total = sum(e.size for e in self._cache.values())
                while total > self.budget:
                    oldest, entry = next(iter(self._cache.items()))
                    del self._cache[oldest]
                    total -= entry.size
                    evicted.append((oldest, entry.size))
            if evicted:
                trim()
                for oldest, freed in evicted:
                    log.info("model %s evicted (%.3f MiB, least recently used)", _quote(oldest), freed / _MIB)
            return loaded

    def _open(self, directory: Path) -> Served:
        served = model.load(self.env, threads=self.threads, directory=directory)
        if served.ready:
            # One prediction now: XGBoost sets a booster up on its first one (~20 ms for 600 trees, measured),
            # which belongs to the load (and its memory to the model), not to the first invocation.
            algorithm = served.algorithm
            assert algorithm is not None  # ready
            algorithm.predict(np.full((1, algorithm.schema.n_features), np.nan))
        return served

    def _drop(self, name: str) -> bool:
        with self._lock:
            return self._cache.pop(name, None) is not None

    # -- invoking ------------------------------------------------------------------------------------------
    def cached(self, name: str) -> Served | None:
        """The model if this worker holds it (most recently used from now on); None when it must be loaded.
        Raises a 404 RequestError when the name is not loaded."""
        identity = self.registry.identity(name)
        if identity is None:
            if self._drop(name):
                trim()
            raise RequestError(f"model {_quote(name)} is not loaded", 404)
        with self._lock:
            entry = self._cache.get(name)
            if entry is not None and entry.identity == identity:
                self._cache.move_to_end(name)
                return entry.served
        return None

    def served(self, name: str) -> Served:
        """The model, loaded again from its url when this worker does not hold it (first use, or unloaded)."""
        served = self.cached(name)
        if served is not None:
            return served
        entry = self.registry.get(name)
        if entry is None:
            raise RequestError(f"model {_quote(name)} is not loaded", 404)
        url = entry["modelUrl"]
        if not os.path.isdir(url):
            raise RequestError(f"model {_quote(name)}: its directory {_quote(url)} is gone; load it again", 404)
        started = time.perf_counter()
        loaded = self._load(name, url, self.registry.identity(name))
        log.info(
            "model %s loaded on use in %.1f ms (%.3f MiB)",
            _quote(name), (time.perf_counter() - started) * 1000, loaded.size / _MIB,
        )  # fmt: skip
        return loaded.served

    def invoke(self, endpoints, name: str, body: bytes, content_type: str | None, accept: str | None):
        """POST /models/{name}/invoke, off the loop: load when needed, then /invocations' own answer."""
        try:
            served = self.served(name)
        except RequestError as e:
            return _text(e.status, e.message)
        except Exception as e:
            log.exception("unexpected error loading model %s", _quote(name))
            return _text(500, f"internal error: {type(e).__name__}: {str(e)[:300]}")
        return endpoints.answer(body, content_type, accept, served=served)

    def memory(self) -> int:
        """Bytes of models this worker holds (as measured at their loads)."""
        with self._lock:
            return sum(e.size for e in self._cache.values())

    # -- the gthread front (WSGI) ----------------------------------------------------------------------------
    def wsgi(self, environ: dict, endpoints) -> tuple[int, str, bytes]:
        self.reconcile()
        method, path = environ.get("REQUEST_METHOD", ""), environ.get("PATH_INFO", "")
        if environ.get("RAW_URI"):  # PATH_INFO is decoded already: a name's %2F would split it
            path = environ["RAW_URI"].split("?", 1)[0]
        action = self.handle(method, path, environ.get("QUERY_STRING", ""))
        if not isinstance(action, Action):
            return action
        if action.kind == "invoke":
            try:
                served = self.served(action.name)
            except RequestError as e:
                return _text(e.status, e.message)
            return endpoints.invocations(environ, served)
        body = read_body(environ["wsgi.input"], endpoints.limit)
        if body is None:
            return _text(413, f"payload exceeds SAGEMAKER_MAX_PAYLOAD_IN_MB={endpoints.max_payload_mb}")
        return self.load_request(body)


def _show(value) -> str:
    return "nothing" if value is None else f"{type(value).__name__} {json.dumps(value)[:60]}"
