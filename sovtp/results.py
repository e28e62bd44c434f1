"""The results file: JSONL, one whole line per finished item, never losing work.

Each record is written with a single ``write`` of one complete line, flushed and
fsynced before the next item is reported done, so a run killed with SIGKILL loses at
most the items in flight. A line torn by a crash (no trailing newline) is cut off
when the file is reopened. A rerun with the same output skips every item whose
``run_key`` (input content hash + every setting that changes the answer) already has
a final record; items that ended in a retryable error are tried again and their old
record is dropped when the run finishes (the file is rewritten atomically), so the
file holds each item exactly once.
"""

from __future__ import annotations

import functools
import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path

from sovtp.cache import temp_beside
from sovtp.errors import UserError
from sovtp.types import Result

# An error record with one of these kinds is final: rerunning cannot change it
# (the input file itself is broken). Other errors (backend, internal) are retried.
FINAL_ERROR_KINDS = frozenset({"input"})


def iter_results(path: Path | str) -> Iterator[Result]:
    """Every parseable record in ``path`` (a torn last line is ignored)."""
    path = Path(path)
    if not path.exists():
        return
    with open(path, "rb") as fh:
        for raw in fh:
            line = raw.strip()
            if not line:
                continue
            try:  # a line of bad bytes (a disk error, an editor's save) is skipped like a torn one
                yield Result.model_validate_json(line.decode("utf-8"))
            except ValueError:  # UnicodeDecodeError and pydantic's ValidationError included
                continue


def record_key(r: Result) -> tuple[str, str]:
    """What makes a record one item's: its run key *and* its path. Two inputs with the same
    bytes (a clip listed twice, a copy under another label) share a run key; keyed on it
    alone, the later record replaced the earlier and one of them dropped out of every
    score."""
    return (r.run_key or "", r.path)


def load_results(path: Path | str) -> list[Result]:
    """The file's records, the latest per item (run key and path) in file order. A record
    of an input that could not be read at all (no content hash: missing, unreadable) is
    dropped once a later record names the same path: the file was put right since."""
    latest: dict[tuple[str, str], Result] = {}
    unreadable: dict[str, list[tuple[str, str]]] = {}  # path -> keys of its hashless records
    for r in iter_results(path):
        for key in unreadable.pop(r.path, []):
            latest.pop(key, None)
        latest[record_key(r)] = r
        if r.content_hash is None:
            unreadable.setdefault(r.path, []).append(record_key(r))
    return list(latest.values())


def is_final(result: Result) -> bool:
    return result.status != "error" or result.meta.get("error_kind") in FINAL_ERROR_KINDS


def _real(path: str) -> str:
    return os.path.realpath(path)


def hold_run_lock(path: Path) -> int | None:
    """Hold an exclusive lock on ``path`` for one run (a ``.<name>.lock`` file beside it,
    released when the run closes the file or its process dies). Two runs appending to one
    results file (two shards of a dataset, a run started twice) would lose records: the
    rewrite at the end of one run (after retries) replaces the file the other still
    appends to. So a second run stops with one sentence instead. None where the system
    has no ``flock`` (the run then goes on unguarded, as before)."""
    try:
        import fcntl
    except ImportError:  # not on POSIX
        return None
    fd = os.open(path.with_name(f".{path.name}.lock"), os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        os.close(fd)
        who = f" (pid {holder})" if holder.isdigit() else ""
        raise ResultsInUse(
            f"{path} is being written by another sovtp run{who}; wait for it to finish, or give this run another --out"
        ) from None
    except OSError:  # a file system without locks (some network mounts): go on unguarded
        os.close(fd)
        return None
    os.ftruncate(fd, 0)
    os.pwrite(fd, str(os.getpid()).encode(), 0)
    return fd


class ResultsInUse(UserError):
    """Another run holds the results file."""


class ResultsWriter:
    """Appends results atomically line by line; thread-safe."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        if self.path.is_dir():
            raise UserError(f"--out {self.path} is a folder; give a results file, e.g. {self.path / 'results.jsonl'}")
        self._run_lock: int | None = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._run_lock = hold_run_lock(self.path)
            with open(self.path, "a", encoding="utf-8"):
                pass  # writable: found now, not after the first clip's cues and answer
        except OSError as exc:
            if self._run_lock is not None:
                os.close(self._run_lock)
            raise UserError(f"cannot write the results file {self.path} ({exc.strerror or exc}); give another --out") from None
        self._lock = threading.Lock()
        self._repair_torn_tail()
        self.finished: dict[tuple[str, str], Result] = {}  # record_key -> final record
        self.retryable: set[tuple[str, str]] = set()
        self._unreadable: set[str] = set()  # paths whose record has no content hash
        seen: set[tuple[str, str]] = set()
        repeated = False  # a record key twice: a run that retried was killed before its rewrite
        for r in iter_results(self.path):
            if r.run_key is None:
                continue
            repeated = repeated or record_key(r) in seen
            seen.add(record_key(r))
            if r.content_hash is None:
                self._unreadable.add(r.path)
            if is_final(r):
                self.finished[record_key(r)] = r
                self.retryable.discard(record_key(r))
            else:
                self.retryable.add(record_key(r))
        self._fh = open(self.path, "a", encoding="utf-8")
        self.written = 0
        self._superseded = repeated  # a record replaced an earlier one: rewrite on close
        self._moved: dict[str, list[str]] = {}  # run key -> the paths its moved record now has

    def _repair_torn_tail(self) -> None:
        if not self.path.exists() or self.path.stat().st_size == 0:
            return
        with open(self.path, "rb+") as fh:
            fh.seek(-1, os.SEEK_END)
            if fh.read(1) == b"\n":
                return
            fh.seek(0)
            cut = fh.read().rfind(b"\n") + 1
            fh.truncate(cut)

    def is_done(self, run_key: str, path: str) -> bool:
        """Whether the input at ``path`` is finished: it has a final record under
        ``run_key``, or one was made under a path that no longer exists (the file was
        renamed or moved since: resume follows the content). A copy that still exists
        beside the recorded one does not count, so every copy gets its own record (the
        caches make its answer free). A runner that skips a moved input calls
        :meth:`follow`, so its record takes the new path."""
        return (run_key, path) in self.finished or run_key in self.moved_keys or (run_key, _real(path)) in self.finished_real

    @functools.cached_property
    def finished_real(self) -> frozenset[tuple[str, str]]:
        """(run key, resolved path) of the file's earlier final records: the same file named
        another way (relative then absolute, through a link) is the same input."""
        with self._lock:
            return frozenset((key, _real(path)) for key, path in self.finished)

    @functools.cached_property
    def moved_keys(self) -> frozenset[str]:
        """Run keys of the file's earlier final records whose path no longer exists (looked
        up once: records this run adds name files that exist)."""
        with self._lock:
            return frozenset(key for key, path in self.finished if not os.path.lexists(path))

    def follow(self, run_key: str, path: str) -> None:
        """The input at ``path`` was skipped as a moved file (see :meth:`is_done`): its
        record takes the new path when the file is closed, so scores, ``load_results`` and
        an ablation's table find it where the input now is (not under a path that no
        longer exists, which no dataset lists any more)."""
        with self._lock:
            if (run_key, path) not in self.finished and path not in self._moved.setdefault(run_key, []):
                self._moved[run_key].append(path)

    def append(self, result: Result) -> None:
        line = result.model_dump_json() + "\n"
        with self._lock:
            self._fh.write(line)
            self._fh.flush()
            os.fsync(self._fh.fileno())
            self.written += 1
            if record_key(result) in self.finished or (result.content_hash and result.path in self._unreadable):
                self._superseded = True  # e.g. a missing input reported again, or since put in place
            if result.run_key and is_final(result):
                self.finished[record_key(result)] = result

    def close(self) -> None:
        """Close; if any item was retried, reported again or moved, rewrite the file with
        one record per item (its latest), under the item's current path."""
        with self._lock:
            if self._fh.closed:
                return
            self._fh.close()
            try:
                if self.retryable or self._superseded or any(self._moved.values()):
                    compact(self.path, {key: paths for key, paths in self._moved.items() if paths})
            finally:
                if self._run_lock is not None:
                    os.close(self._run_lock)  # releases the lock
                    self._run_lock = None


def compact(path: Path, moved: dict[str, list[str]] | None = None) -> None:
    """Rewrite ``path`` with one record per item (the latest), atomically. ``moved``: run
    key -> the paths its input now has; the records of that key whose path no longer
    exists, or names one of those files another way, are replaced by one record per new
    path (the old record of the same file name where there is one: copies of a file
    moved together keep their own records)."""
    moved = moved or {}
    now = {key: {_real(p) for p in paths} for key, paths in moved.items()}

    def stale(r: Result) -> bool:  # a record of a moved input under its old name
        return r.run_key in moved and (not os.path.lexists(r.path) or _real(r.path) in now[r.run_key])

    records = load_results(path)
    gone: dict[str, list[Result]] = {}  # moved run key -> its records under old names
    for r in records:
        if stale(r):
            gone.setdefault(r.run_key or "", []).append(r)
    kept: list[Result] = []
    for r in records:
        if r.run_key in gone and stale(r):
            old = gone.pop(r.run_key or "", [])  # where the first of them stood; the others go
            by_name = {Path(o.path).name: o for o in old}
            kept += [by_name.get(Path(p).name, old[0]).model_copy(update={"path": p}) for p in moved[r.run_key or ""]]
        elif not stale(r):
            kept.append(r)
    records = kept
    fd, tmp = temp_beside(path, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        for r in records:
            fh.write(r.model_dump_json() + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def write_json_atomic(path: Path, data: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = temp_beside(path, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=2, sort_keys=True, default=str)
        fh.write("\n")
    os.replace(tmp, path)
