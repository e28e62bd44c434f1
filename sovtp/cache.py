"""Content-addressed JSON cache on disk, shared by the cue cache and the response cache.

Why JSON: a cache directory is often copied between machines and colleagues; loading
it must never execute code (no pickle). Entries are written atomically (temp file +
rename), so a crash leaves either the old entry or the new one, never half of one.
Deleting the directory is always safe.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import threading
from pathlib import Path
from typing import Any


def _umask() -> int:
    """This process's umask, read without changing it (os.umask can only set it, and
    setting it even for a moment would race with files other threads create)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return 0o022  # no /proc (macOS): the usual default


def temp_beside(path: Path, prefix: str, suffix: str) -> tuple[int, str]:
    """``tempfile.mkstemp`` in ``path``'s folder, with the permissions a plain ``open``
    would give the file (0666 less the umask). mkstemp makes it 0600, so every file
    written through a temp file and a rename (manifests, plan.json, summary.json, a
    results file compacted on resume, cache entries) turned unreadable to the colleagues
    who could read the rest of the run's folder."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=prefix, suffix=suffix)
    os.fchmod(fd, 0o666 & ~_umask())
    return fd, tmp


def stable_key(*parts: Any) -> str:
    """sha256 of a canonical JSON encoding of ``parts`` (dict order does not matter)."""
    blob = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def default_cache_dir() -> Path:
    env = os.environ.get("SOVTP_CACHE_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "sovtp"


class JsonCache:
    """A namespace of JSON entries under ``root/namespace/ab/abcdef....json``."""

    def __init__(self, root: Path | str | None, namespace: str) -> None:
        self.enabled = root is not None
        self.dir = Path(root) / namespace if root is not None else Path(".")
        self.hits = 0
        self.misses = 0
        self._count = threading.Lock()  # extractor branches read the cache from several threads

    def _path(self, key: str) -> Path:
        return self.dir / key[:2] / f"{key}.json"

    def get(self, key: str) -> Any | None:
        if not self.enabled:
            return None
        path = self._path(key)
        try:
            with open(path, encoding="utf-8") as fh:
                value = json.load(fh)
        except FileNotFoundError:
            self._counted(hit=False)
            return None
        except (OSError, ValueError):
            # A damaged entry is a miss, never a crash: it will be rewritten.
            self._counted(hit=False)
            return None
        self._counted(hit=True)
        return value

    def _counted(self, hit: bool) -> None:
        with self._count:
            if hit:
                self.hits += 1
            else:
                self.misses += 1

    def contains(self, key: str) -> bool:
        """Whether ``key`` has an entry, without counting a hit or a miss."""
        return self.enabled and self._path(key).is_file()

    def put(self, key: str, value: Any) -> None:
        if not self.enabled:
            return
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = temp_beside(path, prefix=".tmp-", suffix=".json")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(value, fh, separators=(",", ":"))
            os.replace(tmp, path)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
