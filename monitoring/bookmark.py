"""Which input files a scheduled monitor has already read (the role Glue job bookmarks played).

One entry per file: the bytes consumed, the line count consumed, mtime, and a hash of the first 64 KiB. A file
that grew with the same head is read from where the last run stopped; a file whose head changed (rewritten) is
read again from the start; an unchanged file is skipped.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HEAD_BYTES = 1 << 16
VERSION = 1


def head_hash(path: Path, size: int) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read(min(size, HEAD_BYTES))).hexdigest()


@dataclass
class Todo:
    path: Path
    key: str
    offset: int  # byte offset to start reading at
    first_line: int
    size: int


class Bookmark:
    def __init__(self, path: Path | None, entries: dict[str, dict[str, Any]] | None = None):
        self.path = path
        self.entries = entries or {}

    @classmethod
    def load(cls, path: Path | None) -> Bookmark:
        if path is None or not path.exists():
            return cls(path)
        try:
            doc = json.loads(path.read_text())
            return cls(path, dict(doc.get("files", {})))
        except (OSError, json.JSONDecodeError, AttributeError):
            # an unreadable bookmark means "read everything again", which is safe: the time window still applies
            return cls(path)

    def plan(self, path: Path, key: str) -> Todo | None:
        st = path.stat()
        e = self.entries.get(key)
        if e is None:
            return Todo(path, key, 0, 1, st.st_size)
        if e["size"] == st.st_size and e.get("mtime_ns") == st.st_mtime_ns:
            return None
        if st.st_size > e["size"] and head_hash(path, e["size"]) == e.get("head"):
            return Todo(path, key, int(e["size"]), int(e.get("lines", 0)) + 1, st.st_size)
        if st.st_size == e["size"] and head_hash(path, e["size"]) == e.get("head"):
            return None  # touched, not changed
        return Todo(path, key, 0, 1, st.st_size)

    def done(self, todo: Todo, lines_read: int) -> None:
        st = todo.path.stat()
        prev = self.entries.get(todo.key, {}) if todo.offset else {}
        self.entries[todo.key] = {
            "size": todo.size,
            "mtime_ns": st.st_mtime_ns,
            "lines": int(prev.get("lines", 0)) + lines_read,
            "head": head_hash(todo.path, todo.size),
        }

    def save(self) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"version": VERSION, "files": self.entries}, indent=1, sort_keys=True) + "\n")
        os.replace(tmp, self.path)
