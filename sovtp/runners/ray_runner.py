"""The same pipeline on Ray Data (``sovtp run --runner ray``; ``pip install 'sovtp[ray]'``).

Why Ray Data and not a home-made scheduler: a lab running DFEW or FERV39k needs cue
extraction (CPU, per frame) spread over many cores or machines and model inference
(GPU, per prompt) on other workers, overlapping, with bounded memory and restarts of
dead workers. Ray Data's streaming executor does exactly that: each stage below is an
operator, batches flow between them through the object store with backpressure, and
stateful stages run in actor pools so their models load once per actor.

    read inputs   (from_items)  the items, in blocks
    prepare       (CPU actor pool, one Preparer each)  content hash, run key (finished
                  items are passed over), decode -> cues -> render -> compose
    answer        (actor pool: a local model on GPU/CPU in batches, or an async actor
                  keeping concurrency x endpoints HTTP requests out)
    write         (the driver)  the same ResultsWriter as the local runner, so resume works

Every stage calls the local runner's own functions (``Preparer.prepare``,
``result_for``, ``run_key_for``, the backends), so the records equal the local runner's
for the same inputs and settings, and a run may be started with one runner and resumed
with the other. Rows carry pickled Python objects between our own actors (Ray pickles
anyway); nothing pickled is ever written to disk.

Joining a cluster (``--address``) needs sovtp installed on every node and the inputs,
the cache folder and any local checkpoint at the same paths there (a shared file system).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import pickle
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from sovtp.errors import UserError
from sovtp.inputs import InputItem
from sovtp.pipeline import Prepared, RunConfig, RunSummary
from sovtp.types import Answer, Result

if TYPE_CHECKING:
    from sovtp.progress import RunBar

LOCAL_OBJECT_STORE_BYTES = 500 * 1024 * 1024  # a local instance: prompts are small, keep RAM for the models
_LOCAL_MODEL_BACKENDS = ("transformers", "vllm")


def require_ray():
    """Import ray, or say in one sentence how to get it."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise UserError(
            "--runner ray needs Ray Data, which is not installed; run pip install 'sovtp[ray]' (or use --runner local)."
        ) from None
    return ray


def start_ray(
    address: str | None = None, num_cpus: int | None = None, object_store_memory: int = LOCAL_OBJECT_STORE_BYTES, quiet: bool = True
) -> bool:
    """Connect to ``address`` (a cluster) or start a small local Ray instance.
    Returns True when this call started/joined Ray (and so should shut it down)."""
    ray = require_ray()
    if ray.is_initialized():
        return False
    import signal
    import threading

    # ray.init installs its own SIGTERM handler (sys.exit); sovtp's stops a run the way
    # Ctrl-C does (records whole, "Terminated.", how to resume), so it is put back
    on_term = signal.getsignal(signal.SIGTERM) if threading.current_thread() is threading.main_thread() else None
    try:
        return _init_ray(ray, address, num_cpus, object_store_memory, quiet)
    finally:
        if on_term is not None:
            signal.signal(signal.SIGTERM, on_term)


def _init_ray(ray: Any, address: str | None, num_cpus: int | None, object_store_memory: int, quiet: bool) -> bool:
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no phoning home from a lab's cluster
    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    kwargs: dict[str, Any] = {"log_to_driver": not quiet, "logging_level": logging.WARNING, "configure_logging": True}
    if address:
        try:
            ray.init(address=address, **kwargs)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise UserError(
                f"Cannot join the Ray cluster at {address} ({exc}); start it with 'ray start --head' or fix --address."
            ) from None
    else:
        from sovtp.cpus import available_cpus

        ray.init(num_cpus=num_cpus or available_cpus(), object_store_memory=object_store_memory, include_dashboard=False, **kwargs)
    _quiet_ray_data(quiet)
    return True


def _quiet_ray_data(quiet: bool) -> None:
    from ray.data import DataContext

    ctx = DataContext.get_current()
    if quiet:
        ctx.enable_progress_bars = False
        ctx.print_on_execution_start = False
        for name in ("ray.data", "ray"):
            logging.getLogger(name).setLevel(logging.WARNING)


# --------------------------------------------------------------------------- stages (run on Ray workers)


class PrepareActor:
    """Stage 2: hash each input and, unless it is already finished, prepare it with
    this actor's Preparer (extractor models load once per actor; mediapipe graphs never
    cross a process boundary). Emits the slimmed Prepared item, or None when skipped."""

    def __init__(
        self,
        config: RunConfig,
        finished: frozenset[tuple[str, str]],
        moved: frozenset[str],
        finished_real: frozenset[tuple[str, str]] = frozenset(),
    ) -> None:
        from sovtp.pipeline import Preparer

        self.config = config
        self.finished, self.moved, self.finished_real = finished, moved, finished_real  # as ResultsWriter.is_done decides
        self.preparer = Preparer(config, extract_threads=1)  # the actor reserves one CPU (num_cpus=1)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from sovtp.pipeline import _hash_item, run_key_for
        from sovtp.runners.workers import slim

        out_prepared, out_stats = [], []
        for raw in batch["item"]:
            item: InputItem = pickle.loads(raw)
            content_hash, err = _hash_item(item)
            key = run_key_for(content_hash or item.display, self.config)
            stats: dict[str, Any] = {}
            done = (key, item.display) in self.finished or key in self.moved or (key, os.path.realpath(item.display)) in self.finished_real
            if content_hash and done:
                prepared = None
                if (key, item.display) not in self.finished:
                    stats = {"moved": [key, item.display]}  # the driver's writer moves its record
            elif err is not None:
                prepared = Prepared(item=item, run_key=key, error=err, error_kind="input")
            else:
                p = self.preparer
                runs, cache = dict(p.extractor_runs), p.cue_cache
                hits, misses = (cache.hits, cache.misses) if cache is not None else (0, 0)
                prepared = slim(p.prepare(item, key, content_hash))
                stats = {
                    "runs": {k: v - runs.get(k, 0) for k, v in p.extractor_runs.items() if v != runs.get(k, 0)},
                    "hits": (cache.hits - hits) if cache is not None else 0,
                    "misses": (cache.misses - misses) if cache is not None else 0,
                }
            out_prepared.append(pickle.dumps(prepared, protocol=pickle.HIGHEST_PROTOCOL))
            out_stats.append(json.dumps(stats))
        return {"prepared": _objects(out_prepared), "stats": _objects(out_stats)}


async def _answer_rows(backend, mode, sampling, config: RunConfig, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Answer a batch of prepared rows; each output row is the finished record as JSON
    ("" for an item passed over as already finished)."""
    from sovtp.pipeline import answer_prompts, result_for

    prepared: list[Prepared | None] = [pickle.loads(b) for b in batch["prepared"]]
    todo = [p for p in prepared if p is not None and p.error is None]
    answers: dict[int, Answer] = {}
    if todo:
        got = await answer_prompts(backend, [p.prompt for p in todo], mode, sampling, config.backend)
        answers = {id(p): a for p, a in zip(todo, got, strict=True)}
    results = ["" if p is None else result_for(p, answers.get(id(p)), config).model_dump_json() for p in prepared]
    return {"result": _objects(results), "stats": batch["stats"]}


class AnswerActor:
    """Stage 3 for a local model (transformers, vLLM engine): one backend per actor, so
    the model loads once per actor (on its GPU where the cluster has one); batches of
    the backend's preferred size, one at a time."""

    def __init__(self, config: RunConfig, has_schema: bool) -> None:
        from sovtp.backends.base import Sampling, choose_mode
        from sovtp.pipeline import _make_backend

        self.config = config
        self.loop = asyncio.new_event_loop()
        self.backend = _make_backend(config)
        check = getattr(self.backend, "check", None)
        if check is not None:
            self.loop.run_until_complete(check())
        self.mode = choose_mode(config.structured, self.backend.capabilities, has_schema)
        self.sampling = Sampling(temperature=config.temperature, max_tokens=config.max_tokens, seed=config.seed)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self.loop.run_until_complete(_answer_rows(self.backend, self.mode, self.sampling, self.config, batch))


class HttpAnswerActor:
    """Stage 3 for OpenAI-compatible endpoints: an async actor that keeps up to
    concurrency x endpoints requests out at once (Ray Data runs that many calls of this
    async UDF concurrently), each prompt sent as soon as it is prepared, like the
    local runner's in-flight bound. One connection pool per actor, on Ray's loop."""

    def __init__(self, config: RunConfig, has_schema: bool) -> None:
        from sovtp.backends.base import Sampling
        from sovtp.pipeline import _make_backend

        self.config = config
        self.has_schema = has_schema
        self.backend = _make_backend(config)
        self.sampling = Sampling(temperature=config.temperature, max_tokens=config.max_tokens, seed=config.seed)
        self.mode = None
        self._lock: asyncio.Lock | None = None

    async def _ready(self):
        from sovtp.backends.base import choose_mode

        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self.mode is None:
                check = getattr(self.backend, "check", None)
                if check is not None:
                    await check()  # also learns the server kind, which decides the decoding mode
                self.mode = choose_mode(self.config.structured, self.backend.capabilities, self.has_schema)
        return self.mode

    async def __call__(self, batch: dict[str, np.ndarray]):
        mode = await self._ready()
        yield await _answer_rows(self.backend, mode, self.sampling, self.config, batch)


def _objects(values: list[Any]) -> np.ndarray:
    arr = np.empty(len(values), dtype=object)
    arr[:] = values
    return arr


# --------------------------------------------------------------------------- the driver


def _answer_resources(config: RunConfig, cluster: dict[str, float]) -> dict[str, float]:
    """A local model gets a GPU where the cluster has one (else one CPU); an HTTP
    backend only waits on the network (and encodes images), so it reserves no CPU and
    every core is left to extraction."""
    if config.backend in _LOCAL_MODEL_BACKENDS:
        return {"num_gpus": 1} if cluster.get("GPU", 0) >= 1 else {"num_cpus": 1}
    return {"num_cpus": 0}


def build_dataset(
    items: Sequence[InputItem],
    config: RunConfig,
    finished: frozenset[tuple[str, str]],
    moved: frozenset[str],
    has_schema: bool,
    workers: int | None = None,
    answer_actors: int = 1,
    batch_size: int | None = None,
    finished_real: frozenset[tuple[str, str]] = frozenset(),
):
    """The Ray Data pipeline for ``items`` (lazy: nothing runs until it is iterated)."""
    ray = require_ray()
    cluster = ray.cluster_resources()
    cpus = int(cluster.get("CPU", 1))
    answer_res = _answer_resources(config, cluster)
    # CPU left for extraction once the answering actors have theirs
    room = max(1, cpus - int(answer_res.get("num_cpus", 0)) * answer_actors)
    n_prep = max(1, min(workers or room, room, len(items) or 1))
    capacity = max(1, config.concurrency) * _endpoint_count(config)
    rows = [{"item": pickle.dumps(it, protocol=pickle.HIGHEST_PROTOCOL)} for it in items]
    # one input per block: a prepared prompt moves on the moment it is ready, instead of
    # waiting for the rest of its block (the per-block overhead is small beside a clip)
    ds = ray.data.from_items(rows, override_num_blocks=max(1, len(rows)))
    pool = ray.data.ActorPoolStrategy
    ds = ds.map_batches(
        PrepareActor,
        fn_constructor_kwargs={"config": config, "finished": finished, "moved": moved, "finished_real": finished_real},
        batch_size=1,
        batch_format="numpy",
        compute=pool(size=n_prep),
        num_cpus=1,
    )
    kwargs = {"config": config, "has_schema": has_schema}
    if config.backend in _LOCAL_MODEL_BACKENDS:
        bs = batch_size or config.batch_size or _preferred_batch(config)
        ds = ds.map_batches(
            AnswerActor, fn_constructor_kwargs=kwargs, batch_size=bs, batch_format="numpy", compute=pool(size=answer_actors), **answer_res
        )
    else:
        compute = pool(size=answer_actors, max_concurrent_calls_per_actor=capacity)
        bs = batch_size or config.batch_size or 1
        ds = ds.map_batches(
            HttpAnswerActor, fn_constructor_kwargs=kwargs, batch_size=bs, batch_format="numpy", compute=compute, **answer_res
        )
    return ds


def _preferred_batch(config: RunConfig) -> int:
    """The local runner's batch size for a local model (transformers: its batch_size
    option, default 4; the vLLM engine schedules its own) capped by the in-flight bound."""
    if config.backend == "transformers":
        return max(1, min(int(config.backend_options.get("batch_size", 4)), config.concurrency))
    return max(1, config.concurrency)


def _endpoint_count(config: RunConfig) -> int:
    urls = config.backend_options.get("base_url")
    return len(urls) if isinstance(urls, (list, tuple)) and config.backend == "openai" else 1


def run_ray(
    items: Sequence[InputItem],
    config: RunConfig,
    out: Path | str,
    address: str | None = None,
    progress: bool | Callable[[Result], None] = False,
    answer_actors: int = 1,
) -> RunSummary:
    """Label ``items`` on Ray Data and append one record each to ``out`` (resumable,
    interchangeable with :func:`sovtp.pipeline.run_items`). Joins ``address`` or starts
    a local Ray instance with ``config.workers`` CPUs (default: all), and shuts down
    only a Ray it started itself."""
    from sovtp.pipeline import Preparer, _make_backend, _manifest, without_unavailable
    from sovtp.results import ResultsWriter, write_json_atomic

    require_ray()
    out = Path(out)
    started = time.time()
    preparer = Preparer(config)  # driver side: template and extractor identities for checks and the manifest
    preparer.check()
    config = without_unavailable(config, preparer)  # keys as the local runner makes them
    preparer.config = config
    if config.backend not in _LOCAL_MODEL_BACKENDS:
        served = asyncio.run(_check_backend(_make_backend(config)))  # a dead server fails here, before Ray starts
        if not config.model and served:
            config = replace(config, model=served)  # keys and records name the served model, as the local runner's do
            preparer = Preparer(config)
    writer = ResultsWriter(out)  # before Ray starts: a results file in use stops here, with no Ray left behind
    try:
        own_ray = start_ray(address, num_cpus=config.workers)
    except BaseException:
        writer.close()
        raise
    summary = RunSummary(out=out, total=len(items))
    bar, tick = _progress(progress, len(items))
    failed = True  # until the rows are all in: the bar then keeps its last state
    try:
        ds = build_dataset(
            items,
            config,
            frozenset(writer.finished),
            writer.moved_keys,
            preparer.template.answer == "stages",
            workers=config.workers,
            answer_actors=answer_actors,
            finished_real=writer.finished_real,
        )
        for row in ds.iter_rows():
            stats = json.loads(row["stats"] or "{}")
            for name, n in stats.get("runs", {}).items():
                preparer.extractor_runs[name] = preparer.extractor_runs.get(name, 0) + n
            if preparer.cue_cache is not None:
                preparer.cue_cache.hits += stats.get("hits", 0)
                preparer.cue_cache.misses += stats.get("misses", 0)
            if not row["result"]:
                if stats.get("moved"):
                    writer.follow(*stats["moved"])
                summary.skipped += 1
                if bar is not None:
                    bar.advance()
                continue
            r = Result.model_validate_json(row["result"])
            writer.append(r)
            summary.count(r)
            if tick is not None:
                tick(r)
    except KeyboardInterrupt:
        summary.interrupted = True
        raise
    except Exception as exc:
        if isinstance(exc, UserError):
            raise
        cause = _user_cause(exc)
        if cause is not None:
            raise cause from None
        raise
    else:
        failed = False
    finally:
        if bar is not None:
            bar.close(failed=failed)
        writer.close()
        summary.seconds = time.time() - started
        summary.extractor_runs = dict(preparer.extractor_runs)
        if preparer.cue_cache is not None:
            summary.cue_cache_hits, summary.cue_cache_misses = preparer.cue_cache.hits, preparer.cue_cache.misses
        manifest = _manifest(config, preparer, summary, started)
        manifest["runner"] = {"name": "ray", "address": address or "local"}
        manifest_path = out.with_name(out.stem + ".manifest.json")
        if not failed or writer.written or not manifest_path.exists():  # as the local runner
            write_json_atomic(manifest_path, manifest)
        if own_ray:
            import ray

            ray.shutdown()
    return summary


async def _check_backend(backend) -> str | None:
    """Check the server and return the model it serves (what the local runner records
    when --model is left out, so both runners key their records alike)."""
    try:
        check = getattr(backend, "check", None)
        if check is not None:
            await check()
        return getattr(backend, "model", None)
    finally:
        await backend.aclose()


def _user_cause(exc: BaseException) -> UserError | None:
    """A UserError raised inside an actor (e.g. a dead server in its check) reaches the
    driver wrapped in Ray's exceptions; unwrap it so the user reads one sentence."""
    seen: set[int] = set()
    stack: list[BaseException | None] = [exc]
    while stack:
        e = stack.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, UserError):
            return UserError(str(e))
        stack.extend([getattr(e, "cause", None), e.__cause__, e.__context__])
    return None


def _progress(progress: bool | Callable[[Result], None], total: int) -> tuple[RunBar | None, Callable[[Result], None] | None]:
    if progress is True:
        from sovtp.progress import RunBar

        bar = RunBar(total, title="sovtp (ray)")
        return bar, bar.tick
    return None, (progress or None)
