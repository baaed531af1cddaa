"""Hyperparameters declared as data and validated in one place.

SageMaker passes every hyperparameter as a string. Each algorithm declares a ``HyperparameterSpec``; the
training entry point calls ``spec.validate(raw)`` once and hands the typed result down. The same declarations
give the README's tables and the algorithm's ``CreateAlgorithm`` / tuning specification
(``pipelines.algorithm_spec``): each hyperparameter's type and range, how tuning searches it (``Tune``), and the
rules between hyperparameters (``OnlyWith``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from core.errors import HyperparameterError

REQUIRED = object()  # sentinel default: the hyperparameter must be given
# Integers are 32-bit: XGBoost's integer parameters overflow beyond (max_bin=1e12 crashed training) and SageMaker's
# Integer hyperparameter ranges are the same width.
INT_MIN, INT_MAX = -(2**31), 2**31 - 1
SCALING_TYPES = ("Auto", "Linear", "Logarithmic", "ReverseLogarithmic")  # HyperParameterScalingType

_TYPE_NAMES = {int: "integer", float: "number", str: "string", bool: "boolean"}
_ARTICLES = {int: "an", float: "a", str: "a", bool: "a"}


@dataclass(frozen=True)
class Tune:
    """How automatic model tuning searches a hyperparameter (its presence makes the hyperparameter tunable).

    Numbers: [min, max] with a scaling type (AWS: Logarithmic needs min > 0; ReverseLogarithmic is for numbers in
    [0, 1) only). Choices and booleans: ``values`` (default: every allowed value).
    """

    min: float | None = None
    max: float | None = None
    scaling: str = "Auto"
    values: tuple[Any, ...] | None = None


@dataclass(frozen=True)
class OnlyWith:
    """A value of ``name`` other than its default is used only when another hyperparameter has one of some values.

    Such a value given otherwise would be silently ignored, so it is refused. The default always passes: the
    SageMaker SDK's AlgorithmEstimator sends every declared default, whatever else is set.
    """

    name: str
    when: tuple[tuple[str, tuple[Any, ...]], ...]  # (hyperparameter, its values): any one suffices

    def condition(self) -> str:
        return " or ".join(f"{n}={v[0]}" if len(v) == 1 else f"{n} in ({', '.join(map(str, v))})" for n, v in self.when)


@dataclass(frozen=True)
class Hyperparameter:
    name: str
    type: type  # int, float, str or bool
    default: Any = REQUIRED
    min: float | None = None  # inclusive unless min_exclusive
    max: float | None = None  # inclusive unless max_exclusive
    choices: tuple[Any, ...] | None = None
    description: str = ""
    min_exclusive: bool = False
    max_exclusive: bool = False
    tune: Tune | None = None  # tunable, and how

    def __post_init__(self):
        if self.type is int and self.choices is None:
            # The implicit 32-bit bounds become the declared ones, so messages, README and AWS spec all show them.
            if self.min is None or self.min < INT_MIN:
                object.__setattr__(self, "min", INT_MIN)
            if self.max is None or self.max > INT_MAX:
                object.__setattr__(self, "max", INT_MAX)

    @property
    def required(self) -> bool:
        return self.default is REQUIRED

    def allowed(self) -> str:
        """What is allowed, in words, for error messages and documentation."""
        kind = f"{_ARTICLES[self.type]} {_TYPE_NAMES[self.type]}"
        if self.choices is not None:
            return f"one of {', '.join(map(_show, self.choices))}"
        if self.min is None and self.max is None:
            return kind
        lo = "(" if self.min_exclusive else "["
        hi = ")" if self.max_exclusive else "]"
        lo_v = _show(self.min) if self.min is not None else "-inf"
        hi_v = _show(self.max) if self.max is not None else "inf"
        return f"{kind} in {lo}{lo_v}, {hi_v}{hi}"

    def parse(self, raw: Any) -> Any:
        """Parse the raw (string) value; raise HyperparameterError naming this hyperparameter."""
        text = raw if isinstance(raw, str) else str(raw)
        value = self._convert(text.strip())
        if self.choices is not None and value not in self.choices:
            raise self._error(raw)
        if self.type in (int, float):
            if self.min is not None and (value < self.min or (self.min_exclusive and value == self.min)):
                raise self._error(raw)
            if self.max is not None and (value > self.max or (self.max_exclusive and value == self.max)):
                raise self._error(raw)
        return value

    def _convert(self, text: str) -> Any:
        try:
            if self.type is bool:
                lowered = text.lower()
                if lowered in ("true", "1", "yes"):
                    return True
                if lowered in ("false", "0", "no"):
                    return False
                raise ValueError(text)
            if self.type is int:
                f = float(text)  # "10", "10.0" and "1e3" are integers; "10.5" is not
                if not f.is_integer():
                    raise ValueError(text)
                return int(f)
            if self.type is float:
                f = float(text)
                if not math.isfinite(f):
                    raise ValueError(text)
                return f
            return text
        except (ValueError, OverflowError):
            raise self._error(text) from None

    def _error(self, raw: Any) -> HyperparameterError:
        return HyperparameterError(f"hyperparameter '{self.name}': received {raw!r}, expected {self.allowed()}")


class HyperparameterSpec:
    """The declared hyperparameters of one algorithm, and the rules between them."""

    def __init__(self, params: Iterable[Hyperparameter], rules: Iterable[OnlyWith] = ()):
        self.params: dict[str, Hyperparameter] = {}
        for p in params:
            if p.name in self.params:
                raise ValueError(f"hyperparameter {p.name!r} declared twice")
            self.params[p.name] = p
        self.rules: tuple[OnlyWith, ...] = tuple(rules)
        for rule in self.rules:  # a rule naming an undeclared hyperparameter or value could never be met
            for name in (rule.name, *(n for n, _ in rule.when)):
                if name not in self.params:
                    raise ValueError(f"rule on {rule.name!r}: hyperparameter {name!r} is not declared")
            for name, values in rule.when:
                for v in values:
                    try:
                        ok = self.params[name].parse(str(v)) == v
                    except HyperparameterError:
                        ok = False
                    if not ok:
                        raise ValueError(f"rule on {rule.name!r}: {name}={v!r} is not an allowed value")
            if self.params[rule.name].required:
                raise ValueError(f"rule on {rule.name!r}: a required hyperparameter has no default to fall back on")

    def __iter__(self):
        return iter(self.params.values())

    def __contains__(self, name: str) -> bool:
        return name in self.params

    def defaults(self) -> dict[str, Any]:
        return {n: p.default for n, p in self.params.items() if not p.required}

    def validate(self, raw: Mapping[str, Any], ignore: Iterable[str] = ()) -> dict[str, Any]:
        """Typed values for every declared hyperparameter (defaults filled in).

        Names in ``ignore`` (e.g. the ``sagemaker_*`` ones the SDK adds) are skipped. Unknown names fail,
        listing what is known, so that a typo never silently trains with a default.
        """
        skip = set(ignore)
        unknown = sorted(k for k in raw if k not in self.params and k not in skip)
        if unknown:
            raise HyperparameterError(
                f"hyperparameter '{unknown[0]}': unknown name, received {raw[unknown[0]]!r}; "
                f"known: {', '.join(sorted(self.params))}"
            )
        values = {}
        for name, p in self.params.items():
            if name in raw:
                values[name] = p.parse(raw[name])
            elif p.required:
                raise HyperparameterError(f"hyperparameter '{name}': required but not given, expected {p.allowed()}")
            else:
                values[name] = p.default
        for rule in self.rules:
            value = values[rule.name]
            if value == self.params[rule.name].default:
                continue
            if not any(values[n] in allowed for n, allowed in rule.when):
                received = ", ".join(f"{n}={values[n]}" for n, _ in rule.when)
                raise HyperparameterError(
                    f"hyperparameter '{rule.name}': received {raw[rule.name]!r}, which is used only with "
                    f"{rule.condition()} (received {received})"
                )
        return values

    def as_table(self) -> list[dict[str, Any]]:
        """The declarations as plain data (README tables, `--help`)."""
        return [
            {
                "name": p.name,
                "type": _TYPE_NAMES[p.type],
                "default": None if p.required else p.default,
                "required": p.required,
                "allowed": p.allowed(),
                "description": p.description,
                "tuning": _show_tune(p),
            }
            for p in self
        ]

    def rules_text(self) -> list[str]:
        """Each rule in words (README)."""
        return [
            f"`{r.name}` other than its default ({_show(self.params[r.name].default)}) only with {r.condition()}"
            for r in self.rules
        ]


def _show_tune(p: Hyperparameter) -> str:
    t = p.tune
    if t is None:
        return ""
    if t.values is not None or p.choices is not None or p.type is bool:
        values = t.values or p.choices or (True, False)
        return ", ".join(str(v).lower() if isinstance(v, bool) else str(v) for v in values)
    scaling = "" if t.scaling == "Auto" else f" {t.scaling.lower()}"
    return f"[{_show(t.min)}, {_show(t.max)}]{scaling}"


def _show(v: Any) -> str:
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)
