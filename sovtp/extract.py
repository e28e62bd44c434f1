"""Cue extraction: the extractor plugin interface, its entry-point registry, and the
runner that orders extractors by what they need, caches each one's output and records
the ones that could not run.

Third-party packages add extractors without touching sovtp by declaring, in their
own ``pyproject.toml``::

    [project.entry-points."sovtp.extractors"]
    my_cue = "my_package.module:MyExtractor"

Listing plugins (``sovtp extractors``) reads entry-point metadata only; a plugin's
module (and its heavy imports) loads only when the plugin is used.
"""

from __future__ import annotations

import functools
import inspect
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any, ClassVar, Protocol, runtime_checkable

from sovtp.cache import JsonCache, stable_key
from sovtp.cpus import available_cpus
from sovtp.types import Clip, Cues, FaceObservation
from sovtp.video import FrameFeed

ENTRY_POINT_GROUP = "sovtp.extractors"


class ExtractorUnavailable(RuntimeError):
    """Raised by an extractor that cannot run here (missing package or weights).
    The message is one sentence naming the fix; the run continues without this cue."""


class ExtractorSkippedWarning(UserWarning):
    """Issued once before a run when an extractor's ``preflight`` finds that it cannot run
    here: the run goes on without its cues (each record lists it under ``cues_skipped``),
    and the CLI prints the sentence in yellow instead of leaving it to the records."""


@runtime_checkable
class Extractor(Protocol):
    """A cue extractor plugin.

    ``provides`` / ``requires`` are cue kinds ("faces", "landmarks", "aus", "pose",
    "scene", "expressions"); the runner runs providers before the extractors that
    require them. ``params`` must hold every setting that changes the output: it is part
    of the cache key together with ``version`` and the clip's content hash.
    ``extract`` returns a partial :class:`Cues` holding only what this extractor adds.
    It is handed the cues of the extractors it builds on (the providers of what it
    requires, transitively) and may read, never mutate, them; extractors that do not
    build on each other may run at the same time in different threads, so an instance
    must not share mutable state with another extractor.

    An extractor may also declare ``uses``: kinds it reads when they were found but does
    without (the scene measures whole frames, and per person when there are faces). It
    runs after their providers and is keyed on them, and is not skipped when they are
    empty.

    An extractor may also define ``preflight()``, called once before a run starts: one
    that needs a package or a model file loads it there, and its ``ExtractorUnavailable``
    is said once (:class:`ExtractorSkippedWarning`) instead of only in every record. And
    ``file_params``: names of parameters that are model files; run keys hold those files'
    content instead of their paths.
    """

    name: ClassVar[str]
    version: ClassVar[str]
    provides: ClassVar[tuple[str, ...]]
    requires: ClassVar[tuple[str, ...]]

    @property
    def params(self) -> Mapping[str, Any]: ...

    def extract(self, clip: Clip, cues: Cues) -> Cues: ...


@dataclass(frozen=True)
class PluginInfo:
    """What ``sovtp extractors`` shows, read from entry-point metadata alone."""

    name: str
    target: str  # "module:attr"
    distribution: str | None


def installed_plugins() -> list[PluginInfo]:
    """The installed extractor plugins, without importing any of them."""
    found: dict[str, PluginInfo] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        dist = getattr(ep, "dist", None)
        found.setdefault(ep.name, PluginInfo(ep.name, ep.value, dist.name if dist is not None else None))
    return sorted(found.values(), key=lambda p: p.name)


def load_extractor(name: str, **params: Any) -> Extractor:
    """Import and instantiate the plugin registered under ``name``."""
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name == name:
            factory = ep.load()
            return factory(**params)
    known = ", ".join(p.name for p in installed_plugins()) or "none"
    raise KeyError(f"no extractor named {name!r} is installed (installed: {known}); check the name or install its package")


@functools.lru_cache(maxsize=64)
def extractor_class(name: str) -> Any | None:
    """The class (or factory) registered under ``name``, without making an instance;
    None when no plugin has that name."""
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name == name:
            return ep.load()
    return None


def _uses(ext: Extractor) -> tuple[str, ...]:
    """The kinds ``ext`` reads when present (see :class:`Extractor`); none by default."""
    return tuple(getattr(ext, "uses", ()))


def order_extractors(extractors: Sequence[Extractor]) -> list[Extractor]:
    """Topological order by provides/requires; a requirement nobody provides is left for
    the extractor itself to report (it will be skipped with its reason)."""
    remaining = list(extractors)
    provided: set[str] = set()
    ordered: list[Extractor] = []
    all_provided = {kind for e in extractors for kind in e.provides}
    while remaining:
        progress = False
        for ext in list(remaining):
            needs = [r for r in (*ext.requires, *_uses(ext)) if r in all_provided]
            if all(r in provided for r in needs):
                ordered.append(ext)
                provided.update(ext.provides)
                remaining.remove(ext)
                progress = True
        if not progress:
            names = ", ".join(e.name for e in remaining)
            raise ValueError(f"extractors {names} require each other in a cycle; remove one of them")
    return ordered


@dataclass
class ExtractionReport:
    cues: Cues
    seconds: dict[str, float]  # extractor name -> seconds spent (0 on a cache hit)
    cache_hits: list[str]


def _why_missing(name: str, kind: str, upstream: Sequence[Extractor], cues: Cues) -> str:
    """Why ``name`` cannot run for want of ``kind``: the root cause, said once down the
    chain (no face found -> no mesh -> no AUs), not "no extractor provided" for an
    extractor that ran and found nothing."""
    providers = [e.name for e in upstream if kind in e.provides]
    reason = next((cues.skipped[p] for p in providers if p in cues.skipped), None)
    if reason is not None:
        return reason
    if any(p in cues.ran for p in providers):
        return (
            "no face was found in any sampled frame" if kind == "faces" else f"{name} needs {kind} cues, and none were found in this clip"
        )
    return f"{name} needs {kind} cues, which no extractor provided for this clip"


def run_extractors(
    clip: Clip,
    extractors: Iterable[Extractor],
    cache: JsonCache | None = None,
    sampling_key: Any = None,
    threads: int | None = None,
) -> ExtractionReport:
    """Run ``extractors`` on ``clip`` in dependency order, independent branches side by
    side in up to ``threads`` threads (None: one per CPU; 1: one after another).

    Why branches in threads: after the faces, the mesh (then AUs, then expressions), the
    body pose and the scene measurements need nothing from each other, and mediapipe
    releases the GIL while its graphs run, so on two cores the pose runs beside the mesh
    (single_face.mp4 here: mesh 137 ms + pose 422 ms one after the other, 435 ms side by
    side). The result does not depend on the threads: each extractor is handed exactly
    the cues of the extractors it builds on (what it ``requires``, transitively), and the
    patches are merged in dependency order, as one after another.

    Why the pose starts before the faces are done: on a clip decoded in the background
    the face detector waits for frames (a 20-s clip's 16 samples need ~370 packets
    decoded), and the pose, the costliest cue, can fill that wait. The face extractor
    publishes each frame's tracked faces on a :class:`FaceFeed` and the pose's
    ``prefetch`` runs on them meanwhile (WolfgangLanger_Pexels.mp4 here: 775 ms for the
    whole stack without it, 548 ms with it, the models alone summing to ~660 ms).

    Each output is cached under the clip's content hash, the sampling that chose the
    frames, the extractor's name/version/params and the keys of everything it builds on,
    so changing an upstream extractor invalidates downstream cues but nothing else.
    """
    ordered = order_extractors(list(extractors))
    # Extractors each one builds on: the providers of what it requires, transitively.
    builds_on: list[list[int]] = []
    for i, ext in enumerate(ordered):
        # Landmarks live inside Cues.faces: whoever provides faces before a landmarks
        # reader may replace them, as it did one after another.
        reads = {*ext.requires, *_uses(ext)}
        needs = reads | ({"faces"} if "landmarks" in reads else set())
        direct = {j for j in range(i) if set(ordered[j].provides) & needs}
        builds_on.append(sorted(direct.union(*(builds_on[j] for j in direct))))
    patches: dict[int, Cues] = {}
    keys: dict[int, str] = {}
    seconds: dict[str, float] = {}
    hits: list[str] = []
    threads = available_cpus() if threads is None else max(1, int(threads))
    branches = any(j not in builds_on[i] for i in range(len(ordered)) for j in range(i))
    early = any(_publishes_faces(e) for e in ordered) and any(_prefetches(e) for e in ordered)
    pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="sovtp-extract") if threads > 1 and (branches or early) else None
    prefetching: dict[int, Future[None]] = {}

    def key_for(i: int, upstream_keys: Mapping[int, str]) -> str:
        ext = ordered[i]
        # Every provider of a kind: with two AU providers (geometric, then a learned one
        # laid over it per face) the expressions read both, so both key them.
        keys_by_kind: dict[str, list[str]] = {}
        for j in builds_on[i]:
            # A provider still running counts as one that will run: only the early pose's
            # cache probe asks then, and a provider that is skipped ends the pose anyway.
            if j not in patches or ordered[j].name in patches[j].ran:
                for kind in ordered[j].provides:
                    keys_by_kind.setdefault(kind, []).append(upstream_keys[j])
        upstream = sorted(key for k in (*ext.requires, *_uses(ext)) for key in keys_by_kind.get(k, ()))
        return stable_key("cues", clip.content_hash, sampling_key, ext.name, ext.version, dict(ext.params), upstream)

    def start_prefetch(i: int, key: str) -> FaceFeed | None:
        """A face feed for the extractors that build on extractor ``i``'s faces alone and
        can start on them early, when it will run (no cache hit) and threads are free."""
        if pool is None or not _publishes_faces(ordered[i]):
            return None
        takers = [
            c
            for c in range(i + 1, len(ordered))
            if builds_on[c] == [i] and _prefetches(ordered[c]) and (cache is None or not cache.contains(key_for(c, {i: key})))
        ]
        if not takers:
            return None
        feed = FaceFeed()
        for c in takers:
            prefetching[c] = pool.submit(_prefetch, ordered[c], clip, feed)
        return feed

    def run_one(i: int) -> None:
        ext = ordered[i]
        cues = Cues()
        for j in builds_on[i]:
            cues = cues.merged(patches[j])
        key = key_for(i, keys)
        t0 = time.perf_counter()
        stored = cache.get(key) if cache is not None else None
        if stored is not None:
            patch = Cues.model_validate(stored)
            hits.append(ext.name)
        else:
            missing = [r for r in ext.requires if r not in _kinds_present(cues)]
            if missing:
                patch = Cues(skipped={ext.name: _why_missing(ext.name, missing[0], [ordered[j] for j in builds_on[i]], cues)})
            else:
                if i in prefetching:
                    prefetching[i].result()  # its early start on the faces is over; extract reuses it
                feed = start_prefetch(i, key)
                try:
                    patch = ext.extract(clip, cues) if feed is None else ext.extract(clip, cues, feed=feed)  # type: ignore[call-arg]
                    patch = patch.model_copy(update={"ran": {**patch.ran, ext.name: ext.version}})
                except ExtractorUnavailable as exc:
                    patch = Cues(skipped={ext.name: str(exc)})
                finally:
                    if feed is not None:
                        feed.close()
            if cache is not None and ext.name not in patch.skipped:
                _wait_for_frames(clip)
                cache.put(key, patch.model_dump(mode="json"))
        seconds[ext.name] = time.perf_counter() - t0
        keys[i], patches[i] = key, patch

    if pool is None:
        for i in range(len(ordered)):
            run_one(i)
    else:
        with pool:
            _run_branches(pool, run_one, builds_on)
    cues = Cues()
    for i in range(len(ordered)):
        cues = cues.merged(patches[i])
    names = [ext.name for ext in ordered]
    return ExtractionReport(cues=cues, seconds={n: seconds[n] for n in names}, cache_hits=sorted(hits, key=names.index))


def _publishes_faces(extractor: Any) -> bool:
    """Declares ``face_feed`` and its ``extract`` takes the feed (a subclass that overrides
    ``extract(clip, cues)`` is simply not fed)."""
    if not getattr(extractor, "face_feed", False):
        return False
    try:
        return "feed" in inspect.signature(extractor.extract).parameters
    except (TypeError, ValueError):
        return False


def _prefetches(extractor: Any) -> bool:
    return callable(getattr(extractor, "prefetch", None))


def _prefetch(extractor: Any, clip: Clip, feed: FaceFeed) -> None:
    """An extractor's early start on the faces. Best effort: whatever goes wrong here is
    met again, and reported, by its ``extract``, which computes anything not prefetched."""
    try:
        extractor.prefetch(clip, feed)
    except Exception:  # noqa: BLE001
        pass


def _run_branches(pool: ThreadPoolExecutor, run_one: Callable[[int], None], builds_on: list[list[int]]) -> None:
    """Call ``run_one(i)`` for every extractor, each once all it builds on has finished,
    in dependency order where more than one is ready. An error stops new starts and lets
    the running ones finish; then the error of the first failed extractor in the run's
    order is raised, so two branches failing at once report the same error every time
    (a :class:`~sovtp.video.FramesChanged` reaches every branch reading the frames anyway)."""
    started: set[int] = set()
    finished: set[int] = set()
    running: dict[Future[None], int] = {}
    errors: dict[int, BaseException] = {}
    while len(finished) < len(builds_on):
        if not errors:
            for i, needs in enumerate(builds_on):
                if i not in started and finished.issuperset(needs):
                    started.add(i)
                    running[pool.submit(run_one, i)] = i
        if not running:
            break  # an error stopped what had not started
        done, _ = wait(running, return_when=FIRST_COMPLETED)
        for future in done:
            i = running.pop(future)
            finished.add(i)
            error = None if future.cancelled() else future.exception()
            if error is not None:
                errors[i] = error
                for queued in running:
                    queued.cancel()  # not started yet: an error stops new starts
    if errors:
        raise errors[min(errors)]


class FaceFeed:
    """A clip's faces frame by frame while the face extractor is still finding them.

    Why: on a long clip decoded in the background the face detector waits for frames,
    and what follows each person (the pose graphs, 27 ms per person and frame) could run
    meanwhile. An extractor with ``face_feed = True`` accepts ``extract(clip, cues,
    feed=...)`` and publishes, per sampled frame in order, ``(track key, observation)``
    for each face (the key names the track the face continues; final IDs come later).
    An extractor that builds on those faces alone may define ``prefetch(clip, feed)``:
    the runner calls it in a branch thread as the faces arrive, and its ``extract`` (run
    after, as always) must return exactly what it would have without the prefetch.
    Iterating the feed yields ``(position, [(key, observation), ...])`` as published and
    ends when the face extractor does; :attr:`complete` says whether it ended normally.
    """

    def __init__(self) -> None:
        self._items: list[tuple[int, list[tuple[int, FaceObservation]]]] = []
        self._closed = False
        self._complete = False
        self._ready = threading.Condition()

    def publish(self, position: int, observations: Sequence[tuple[int, FaceObservation]]) -> None:
        with self._ready:
            self._items.append((position, list(observations)))
            self._ready.notify_all()

    def finish(self) -> None:
        """The face extractor has published every frame."""
        with self._ready:
            self._complete = not self._closed
            self._closed = True
            self._ready.notify_all()

    def close(self) -> None:
        """No more frames, complete or not (the runner's, after the extractor returns or raises)."""
        with self._ready:
            self._closed = True
            self._ready.notify_all()

    @property
    def complete(self) -> bool:
        with self._ready:
            return self._complete

    def __iter__(self) -> Iterator[tuple[int, list[tuple[int, FaceObservation]]]]:
        i = 0
        while True:
            with self._ready:
                self._ready.wait_for(lambda i=i: len(self._items) > i or self._closed)
                if len(self._items) <= i:
                    return
                item = self._items[i]
            yield item
            i += 1


def _wait_for_frames(clip: Clip) -> None:
    """Wait until a clip still decoding in the background has its final frames: the decode
    may yet fall back to other frames (:class:`~sovtp.video.FramesChanged`, raised here),
    and a cue computed from frames it voids must never be cached. Next to free once the
    extractor has read every frame (the decode is then all but done)."""
    if isinstance(clip.frames, FrameFeed):
        clip.frames.wait()


def _kinds_present(cues: Cues) -> set[str]:
    kinds: set[str] = set()
    if cues.faces:
        kinds.add("faces")
        if any(o.landmarks for f in cues.faces for o in f.observations):
            kinds.add("landmarks")
    if cues.aus:
        kinds.add("aus")
    if cues.poses:
        kinds.add("pose")
    if cues.scene is not None:
        kinds.add("scene")
    if cues.expressions:
        kinds.add("expressions")
    return kinds
