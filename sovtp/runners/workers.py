"""Cue extraction in a pool of worker processes (``--workers N``).

Why processes: decoding and the mediapipe extractors are CPU-bound Python/C++ work
that holds the GIL for long stretches, so threads do not scale; separate processes do.
Why ``spawn``: the parent may already hold an event loop, HTTP connections, torch's
OpenMP pool or a CUDA context, none of which survive ``fork``; and mediapipe graphs
cannot be pickled, so every worker builds its own :class:`~sovtp.pipeline.Preparer`
once (its extractor models load once per process, on first use) and only plain data
crosses the process boundary: the item in, the prepared prompt out.

What comes back is the :class:`~sovtp.pipeline.Prepared` item with the decoded frames'
pixels dropped (the record needs only their indices and timestamps; the prompt keeps
its own rendered images), so a pool of N workers holds at most a bounded number of
prompts in the parent however long the folder (see ``run_items_async``).

Scripts that call :func:`sovtp.run` with ``workers > 1`` need the usual
``if __name__ == "__main__":`` guard, as with any ``spawn`` pool.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from sovtp.cpus import available_cpus, extract_threads

if TYPE_CHECKING:
    from sovtp.inputs import InputItem
    from sovtp.pipeline import Prepared, Preparer, RunConfig

_PREPARER: Preparer | None = None  # one per worker process, built by _init_worker


# Cores one worker keeps busy: its clip decodes beside the face detector, the pose starts
# on the faces as they come, and the mesh runs beside the pose (sovtp.extract).
CORES_PER_WORKER = 2


def default_workers() -> int:
    """Worker processes for the CPUs this process may use: one per two cores, at least one.

    Why not one per core: a worker already keeps about two cores busy with its own clip.
    Measured on the 2-vCPU reference machine (benchmarks/bench_throughput.py, 24 clips,
    medians of 3): extraction alone took 8.56 s in one process and 8.58 s in two, and a
    whole run overlapped extraction and answering better in one (wall 1.12x the larger
    stage, first record after 1.9 s) than in two (1.31x, 3.7 s)."""
    return max(1, available_cpus() // CORES_PER_WORKER)


def resolve_workers(requested: int | None, n_items: int) -> int:
    """How many worker processes a run over ``n_items`` inputs uses: ``requested``
    (None: :func:`default_workers`), never more than there are items; 1 means no pool at all."""
    n = default_workers() if requested is None else int(requested)
    if n < 1:
        raise ValueError(f"workers={requested} is not a positive number; pass --workers 1 or more")
    return max(1, min(n, n_items))


# --------------------------------------------------------------------------- worker side


def _init_worker(config: RunConfig, workers: int = 1) -> None:
    global _PREPARER
    import signal

    from sovtp.pipeline import Preparer

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle: it saves and stops the pool
    _exit_with_parent()
    # The workers share the cores: each runs its clip's extractor branches on its share.
    _PREPARER = Preparer(config, extract_threads=extract_threads(workers))


def _exit_with_parent(poll_s: float = 0.5) -> None:
    """A pool worker holds both ends of its call-queue pipe, so it never reads EOF when
    the parent is killed (SIGKILL, OOM killer) and would live on holding its models; it
    watches its parent instead and exits once it has been re-parented."""
    import threading
    import time

    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(poll_s)
        os._exit(0)

    threading.Thread(target=watch, name="sovtp-parent-watch", daemon=True).start()


def slim(p: Prepared) -> Prepared:
    """``p`` without the decoded frames' pixels: each frame keeps its position, index,
    timestamp and its width/height (an array of shape (h, w, 0) holds no bytes)."""
    if p.clip is None:
        return p
    frames = tuple(replace(f, image=np.empty((f.height, f.width, 0), dtype=np.uint8)) for f in p.clip.frames)
    return replace(p, clip=replace(p.clip, frames=frames))


@dataclass
class PrepStats:
    """What a worker's Preparer counted while preparing one item (merged in the parent)."""

    extractor_runs: dict[str, int] = field(default_factory=dict)
    cache_hits: int = 0
    cache_misses: int = 0


def prepare_in_worker(item: InputItem, run_key: str, content_hash: str) -> tuple[Prepared, PrepStats]:
    """Runs in a worker process: prepare one item with this process's Preparer."""
    preparer = _PREPARER
    assert preparer is not None, "worker process was not initialised"
    runs_before = dict(preparer.extractor_runs)
    cache = preparer.cue_cache
    hits, misses = (cache.hits, cache.misses) if cache is not None else (0, 0)
    prepared = preparer.prepare(item, run_key, content_hash)
    stats = PrepStats(
        extractor_runs={k: v - runs_before.get(k, 0) for k, v in preparer.extractor_runs.items() if v != runs_before.get(k, 0)},
        cache_hits=(cache.hits - hits) if cache is not None else 0,
        cache_misses=(cache.misses - misses) if cache is not None else 0,
    )
    return slim(prepared), stats


# --------------------------------------------------------------------------- parent side


class ProcessPreparer:
    """A ``spawn`` process pool whose workers each hold one Preparer.

    :meth:`prepare` is awaitable and returns a Prepared item (errors included, never
    raising for one item's failure). A worker that dies (a segfault in native code,
    the OOM killer) breaks every queued future: the pool is rebuilt and those items
    are tried once more, so only an item that kills a worker twice ends as an error. Counters are merged into ``parent`` (the run's own Preparer) so the summary and
    manifest read the same fields as in the single-thread path.
    """

    def __init__(self, config: RunConfig, workers: int, parent: Preparer | None = None, start_method: str = "spawn") -> None:
        self.config = config
        self.workers = int(workers)
        self.parent = parent
        self._ctx = multiprocessing.get_context(start_method)
        self._pool: ProcessPoolExecutor | None = None
        self.restarts = 0

    def _get_pool(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                max_workers=self.workers, mp_context=self._ctx, initializer=_init_worker, initargs=(self.config, self.workers)
            )
        return self._pool

    def submit(self, item: InputItem, run_key: str, content_hash: str) -> Future:
        return self._get_pool().submit(prepare_in_worker, item, run_key, content_hash)

    async def prepare(self, item: InputItem, run_key: str, content_hash: str) -> Prepared:
        from sovtp.pipeline import Prepared

        for attempt in range(2):  # a dead worker breaks every queued future: retry once on a new pool
            pool = self._get_pool()
            try:
                prepared, stats = await asyncio.wrap_future(pool.submit(prepare_in_worker, item, run_key, content_hash))
            except BrokenProcessPool:
                self._rebuild(pool)
                if attempt == 0:
                    continue
                why = "a worker process died while preparing this input (out of memory or a crash in native code); rerun to retry it, or use --workers 1"
            except Exception as exc:  # e.g. an unpicklable value in a custom extractor's cues
                why = f"could not prepare the prompt in a worker process ({type(exc).__name__}: {exc})"
            else:
                self._merge(stats)
                return prepared
            break
        return Prepared(item=item, run_key=run_key, content_hash=content_hash, error=f"{item.path.name}: {why}", error_kind="internal")

    def _merge(self, stats: PrepStats) -> None:
        if self.parent is None:
            return
        for name, n in stats.extractor_runs.items():
            self.parent.extractor_runs[name] = self.parent.extractor_runs.get(name, 0) + n
        if self.parent.cue_cache is not None:
            self.parent.cue_cache.hits += stats.cache_hits
            self.parent.cue_cache.misses += stats.cache_misses

    def _rebuild(self, broken: ProcessPoolExecutor) -> None:
        if self._pool is broken:
            broken.shutdown(wait=False, cancel_futures=True)
            self._pool = None
            self.restarts += 1

    def close(self, wait: bool = True) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=wait, cancel_futures=True)
            self._pool = None

    def __enter__(self) -> ProcessPreparer:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close(wait=exc[0] is None)
