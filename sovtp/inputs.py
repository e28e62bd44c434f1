"""Finding the inputs of a run: files, folders, manifests' rows -> :class:`InputItem` s.

Folder walks follow symbolic links (datasets are often assembled from links) but
remember every real directory they entered, so a link loop is visited once instead of
forever. Files are listed in a stable, sorted order so that runs, resumes and
ablations see items in the same order on every machine.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sovtp.video import MEDIA_EXTENSIONS


@dataclass(frozen=True)
class InputItem:
    """One input of a run. ``meta`` carries dataset columns (ground-truth ``label``,
    ``split``, ``tier``...) through to the result record unchanged."""

    path: Path
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def display(self) -> str:
        """The path as text even when its bytes are not valid UTF-8 (surrogate-escaped)."""
        return os.fsencode(self.path).decode("utf-8", "backslashreplace")


def _walk(root: Path) -> Iterator[Path]:
    seen: set[str] = set()
    stack = [root]
    while stack:
        folder = stack.pop()
        try:
            real = os.path.realpath(folder)
        except OSError:
            continue
        if real in seen:
            continue  # a symlink loop or a second link to the same folder
        seen.add(real)
        try:
            entries = sorted(os.scandir(folder), key=lambda e: os.fsencode(e.name))
        except OSError:
            continue
        subdirs = []
        for entry in entries:
            try:
                is_dir = entry.is_dir(follow_symlinks=True)
            except OSError:
                is_dir = False
            if is_dir:
                if not entry.name.startswith("."):
                    subdirs.append(Path(entry.path))
            elif Path(entry.name).suffix.lower() in MEDIA_EXTENSIONS:
                yield Path(entry.path)
        stack.extend(reversed(subdirs))


def discover(paths: Iterable[Path | str]) -> list[InputItem]:
    """Media files under the given files and folders (recursively), each once."""
    items: list[InputItem] = []
    seen: set[Path] = set()
    for p in paths:
        p = Path(p)
        candidates = _walk(p) if p.is_dir() else [p]
        for c in candidates:
            if c not in seen:
                seen.add(c)
                items.append(InputItem(c))
    return items


def safe_name(item: InputItem, root: Path | None = None) -> str:
    """A file-system-safe, unique-enough name for per-item outputs (previews): no path
    separators, no '..', printable ASCII, so outputs can never escape ``--out``."""
    import hashlib
    import re

    try:
        rel = item.path.relative_to(root) if root is not None else Path(item.path.name)
    except ValueError:
        rel = Path(item.path.name)
    text = os.fsencode(rel).decode("utf-8", "backslashreplace")
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", text.replace(os.sep, "__"))
    stem = re.sub(r"\.{2,}", ".", stem).strip("._") or "item"
    digest = hashlib.sha1(os.fsencode(item.path)).hexdigest()[:8]
    return f"{stem[:80]}-{digest}"
