"""The ``sovtp`` command: a thin Typer layer over :mod:`sovtp.api`.

Kept light on purpose: importing this module (``sovtp --help``) loads no torch,
mediapipe or vllm; each command imports what it needs when it runs. Tracebacks never
show local variables, since those can hold API keys.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape

app = typer.Typer(
    name="sovtp",
    help="Zero-shot emotion recognition in videos with vision LLMs (Set-of-Vision-Text Prompting).",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    add_completion=False,
)
err = Console(stderr=True)
out = Console()

BACKENDS = ("transformers", "openai", "vllm")


# --------------------------------------------------------------------------- shared options

InputsArg = Annotated[list[Path], typer.Argument(help="Video/image files or folders (searched recursively).", show_default=False)]
TemplateOpt = Annotated[
    str, typer.Option("--template", "-t", help="Built-in template (sovtp, sov, direct, text_cues) or a path to a .j2 file.")
]
TemplateDirOpt = Annotated[
    Optional[Path],
    typer.Option(
        "--template-dir",
        envvar="SOVTP_TEMPLATES",
        help="Folder of your own .j2 templates: --template NAME looks there first (before the built-ins).",
    ),
]
VisualOpt = Annotated[
    Optional[str],
    typer.Option(
        "--visual",
        help="Visual prompt mode (none, box, numbered, landmarks, sovtp, red_circle, blur_reverse, gray_reverse, crop, som); default: the template's.",
    ),
]
LayoutOpt = Annotated[
    Optional[str], typer.Option("--layout", help="frames (one image per sampled frame) or grid (one tiled image); default: the template's.")
]
FramesOpt = Annotated[int, typer.Option("--frames", "-n", min=1, help="Frames sampled per video.")]
SamplingOpt = Annotated[str, typer.Option("--sampling", help="uniform, or au-peak (frames of highest target AU activation).")]
TargetOpt = Annotated[str, typer.Option("--target", help="Target face: largest, center, or a face ID.")]
LabelsOpt = Annotated[
    Optional[str],
    typer.Option("--labels", help="dfew (default), mafw, ferv39k, a comma-separated list, or a file with one label per line."),
]
CuesOpt = Annotated[
    Optional[str],
    typer.Option(
        "--cues",
        help="Text cues given to the template: all (default), none, or a '+'-joined subset of faces, landmarks, aus, pose, scene, expressions (e.g. aus+pose).",
    ),
]
ExtractorsOpt = Annotated[
    Optional[str],
    typer.Option("--extractors", help="Comma-separated extractor plugins to run (default: faces,landmarks,aus,pose,scene,expressions)."),
]
PoseWeightsOpt = Annotated[
    Optional[Path],
    typer.Option(
        "--pose-weights",
        exists=True,
        dir_okay=False,
        help="Ultralytics YOLO-pose weights (.pt): multi-person pose in one pass instead of mediapipe (ultralytics is AGPL-3.0).",
    ),
]
FaceLandmarkerOpt = Annotated[
    Optional[Path],
    typer.Option(
        "--face-landmarker",
        exists=True,
        dir_okay=False,
        help="A local copy of MediaPipe's face_landmarker.task (Apache-2.0; download it once from storage.googleapis.com/mediapipe-models/face_landmarker/face_landmarker/float16/1/face_landmarker.task): AUs from its learned blendshape model instead of the geometric estimates.",
    ),
]
PrivacyOpt = Annotated[
    str, typer.Option("--privacy", help="none, blur-others or blur-all: de-identify faces in every image before it leaves the machine.")
]
CacheOpt = Annotated[
    Optional[Path], typer.Option("--cache-dir", help="Cue and response cache folder (default ~/.cache/sovtp or $SOVTP_CACHE_DIR).")
]
NoCacheOpt = Annotated[bool, typer.Option("--no-cache", help="Use no cue or response cache.")]
MaxSideOpt = Annotated[int, typer.Option("--max-side", help="Downscale decoded frames whose longer side exceeds this.")]
FrameFoldersOpt = Annotated[
    bool,
    typer.Option(
        "--frame-folders",
        help="Read every folder that holds images as one clip of those frames, in natural name order (FERV39k, DFEW/MAFW face crops), instead of one item per image.",
    ),
]
FrameRateOpt = Annotated[
    Optional[float],
    typer.Option(
        "--frame-rate",
        min=0.001,
        help="Frames per second of frame folders, to give their frames times (default: none; frames are named by number).",
    ),
]


def _parse_cues(cues: str | None) -> frozenset[str] | None:
    from sovtp.cuetext import parse_cue_selection

    try:
        return parse_cue_selection(cues)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


def with_blendshapes(names: tuple[str, ...]) -> tuple[str, ...]:
    """The extractors of a run given --face-landmarker: ``blendshapes`` in place of the
    geometric ``aus``, or after the rest when there is none; a list that names
    ``blendshapes`` itself keeps the user's order (e.g. after ``aus``, to lay its values
    over the geometric ones per face)."""
    if "blendshapes" in names:
        return names
    names = tuple("blendshapes" if n == "aus" else n for n in names)
    return names if "blendshapes" in names else (*names, "blendshapes")


@contextmanager
def say_skipped_extractors():
    """Print each extractor that cannot run here (:class:`ExtractorSkippedWarning`, found
    before the run starts) once, as a yellow line, instead of a Python warning."""
    import warnings

    from sovtp.extract import ExtractorSkippedWarning

    said: set[str] = set()
    shown = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):
        if not issubclass(category, ExtractorSkippedWarning):
            return shown(message, category, filename, lineno, file, line)
        if str(message) not in said:
            said.add(str(message))
            # Through sys.stderr, which a live progress bar (run's, ablate's) redirects to
            # print above itself; a console of our own would write into the bar's line.
            import io
            import sys

            from rich.console import Console

            line = Console(file=io.StringIO(), force_terminal=err.is_terminal, color_system=err.color_system, width=err.width)
            line.print(f"[yellow]Warning:[/] {escape(str(message))}", soft_wrap=True)
            sys.stderr.write(line.file.getvalue())
            sys.stderr.flush()

    with warnings.catch_warnings():
        warnings.simplefilter("always", ExtractorSkippedWarning)
        warnings.showwarning = show
        yield


def _config(**kw):
    from sovtp.labels import load_label_set
    from sovtp.pipeline import DEFAULT_EXTRACTORS, RunConfig

    labels_spec = kw.pop("labels")
    try:
        labels = load_label_set(labels_spec)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    extractors = kw.pop("extractors")
    names = tuple(e.strip() for e in extractors.split(",") if e.strip()) if extractors else DEFAULT_EXTRACTORS
    pose_weights = kw.pop("pose_weights", None)
    params: dict = {}
    if pose_weights is not None:
        names = tuple("yolo_pose" if n == "pose" else n for n in names)
        if "yolo_pose" not in names:
            names += ("yolo_pose",)
        params["yolo_pose"] = {"weights": str(pose_weights)}
    face_landmarker = kw.pop("face_landmarker", None)
    if face_landmarker is not None:
        names = with_blendshapes(names)
        params["blendshapes"] = {"model": str(Path(face_landmarker).expanduser().resolve())}
    no_cache = kw.pop("no_cache")
    cache_dir = kw.pop("cache_dir")
    include = _parse_cues(kw.pop("cues"))
    extra = {}
    if cache_dir is not None or no_cache:
        extra["cache_dir"] = None if no_cache else cache_dir
    return RunConfig(labels=labels, extractors=names, extractor_params=params, include_cues=include, **extra, **kw)


def _use_template_dir(folder: Path | None) -> None:
    """Template lookup reads $SOVTP_TEMPLATES (worker processes inherit it)."""
    if folder is None:
        return
    if not folder.is_dir():
        raise typer.BadParameter(f"--template-dir {folder} is not a folder; give the folder that holds your .j2 templates")
    os.environ["SOVTP_TEMPLATES"] = str(folder.resolve())


def _engine_args(pairs: list[str]) -> dict:
    import json

    parsed: dict = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise typer.BadParameter(f"--engine-arg {pair!r} is not KEY=VALUE (e.g. max_model_len=4096)")
        try:
            parsed[key.strip()] = json.loads(value)
        except ValueError:
            parsed[key.strip()] = value
    return parsed


def _warn_network(base_url: str | None, privacy: str) -> None:
    """One notice when faces would leave the machine unblurred, one warning for plain HTTP."""
    from urllib.parse import urlparse

    from sovtp.net import is_loopback_host, redact_url

    url = base_url or os.environ.get("OPENAI_BASE_URL") or "https://api.openai.com/v1"
    parsed = urlparse(url)
    host = (parsed.hostname or "").lower()
    local = is_loopback_host(host)
    url = redact_url(url)  # never echo user:password@ or a key in the query
    if not local and parsed.scheme == "http":
        err.print(
            f"[yellow]Warning:[/] {escape(str(url))} is plain HTTP to a host that is not this machine: prompts, images and the API key travel unencrypted. Use https."
        )
    if not local and privacy == "none":
        err.print(
            f"[yellow]Notice:[/] frames with faces will be sent to {escape(str(host))}; add --privacy blur-others or blur-all to de-identify them first."
        )


class Terminated(KeyboardInterrupt):
    """SIGTERM, taken the way Ctrl-C is."""


TERMINATED = threading.Event()


@contextlib.contextmanager
def stop_on_sigterm() -> Iterator[None]:
    """Slurm time limits, Kubernetes preemption and a plain `kill` send SIGTERM, the usual
    way a long job ends: inside this block it stops the run as Ctrl-C does (records whole,
    the manifest written, the results file rewritten if it needs to be, a sentence on how
    to resume), not mid-write with nothing said. The previous handler is put back after,
    so a program that calls the CLI in-process keeps its own."""
    import signal

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: object) -> None:
        TERMINATED.set()
        on_interrupt = signal.getsignal(signal.SIGINT)
        if callable(on_interrupt) and on_interrupt is not signal.default_int_handler:
            on_interrupt(signal.SIGINT, frame)  # asyncio.run's own: cancels the running task cleanly
        else:
            raise Terminated

    before = signal.signal(signal.SIGTERM, handler)
    TERMINATED.clear()
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, before)
        TERMINATED.clear()


def was_terminated(stop: BaseException) -> bool:
    """Whether a KeyboardInterrupt came from SIGTERM (asyncio turns it into its own)."""
    return isinstance(stop, Terminated) or TERMINATED.is_set()


def _exit_if_nothing_exists(inputs: list[Path]) -> None:
    """A mistyped path alone (`sovtp run medai`) stops with one sentence and exit code 2,
    like an empty folder; among other inputs it is one error record, and the run goes on."""
    if inputs and not any(os.path.lexists(p) for p in inputs):
        shown = ", ".join(map(str, inputs[:3])) + (" ..." if len(inputs) > 3 else "")
        err.print(f"No such file or folder: {escape(shown)}; check the path.", soft_wrap=True)
        raise typer.Exit(2)


def _hint_frame_folders(items, frame_folders: bool) -> None:
    """Say so when the images found look like frames of clips (see frame_folder_hint)."""
    if frame_folders:
        return
    from sovtp.frame_folder import frame_folder_hint

    hint = frame_folder_hint(it.path for it in items)
    if hint:
        err.print(f"[yellow]Hint:[/] {escape(hint)}", soft_wrap=True)


@contextmanager
def _user_errors():
    """A run-level problem (dead server, broken template, bad setting) is one red
    sentence and exit code 1, never a traceback."""
    from sovtp.errors import UserError

    try:
        yield
    except (UserError, ValueError) as exc:
        err.print(f"[red]Error:[/] {escape(str(exc))}", soft_wrap=True)
        raise typer.Exit(1) from None


# --------------------------------------------------------------------------- commands


@app.command()
def run(
    inputs: InputsArg,
    out_path: Annotated[Path, typer.Option("--out", "-o", help="Results file (JSONL); rerunning with the same file resumes.")] = Path(
        "results.jsonl"
    ),
    backend: Annotated[
        str, typer.Option("--backend", "-b", help="transformers, openai (any OpenAI-compatible server) or vllm (local engine).")
    ] = "transformers",
    model: Annotated[Optional[str], typer.Option("--model", "-m", help="Model id or local checkpoint folder.")] = None,
    template: TemplateOpt = "sovtp",
    template_dir: TemplateDirOpt = None,
    visual: VisualOpt = None,
    layout: LayoutOpt = None,
    labels: LabelsOpt = None,
    cues: CuesOpt = None,
    frames: FramesOpt = 8,
    sampling: SamplingOpt = "uniform",
    target: TargetOpt = "largest",
    structured: Annotated[
        str, typer.Option("--structured", help="auto, json, choice, rank or off: how the backend is kept to the label set.")
    ] = "auto",
    per_face: Annotated[bool, typer.Option("--per-face", help="Ask for a label per face ID too (templates that ask for them).")] = False,
    privacy: PrivacyOpt = "none",
    extractors: ExtractorsOpt = None,
    pose_weights: PoseWeightsOpt = None,
    face_landmarker: FaceLandmarkerOpt = None,
    base_url: Annotated[
        Optional[list[str]],
        typer.Option(
            "--base-url",
            help="OpenAI-compatible server URL (default $OPENAI_BASE_URL); give it more than once to spread requests over several servers, with failover when one dies. The key is read from $OPENAI_API_KEY only.",
        ),
    ] = None,
    concurrency: Annotated[
        int, typer.Option("--concurrency", "-c", min=1, help="Requests in flight at once (per --base-url endpoint).")
    ] = 8,
    workers: Annotated[
        Optional[int],
        typer.Option(
            "--workers",
            "-w",
            min=1,
            help="Processes decoding and extracting cues ahead while the model answers (default: one per two CPUs, as each keeps about two busy; 1: no extra process).",
        ),
    ] = None,
    runner: Annotated[
        str, typer.Option("--runner", help="local (this machine) or ray (Ray Data; needs pip install 'sovtp\\[ray]').")
    ] = "local",
    address: Annotated[
        Optional[str],
        typer.Option(
            "--address",
            help="Ray cluster to join with --runner ray (e.g. auto, host:6379 or ray://host:10001); default: a local Ray instance.",
        ),
    ] = None,
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds per request.")] = 120.0,
    max_retries: Annotated[int, typer.Option("--max-retries", help="Retries per request on 429/5xx/timeouts.")] = 5,
    temperature: Annotated[float, typer.Option("--temperature")] = 0.0,
    max_tokens: Annotated[int, typer.Option("--max-tokens")] = 512,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    image_max_side: Annotated[
        Optional[int], typer.Option("--image-max-side", help="Resize images sent to the model to this longer side.")
    ] = None,
    detail: Annotated[Optional[str], typer.Option("--detail", help="OpenAI image detail: low, high or auto.")] = None,
    device: Annotated[
        Optional[str], typer.Option("--device", help="transformers device (default: CUDA if present, else CPU); vLLM chooses its own.")
    ] = None,
    dtype: Annotated[Optional[str], typer.Option("--dtype", help="transformers/vllm dtype (auto, float16, bfloat16, float32).")] = None,
    vllm_python: Annotated[
        Optional[str],
        typer.Option(
            "--vllm-python",
            envvar="SOVTP_VLLM_PYTHON",
            help="With --backend vllm: the python of an environment that has vLLM, when it is not this one (vLLM and mediapipe need different protobuf).",
        ),
    ] = None,
    engine_arg: Annotated[
        Optional[list[str]],
        typer.Option("--engine-arg", help="Extra vLLM engine argument KEY=VALUE (VALUE parsed as JSON when it can be); repeatable."),
    ] = None,
    cache_dir: CacheOpt = None,
    no_cache: NoCacheOpt = False,
    max_side: MaxSideOpt = 1280,
    frame_folders: FrameFoldersOpt = False,
    frame_rate: FrameRateOpt = None,
) -> None:
    """Label every video/image in INPUTS with an emotion and write one JSONL record each."""
    from sovtp.api import run as api_run
    from sovtp.inputs import discover

    _use_template_dir(template_dir)
    if backend not in BACKENDS:
        raise typer.BadParameter(f"--backend {backend!r} is not one of {', '.join(BACKENDS)}")
    if backend != "openai" and not model:
        raise typer.BadParameter("--model is required (a model id or a local checkpoint folder)")
    options: dict = {"timeout": timeout, "max_retries": max_retries}
    if runner not in ("local", "ray"):
        raise typer.BadParameter(f"--runner {runner!r} is not one of local, ray")
    if address and runner != "ray":
        raise typer.BadParameter("--address joins a Ray cluster; add --runner ray")
    if backend == "openai":
        for url in base_url or [None]:
            _warn_network(url, privacy)
        if base_url:
            options["base_url"] = base_url[0] if len(base_url) == 1 else list(base_url)
        if detail:
            options["detail"] = detail
    if device:
        options["device"] = device
    if dtype:
        options["dtype"] = dtype
    if backend == "vllm":
        if vllm_python:
            options["vllm_python"] = vllm_python
        if engine_arg:
            options["engine_kwargs"] = _engine_args(engine_arg)
    config = _config(
        backend=backend, model=model, template=template, visual=visual, layout=layout, labels=labels, cues=cues, num_frames=frames, sampling=sampling,
        target=target, structured=structured, per_face=per_face, privacy=privacy, extractors=extractors, pose_weights=pose_weights, face_landmarker=face_landmarker, concurrency=concurrency, workers=workers, temperature=temperature,
        max_tokens=max_tokens, seed=seed, image_max_side=image_max_side, cache_dir=cache_dir, no_cache=no_cache, max_side=max_side, backend_options=options,
        frame_folders=frame_folders, frame_rate=frame_rate,
    )  # fmt: skip
    _exit_if_nothing_exists(inputs)
    items = discover(inputs, frame_folders)
    if not items:
        err.print(
            f"No video or image files found in {escape(', '.join(map(str, inputs)))}; check the path (supported: mp4, mov, avi, mkv, webm, jpg, png, ...)."
        )
        raise typer.Exit(2)
    _hint_frame_folders(items, frame_folders)
    from sovtp.pipeline import changed_settings, checked_config

    # checked as the run will key its records (a fresh file has nothing to compare: no check)
    changed = changed_settings(out_path, checked_config(config)) if out_path.exists() else []
    if changed:
        err.print(
            f"[yellow]Note:[/] {escape(str(out_path))} holds records made with other settings ({escape('; '.join(changed[:4]))}{' ...' if len(changed) > 4 else ''}). "
            "This run's records go beside them, and `sovtp eval score` scores each input's latest record; give another --out to keep the runs apart.",
            soft_wrap=True,
        )
    with stop_on_sigterm():
        try:
            with _user_errors(), say_skipped_extractors():
                if runner == "ray":
                    from sovtp.runners.ray_runner import run_ray

                    summary = run_ray(items, config, out_path, address=address, progress=True)
                else:
                    summary = api_run(items, out=out_path, config=config, progress=True)
        except KeyboardInterrupt as stop:
            err.print(
                f"\n[yellow]{'Terminated' if was_terminated(stop) else 'Interrupted'}.[/] Every finished item is saved in {escape(str(out_path))}; run the same command again to resume where it stopped."
            )
            raise typer.Exit(143 if was_terminated(stop) else 130) from None
    err.print(
        f"{summary.done} item(s) written to {escape(str(out_path))}: {summary.ok} labelled, {summary.invalid} invalid answer(s), {summary.errors} error(s)"
        + (f"; {summary.skipped} already done (skipped)" if summary.skipped else "")
        + f" in {summary.seconds:.1f}s."
    )


@app.command()
def prompt(
    inputs: InputsArg,
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Folder for annotated frames and rendered prompts.")] = Path("preview"),
    html: Annotated[bool, typer.Option("--html", help="Also write one self-contained HTML page per video.")] = False,
    template: TemplateOpt = "sovtp",
    template_dir: TemplateDirOpt = None,
    visual: VisualOpt = None,
    layout: LayoutOpt = None,
    labels: LabelsOpt = None,
    cues: CuesOpt = None,
    frames: FramesOpt = 8,
    sampling: SamplingOpt = "uniform",
    target: TargetOpt = "largest",
    per_face: Annotated[bool, typer.Option("--per-face", help="Ask for a label per face ID too (templates that ask for them).")] = False,
    privacy: PrivacyOpt = "none",
    extractors: ExtractorsOpt = None,
    pose_weights: PoseWeightsOpt = None,
    face_landmarker: FaceLandmarkerOpt = None,
    cache_dir: CacheOpt = None,
    no_cache: NoCacheOpt = False,
    max_side: MaxSideOpt = 1280,
    image_max_side: Annotated[
        Optional[int],
        typer.Option(
            "--image-max-side", help="Render the images at this longer side, marks included (what `run --backend openai` sends: 1024)."
        ),
    ] = None,
    frame_folders: FrameFoldersOpt = False,
    frame_rate: FrameRateOpt = None,
) -> None:
    """Write the annotated frames and the rendered prompt for each input, with no model at all."""
    from sovtp.api import preview
    from sovtp.inputs import discover

    _use_template_dir(template_dir)
    config = _config(
        template=template, visual=visual, layout=layout, labels=labels, cues=cues, num_frames=frames, sampling=sampling, target=target,
        per_face=per_face, privacy=privacy, extractors=extractors, pose_weights=pose_weights, face_landmarker=face_landmarker, cache_dir=cache_dir, no_cache=no_cache, max_side=max_side,
        image_max_side=image_max_side, frame_folders=frame_folders, frame_rate=frame_rate,
    )  # fmt: skip
    _exit_if_nothing_exists(inputs)
    items = discover(inputs, frame_folders)
    if not items:
        err.print(f"No video or image files found in {escape(', '.join(map(str, inputs)))}.")
        raise typer.Exit(2)
    _hint_frame_folders(items, frame_folders)
    root = inputs[0] if len(inputs) == 1 and inputs[0].is_dir() else None
    failures = 0
    with _user_errors(), say_skipped_extractors():
        written_items = preview(items, out_dir=out_dir, config=config, html=html, root=root)
    for item, written in written_items:
        if isinstance(written, str):
            failures += 1
            err.print(f"[red]error[/] {escape(str(written))}", soft_wrap=True)
        else:
            err.print(f"[green]ok[/] {escape(item.display)} -> {escape(str(written[0].parent))}", soft_wrap=True)
    err.print(f"Previews for {len(items) - failures} of {len(items)} input(s) in {escape(str(out_dir))}.", soft_wrap=True)
    if items and failures == len(items):
        raise typer.Exit(1)  # nothing was previewed: a script must not read this as success


@app.command("extractors")
def list_extractors() -> None:
    """List the installed extractor plugins (read from entry points; none is imported)."""
    from rich.table import Table

    from sovtp.extract import installed_plugins

    table = Table("name", "plugin", "package")
    for p in installed_plugins():
        table.add_row(p.name, p.target, p.distribution or "?")
    out.print(table)


def _mount_eval() -> None:
    """`sovtp eval ...` and `sovtp ablate` live in sovtp.eval (top-level imports: typer, rich)."""
    from sovtp.eval.cli import ablate_command, eval_app

    app.add_typer(eval_app, name="eval", help="Score predictions and compare prompt variants.")
    app.command("ablate")(ablate_command)


_mount_eval()


def main() -> None:  # pragma: no cover - console entry
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
