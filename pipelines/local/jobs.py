"""Jobs as SageMaker describes them to a container: the /opt/ml tree of a training job, the mounts of a
processing job, and what a finished job leaves behind (exit code, log, failure reason)."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
OPT_ML = "/opt/ml"
PROCESSING = "/opt/ml/processing"


@dataclass(frozen=True)
class JobResult:
    name: str
    returncode: int
    log: str
    base_dir: Path
    mounts: tuple[tuple[Path, str], ...] = ()  # (host, container): a container's messages name host paths

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def reason(self) -> str:
        """The job's one-line failure reason: /opt/ml/output/failure (training, monitoring), else
        /opt/ml/output/message (processing's ExitMessage), else the last log line."""
        text = ""
        for name in ("failure", "message"):
            path = self.base_dir / "output" / name
            if path.is_file() and path.read_text(errors="replace").strip():
                text = path.read_text(errors="replace").strip().splitlines()[0]
                break
        text = text or self.last_line() or f"exit code {self.returncode}"
        for host, container in sorted(self.mounts, key=lambda m: -len(m[1])):
            text = re.sub(re.escape(container) + r"(?=[/\s,;:'\")]|$)", str(host), text)
        return text

    def last_line(self) -> str:
        lines = [line for line in self.log.splitlines() if line.strip()]
        return lines[-1].strip() if lines else ""


def layout_training(
    base_dir: Path, channels: Mapping[str, Path], hyperparameters: Mapping[str, object], content_type: str = "text/csv"
) -> Path:
    """Lay out /opt/ml for a training job. Channel folders are copied, like SageMaker's File mode does."""
    config = base_dir / "input" / "config"
    config.mkdir(parents=True, exist_ok=True)
    # SageMaker passes every hyperparameter as a string.
    (config / "hyperparameters.json").write_text(json.dumps({k: str(v) for k, v in hyperparameters.items()}))
    channel_config = {"ContentType": content_type, "TrainingInputMode": "File", "S3DistributionType": "FullyReplicated"}
    (config / "inputdataconfig.json").write_text(json.dumps(dict.fromkeys(channels, channel_config)))
    (config / "resourceconfig.json").write_text(
        json.dumps({"current_host": "algo-1", "hosts": ["algo-1"], "network_interface_name": "eth0"})
    )
    for name, src in channels.items():
        dest = base_dir / "input" / "data" / name
        if dest.exists():
            shutil.rmtree(dest)
        shutil.copytree(src, dest)
    for sub in ("model", "output/data"):
        (base_dir / sub).mkdir(parents=True, exist_ok=True)
    return base_dir


@dataclass
class ProcessingJob:
    """A processing job: read-only inputs at /opt/ml/processing/input/<name>, outputs at /opt/ml/processing/<name>.

    ``env`` and ``args`` use the container's paths; a runner that runs the job as a local process maps them to
    the host folders (as SageMaker maps S3 prefixes to a ProcessingInput's LocalPath)."""

    command: str  # the image's command: preprocess | baseline | monitor
    base_dir: Path  # the host folder that is /opt/ml (its output/ holds the failure reason)
    inputs: dict[str, Path] = field(default_factory=dict)
    outputs: dict[str, Path] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    args: list[str] = field(default_factory=list)
    entrypoint: list[str] = field(default_factory=list)  # ContainerEntrypoint; empty: the image's own

    @staticmethod
    def input_path(name: str) -> str:
        return f"{PROCESSING}/input/{name}"

    @staticmethod
    def output_path(name: str) -> str:
        return f"{PROCESSING}/{name}"

    def mounts(self) -> list[tuple[Path, str, bool]]:
        """(host folder, container path, read-only), /opt/ml first so the others mount on top of it."""
        out = [(self.base_dir, OPT_ML, False)]
        out += [(host, self.input_path(name), True) for name, host in self.inputs.items()]
        out += [(host, self.output_path(name), False) for name, host in self.outputs.items()]
        return out

    def prepare(self) -> None:
        """Create every host folder, and the mount points inside /opt/ml, so the engine creates none (as root)."""
        for host, container, read_only in self.mounts():
            if not read_only:
                host.mkdir(parents=True, exist_ok=True)
            if container != OPT_ML:
                (self.base_dir / Path(container).relative_to(OPT_ML)).mkdir(parents=True, exist_ok=True)
        (self.base_dir / "output").mkdir(parents=True, exist_ok=True)

    def to_host(self, value: str) -> str:
        """A container path in an env value or argument, as the host path (longest mount first)."""
        for host, container, _ in sorted(self.mounts(), key=lambda m: -len(m[1])):
            if value == container or value.startswith(container + "/"):
                return str(host) + value[len(container) :]
        return value
