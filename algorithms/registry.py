"""ALGORITHM name -> plug-in class. The images set ALGORITHM; nothing else branches on the name."""

from __future__ import annotations

import importlib

from algorithms.base import Algorithm
from core.errors import ConfigurationError

_PLUGINS = {
    "xgboost": ("algorithms.xgboost_regressor", "XGBoostRegressor"),
    "linear": ("algorithms.linear", "LinearRegressor"),
}
NAMES = tuple(_PLUGINS)


def checked(name: str | None) -> str:
    if name is None or name not in _PLUGINS:
        raise ConfigurationError(
            f"environment variable ALGORITHM: received {name!r}, expected one of {', '.join(NAMES)}"
        )
    return name


def get(name: str | None) -> type[Algorithm]:
    module, cls = _PLUGINS[checked(name)]
    return getattr(importlib.import_module(module), cls)
