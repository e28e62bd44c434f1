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

import contextlib
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
    left out when the same path also has a record with a hash: the file was put right
    (or back) since, and its answer is what counts."""
    latest: dict[tuple[str, str], Result] = {}
    for r in iter_results(path):
        latest[record_key(r)] = r
    hashed = {r.path for r in latest.values() if r.content_hash is not None}
    return [r for r in latest.values() if r.content_hash is not None or r.path not in hashed]


def is_final(result: Result) -> bool:
    return result.status != "error" or result.meta.get("error_kind") in FINAL_ERROR_KINDS


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


@contextlib.contextmanager
def run_lock(path: Path) -> Iterator[None]:
    """:func:`hold_run_lock` for the length of a block."""
    fd = hold_run_lock(path)
    try:
        yield
    finally:
        if fd is not None:
            os.close(fd)


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
        try:
            self._read_existing()
        except BaseException:  # Ctrl-C while a large file is read: the lock must not outlive this
            if self._run_lock is not None:
                os.close(self._run_lock)
                self._run_lock = None
            raise
        self._moved: dict[str, list[str]] = {}  # run key -> the paths its moved record now has

    def _read_existing(self) -> None:
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
        return (run_key, path) in self.finished or run_key in self.moved_keys or (run_key, os.path.realpath(path)) in self.finished_real

    @functools.cached_property
    def finished_real(self) -> frozenset[tuple[str, str]]:
        """(run key, resolved path) of the file's earlier final records: the same file named
        another way (relative then absolute, through a link) is the same input."""
        with self._lock:
            return frozenset((key, os.path.realpath(path)) for key, path in self.finished)

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
            if path in self._unreadable:
                self._superseded = True  # was missing once, is back: its error record goes
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
    """Rewrite ``path`` with one record per item (the latest), atomically.

    ``moved``: run key -> the paths of this run's inputs that were skipped as already
    answered under another path. Each such path gets a copy of that answer (a final
    record, preferably the one of the same file under another name, else one at a path
    that no longer exists, the same file name first: copies moved together keep their
    own records). Records at paths that no longer exist are dropped when their answer
    now stands under an existing path (a renamed or moved file), and so are non-final
    ones (an error) there whose key has an answer at an existing path."""
    moved = moved or {}
    records = load_results(path)
    missing = {r.path: not os.path.lexists(r.path) for r in records}  # one stat per path, not per question

    def gone(r: Result) -> bool:
        return missing[r.path]

    by_key: dict[str, list[Result]] = {}
    for r in records:
        by_key.setdefault(r.run_key or "", []).append(r)
    kept = {record_key(r): r for r in records if not (gone(r) and r.run_key in moved)}
    for key, paths in moved.items():
        pool = by_key.get(key, [])
        finals = [r for r in pool if is_final(r)] or pool
        if not finals:
            continue
        for p in paths:
            real, name = os.path.realpath(p), Path(p).name
            source = (
                next((r for r in finals if not gone(r) and os.path.realpath(r.path) == real), None)  # the same file, named another way
                or next((r for r in finals if gone(r) and Path(r.path).name == name), None)
                or next((r for r in finals if gone(r)), None)
                or finals[0]
            )
            kept.pop((key, p), None)  # e.g. this copy's own retryable error
            kept[(key, p)] = source.model_copy(update={"path": p})
    answered = {r.run_key for r in kept.values() if is_final(r) and not missing.get(r.path, False)}
    records = [r for r in kept.values() if not (missing.get(r.path, False) and not is_final(r) and r.run_key in answered)]
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
