"""The JSONPath subset SageMaker batch transform accepts in InputFilter / OutputFilter, parsed strictly.

Documented operators (sagemaker dg "batch-transform-data-processing", "Supported JSONPath Operators"):
``$``, ``.name``, ``*``, ``['name'(,'name')]``, ``[n(,n)]`` (negative: -1 is the last element) and
``[start:end]``; the API caps expressions at 63 characters. Anything else (``..``, ``?()`` filters, ``@``,
scripts, functions, slice steps, names nested inside brackets) is rejected before a job starts.

Slices are INCLUSIVE of ``end``: the documentation's worked example says ``$[1:4]`` "specifies the second
through fifth columns" and ``[:5]`` runs "from the first column (index 0) through the sixth column". Generic
JSONPath libraries (jsonpath-ng, Jayway) use Python/JavaScript exclusive slices and cannot parse the documented
output filter ``$[0,5:]``, which is why this is a small parser of its own rather than a library.

Evaluation follows Jayway (the implementation the documentation links to): a path made only of names and single
indices is *definite* and yields one value; wildcards, slices and index lists yield a list; a final
``['a','b']`` on an object yields an object with those keys (so ``$['id','SageMakerOutput']`` keeps both).
An index or key that is not there is an error, as the DataProcessing API reference says ("If you specify indexes
that aren't within the dimension size of the joined dataset, you get an error").
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

MAX_LENGTH = 63

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_\-]*")
_INT = re.compile(r"-?\d+")


class JsonPathError(ValueError):
    """An expression SageMaker would reject (raised by parse)."""


class JsonPathMatchError(ValueError):
    """A valid expression that does not fit a record (raised by evaluate): missing key, index out of range."""


# -- segments -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Name:
    name: str
    multi = False

    def text(self) -> str:
        return f"['{self.name}']" if not _NAME.fullmatch(self.name) else f".{self.name}"


@dataclass(frozen=True)
class Names:
    names: tuple[str, ...]
    multi = True

    def text(self) -> str:
        return "[" + ",".join(f"'{n}'" for n in self.names) + "]"


@dataclass(frozen=True)
class Wildcard:
    multi = True

    def text(self) -> str:
        return "[*]"


@dataclass(frozen=True)
class Slice:
    start: int | None
    end: int | None  # inclusive

    def text(self) -> str:
        return f"{'' if self.start is None else self.start}:{'' if self.end is None else self.end}"


@dataclass(frozen=True)
class Indices:
    """``[n]``, ``[n,m,...]``, ``[a:b]`` and mixtures like ``[0,5:]`` (each item an int or a Slice)."""

    items: tuple[int | Slice, ...]

    @property
    def multi(self) -> bool:
        return len(self.items) > 1 or isinstance(self.items[0], Slice)

    def text(self) -> str:
        return "[" + ",".join(i.text() if isinstance(i, Slice) else str(i) for i in self.items) + "]"


Segment = Name | Names | Wildcard | Indices


@dataclass(frozen=True)
class JsonPath:
    expression: str
    segments: tuple[Segment, ...]

    @property
    def is_root(self) -> bool:
        return not self.segments

    @property
    def definite(self) -> bool:
        return not any(s.multi for s in self.segments)

    @property
    def index_only(self) -> bool:
        """True when the path can apply to a CSV row (a flat array): at most one index/slice/wildcard segment."""
        return len(self.segments) <= 1 and all(isinstance(s, Indices | Wildcard) for s in self.segments)

    def __str__(self) -> str:
        return self.expression


# -- parsing --------------------------------------------------------------------------------------------
def parse(expression: str) -> JsonPath:
    """Parse ``expression`` or raise JsonPathError with a one-line reason naming the position."""
    if len(expression) > MAX_LENGTH:
        raise JsonPathError(
            f"JSONPath expression {expression[:20]!r}... is {len(expression)} characters long; "
            f"SageMaker allows at most {MAX_LENGTH}"
        )
    return _Parser(expression).parse()


class _Parser:
    def __init__(self, text: str):
        self.text = text
        self.pos = 0

    def fail(self, reason: str) -> JsonPathError:
        return JsonPathError(f"unsupported JSONPath expression {self.text!r} at character {self.pos + 1}: {reason}")

    def peek(self, n: int = 1) -> str:
        return self.text[self.pos : self.pos + n]

    def parse(self) -> JsonPath:
        if not self.text:
            raise JsonPathError("empty JSONPath expression; use '$' for the whole record")
        if self.peek() != "$":
            raise self.fail("an expression must start with '$' (the root)")
        self.pos = 1
        segments: list[Segment] = []
        while self.pos < len(self.text):
            segments.append(self.segment())
        return JsonPath(self.text, tuple(segments))

    def segment(self) -> Segment:
        c = self.peek()
        if self.peek(2) == "..":
            raise self.fail("recursive descent '..' is not supported by SageMaker")
        if c == ".":
            self.pos += 1
            c = self.peek()
            if c == "*":
                self.pos += 1
                return Wildcard()
            if c == "[":  # '$.field1.['child1','child2']' is a documented form
                return self.bracket()
            m = _NAME.match(self.text, self.pos)
            if not m:
                raise self.fail("expected a name, '*' or '[' after '.'")
            self.pos = m.end()
            if self.peek() == "(":
                raise self.fail(f"functions such as {m.group()}() are not supported by SageMaker")
            return Name(m.group())
        if c == "[":
            return self.bracket()
        raise self.fail(f"unexpected {c!r}; expected '.' or '['")

    def skip_spaces(self) -> None:
        while self.peek() == " ":
            self.pos += 1

    def bracket(self) -> Segment:
        self.pos += 1  # '['
        self.skip_spaces()
        c = self.peek()
        if c == "?":
            raise self.fail("filter expressions '[?(...)]' are not supported by SageMaker")
        if c in "(@":
            raise self.fail("script expressions are not supported by SageMaker")
        if c == "*":
            self.pos += 1
            segment: Segment = Wildcard()
        elif c in "'\"":
            segment = self.names()
        else:
            segment = self.indices()
        self.skip_spaces()
        if self.peek() != "]":
            raise self.fail("expected ']'" if self.pos < len(self.text) else "missing ']'")
        self.pos += 1
        return segment

    def names(self) -> Segment:
        names = []
        while True:
            self.skip_spaces()
            quote = self.peek()
            if quote not in "'\"":
                raise self.fail("expected a quoted name")
            end = self.text.find(quote, self.pos + 1)
            if end < 0:
                raise self.fail("unterminated quoted name")
            name = self.text[self.pos + 1 : end]
            if not name:
                raise self.fail("empty name")
            if "." in name or "[" in name:
                # Documented: "$.field1.['child1','child2.grandchild']" is not supported.
                raise self.fail(f"nested children inside brackets ({name!r}) are not supported by SageMaker")
            names.append(name)
            self.pos = end + 1
            self.skip_spaces()
            if self.peek() != ",":
                break
            self.pos += 1
        return Name(names[0]) if len(names) == 1 else Names(tuple(names))

    def integer(self) -> int | None:
        m = _INT.match(self.text, self.pos)
        if not m:
            return None
        self.pos = m.end()
        return int(m.group())

    def indices(self) -> Segment:
        items: list[int | Slice] = []
        while True:
            self.skip_spaces()
            start = self.integer()
            self.skip_spaces()
            if self.peek() == ":":
                self.pos += 1
                self.skip_spaces()
                end = self.integer()
                self.skip_spaces()
                if self.peek() == ":":
                    raise self.fail("slice steps '[start:end:step]' are not supported by SageMaker")
                items.append(Slice(start, end))
            elif start is None:
                raise self.fail("expected an index, a slice 'start:end', '*' or a quoted name")
            else:
                items.append(start)
            self.skip_spaces()
            if self.peek() != ",":
                break
            self.pos += 1
        return Indices(tuple(items))


# -- evaluation -----------------------------------------------------------------------------------------
def _kind(value: Any) -> str:
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return f"an array of {len(value)}"
    return f"a {type(value).__name__} value"


def _position(index: int, n: int, where: str, path: JsonPath) -> int:
    i = index + n if index < 0 else index
    if not 0 <= i < n:
        raise JsonPathMatchError(f"{path}: index {index} is outside {where}, which has {n} elements")
    return i


def _select(segment: Segment, value: Any, where: str, path: JsonPath) -> list[Any]:
    if isinstance(segment, Name | Names):
        if not isinstance(value, dict):
            raise JsonPathMatchError(f"{path}: {where} is {_kind(value)}, not an object with {segment.text()}")
        names = (segment.name,) if isinstance(segment, Name) else segment.names
        missing = [n for n in names if n not in value]
        if missing:
            raise JsonPathMatchError(f"{path}: {where} has no key {missing[0]!r}")
        return [value[n] for n in names]
    if isinstance(segment, Wildcard):
        if isinstance(value, dict):
            return list(value.values())
        if isinstance(value, list):
            return list(value)
        raise JsonPathMatchError(f"{path}: {where} is {_kind(value)}; '*' needs an object or an array")
    if not isinstance(value, list):
        raise JsonPathMatchError(f"{path}: {where} is {_kind(value)}, not an array for {segment.text()}")
    n = len(value)
    out: list[Any] = []
    for item in segment.items:
        if isinstance(item, Slice):
            first = 0 if item.start is None else _position(item.start, n, where, path)
            last = n - 1 if item.end is None else _position(item.end, n, where, path)
            if first > last:
                raise JsonPathMatchError(f"{path}: slice [{item.text()}] selects nothing from {where} ({n} elements)")
            out.extend(value[first : last + 1])  # inclusive end, as documented
        else:
            out.append(value[_position(item, n, where, path)])
    return out


def evaluate(path: JsonPath, root: Any) -> Any:
    """Apply ``path`` to a parsed record (a CSV row is a list of strings)."""
    nodes = [root]
    where = "$"
    for segment in path.segments:
        nodes = [v for node in nodes for v in _select(segment, node, where, path)]
        where += segment.text()
    if path.definite:
        return nodes[0]
    last = path.segments[-1]
    if isinstance(last, Names) and all(not s.multi for s in path.segments[:-1]):
        return dict(zip(last.names, nodes, strict=True))
    return nodes
