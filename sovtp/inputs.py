"""Finding the inputs of a run: files, folders, manifests' rows -> :class:`InputItem` s.

Folder walks skip hidden files and folders (names starting with a dot: macOS copies
leave an unreadable ``._clip.mp4`` beside every clip). They follow symbolic links
(datasets are often assembled from links) but remember every real directory they
entered, so a link loop is visited once instead of forever. Files are listed in a
stable, sorted order (a folder's files, then its subfolders) so that runs, resumes and
ablations see items in the same order on every machine.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sovtp.frame_folder import is_frame
from sovtp.video import MEDIA_EXTENSIONS, VIDEO_EXTENSIONS


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


def _walk(root: Path, frame_folders: bool = False) -> Iterator[Path]:
    """Media files under ``root``; with ``frame_folders``, a folder that directly holds
    image files is yielded itself (one clip, :mod:`sovtp.frame_folder`) instead of its
    images, and its videos and subfolders are still walked."""
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
        frames_here = frame_folders and any(is_frame(e) for e in entries)
        if frames_here:
            yield folder
        for entry in entries:
            try:
                is_dir = entry.is_dir(follow_symlinks=True)
            except OSError:
                is_dir = False
            if is_dir:
                if not entry.name.startswith("."):
                    subdirs.append(Path(entry.path))
            elif entry.name.startswith("."):
                continue  # hidden, like hidden folders: macOS copies leave a "._clip.mp4" beside every clip
            elif Path(entry.name).suffix.lower() in (VIDEO_EXTENSIONS if frames_here else MEDIA_EXTENSIONS):
                yield Path(entry.path)
        stack.extend(reversed(subdirs))


def discover(paths: Iterable[Path | str], frame_folders: bool = False) -> list[InputItem]:
    """Media files under the given files and folders (recursively), each once.

    ``frame_folders``: every folder that directly holds images is one clip of those
    images (FERV39k, DFEW's and MAFW's face-crop frame folders) instead of one item per
    image."""
    items: list[InputItem] = []
    seen: set[Path] = set()
    for p in paths:
        p = Path(p)
        candidates = _walk(p, frame_folders) if p.is_dir() else [p]
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
    if rel == Path("."):  # the root itself: a frame folder given as the input
        rel = Path(item.path.name)
    text = os.fsencode(rel).decode("utf-8", "backslashreplace")
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", text.replace(os.sep, "__"))
    stem = re.sub(r"\.{2,}", ".", stem).strip("._") or "item"
    digest = hashlib.sha1(os.fsencode(item.path)).hexdigest()[:8]
    return f"{stem[:80]}-{digest}"
