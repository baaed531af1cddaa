"""Read a JSON file the user gave us, with a one-line error naming the file, line and column."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from core.errors import DataError


def read_json(path: str | Path, *, error: type[DataError] = DataError) -> Any:
    """The parsed document; ``error`` (a DataError subclass) when the file is unreadable or not JSON."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise error(f"not valid JSON: {e.msg}", file=str(path), line=e.lineno, column=e.colno) from None
    except FileNotFoundError:
        raise error("not found", file=str(path)) from None
    except (OSError, UnicodeDecodeError) as e:
        raise error(f"cannot read: {getattr(e, 'strerror', None) or e}", file=str(path)) from None
