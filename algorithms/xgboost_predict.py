"""Dense-matrix prediction for an XGBoost booster without the Python wrapper's per-call work.

``Booster.inplace_predict`` spends about 150 us of Python per call (type dispatch, building its JSON
arguments) around a C call that takes about 70 us for one record of 200 trees (measured on the serving
benchmark's model). For a server answering single records that wrapper is a third of the whole request. This
calls the same C function, ``XGBoosterPredictFromDense``, with the arguments built once.

It uses xgboost internals (``core._LIB``, ``make_jcargs``, ``array_interface``) of the pinned version; when they
are missing or differ, ``predictor()`` falls back to ``inplace_predict``. tests/test_xgboost_predict.py checks
that both paths give identical predictions.
"""

from __future__ import annotations

import ctypes
import logging
from collections.abc import Callable
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

Predict = Callable[[np.ndarray], np.ndarray]


def predictor(booster: Any) -> Predict:
    """A function from a C-contiguous float64 (n, features) matrix to float64 (n,) predictions."""
    try:
        return _DensePredictor(booster)
    except (ImportError, AttributeError, TypeError) as e:  # internals of another xgboost version
        log.warning("xgboost fast prediction path unavailable (%s); using inplace_predict", e)
        return _fallback(booster)


def _fallback(booster: Any) -> Predict:
    def predict(X: np.ndarray) -> np.ndarray:
        return np.asarray(booster.inplace_predict(X, missing=np.nan), dtype=np.float64).reshape(-1)

    return predict


class _DensePredictor:
    def __init__(self, booster: Any):
        from xgboost import core
        from xgboost._data_utils import array_interface

        self.booster = booster  # keeps the handle alive
        self._call = core._LIB.XGBoosterPredictFromDense
        self._check = core._check_call
        self._interface = array_interface
        self._ulong = core.c_bst_ulong
        # Same arguments inplace_predict builds on every call: value prediction, all trees, NaN is missing.
        self._args = core.make_jcargs(
            type=0,
            training=False,
            iteration_begin=0,
            iteration_end=0,
            missing=float("nan"),
            strict_shape=False,
            cache_id=0,
        )

    def __call__(self, X: np.ndarray) -> np.ndarray:
        shape = ctypes.POINTER(self._ulong)()
        dims = self._ulong()
        preds = ctypes.POINTER(ctypes.c_float)()
        self._check(
            self._call(
                self.booster.handle,
                self._interface(X),
                self._args,
                None,
                ctypes.byref(shape),
                ctypes.byref(dims),
                ctypes.byref(preds),
            )
        )
        size = 1
        for i in range(dims.value):
            size *= shape[i]
        if size != X.shape[0]:
            raise RuntimeError(f"xgboost returned {size} predictions for {X.shape[0]} rows")
        # The buffer belongs to the booster and is reused by the next call: copy it out.
        return np.ctypeslib.as_array(preds, shape=(size,)).astype(np.float64)
