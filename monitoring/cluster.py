"""The hosts of a processing job with ``InstanceCount`` > 1, as SageMaker Processing describes them to each one.

SageMaker starts the same image on every instance with ``/opt/ml/config/resourceconfig.json``
(``{"current_host": "algo-2", "hosts": ["algo-1", "algo-2"]}``) and ``/opt/ml/config/processingjobconfig.json``
(the CreateProcessingJob request: each input's ``LocalPath`` and ``S3DataDistributionType``). At the end every
instance uploads its own output ``LocalPath`` to the *same* ``S3Uri``: files of the same name overwrite each
other, so a multi-host monitor writes only ``hosts/<current_host>/profile_state.json`` and a follow-up
``merge`` job turns the shards into the run's outputs (see the README, "Monitoring at scale").
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.errors import ConfigurationError
from monitoring import jobenv

HOSTS_FOLDER = "hosts"
SHARDED = "ShardedByS3Key"
REPLICATED = "FullyReplicated"


@dataclass(frozen=True)
class Cluster:
    current_host: str
    hosts: tuple[str, ...]  # sorted: a host's rank is its position
    distribution: dict[str, str]  # input LocalPath -> S3DataDistributionType, when processingjobconfig.json says

    @property
    def rank(self) -> int:
        return self.hosts.index(self.current_host)

    @property
    def multi(self) -> bool:
        return len(self.hosts) > 1

    def distribution_of(self, path: Path) -> str | None:
        """The distribution of the input mounted at ``path`` (or at a folder holding it)."""
        best = None
        for local, kind in self.distribution.items():
            holds = path == Path(local) or Path(local) in path.parents
            if holds and (best is None or len(local) > len(best[0])):
                best = (local, kind)
        return best[1] if best else None

    def describe(self) -> dict[str, Any]:
        return {"host": self.current_host, "hosts": list(self.hosts), "rank": self.rank}


def _read(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ConfigurationError(f"cannot read {path}: {getattr(e, 'strerror', None) or e}") from None


def load(config_dir: Path | None = None) -> Cluster:
    """This host and its peers; one host when there is no resourceconfig.json (a local run)."""
    config = config_dir or jobenv.base_dir() / "config"
    res = config / "resourceconfig.json"
    if not res.exists():
        return Cluster("algo-1", ("algo-1",), {})
    doc = _read(res)
    hosts, current = (doc.get("hosts"), doc.get("current_host")) if isinstance(doc, dict) else (None, None)
    if not isinstance(hosts, list) or not hosts or not all(isinstance(h, str) and h for h in hosts):
        raise ConfigurationError(f"{res}: hosts must be a non-empty list of host names, received {hosts!r}")
    if len(set(hosts)) != len(hosts):
        raise ConfigurationError(f"{res}: hosts lists a host twice: {hosts}")
    if current not in hosts:
        raise ConfigurationError(f"{res}: current_host {current!r} is not in hosts {hosts}")
    distribution: dict[str, str] = {}
    job = config / "processingjobconfig.json"
    if job.exists():
        doc = _read(job)
        inputs = doc.get("ProcessingInputs") if isinstance(doc, dict) else None
        for item in inputs if isinstance(inputs, list) else []:
            s3 = item.get("S3Input") if isinstance(item, dict) else None
            if isinstance(s3, dict) and s3.get("LocalPath"):
                distribution[str(s3["LocalPath"])] = str(s3.get("S3DataDistributionType") or REPLICATED)
    return Cluster(str(current), tuple(sorted(hosts)), distribution)
