"""The serving settings that choose among named values, checked in one place: by `python -m serving.serve`
before any worker starts (a bad one stops the server with one line and exit 1), and by ``serving.model.load``.

The allowed values are copies: importing the registry, the codecs or the record parser here would load numpy
and pandas into gunicorn's arbiter before it forks. tests/test_serving_settings.py holds them equal.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from core.errors import ConfigurationError

ALGORITHMS = ("xgboost", "linear")  # algorithms.registry.NAMES
UNKNOWN_CATEGORY = ("error", "missing")  # serving.records.UNKNOWN_POLICIES
ACCEPTS = ("text/csv", "application/json", "application/jsonlines")  # serving.codecs.ENCODERS
SWITCH = {"1": True, "true": True, "yes": True, "on": True, "0": False, "false": False, "no": False, "off": False}


@dataclass(frozen=True)
class ModelOptions:
    algorithm: str
    unknown_category: str
    default_accept: str


def choice(env: Mapping[str, str], name: str, allowed: tuple[str, ...], default: str | None) -> str:
    raw = env.get(name)
    value = default if raw is None or not raw.strip() else raw.strip()
    if value not in allowed:
        raise ConfigurationError(f"environment variable {name}: received {raw!r}, expected one of {', '.join(allowed)}")
    return value


def switch(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    if raw.lower() not in SWITCH:
        raise ConfigurationError(f"environment variable {name}: expected 1 or 0 (true/false), received {raw!r}")
    return SWITCH[raw.lower()]


def model_options(env: Mapping[str, str]) -> ModelOptions:
    algorithm = choice(env, "ALGORITHM", ALGORITHMS, None)
    unknown_category = choice(env, "SERVING_UNKNOWN_CATEGORY", UNKNOWN_CATEGORY, "error")
    accept = env.get("SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT") or ""
    # A media type's parameters (text/csv; charset=utf-8) do not change the encoder.
    media_type = accept.split(";")[0].strip().lower() or ACCEPTS[0]
    if media_type not in ACCEPTS:
        raise ConfigurationError(
            f"environment variable SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT: received {accept!r}, "
            f"expected one of {', '.join(ACCEPTS)}"
        )
    return ModelOptions(algorithm, unknown_category, media_type)
