"""The Python API. The CLI is a thin layer over these functions.

import sovtp

if __name__ == "__main__":  # preparation runs in worker processes (spawned): scripts need the guard
    summary = sovtp.run("videos/", out="results.jsonl", backend="openai",
                        model="Qwen/Qwen2.5-VL-7B-Instruct", base_url="http://localhost:8000/v1")
    for r in sovtp.load_results("results.jsonl"):
        print(r.path, r.status, r.label)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

from sovtp.inputs import InputItem, discover
from sovtp.pipeline import RunConfig, RunSummary
from sovtp.types import Clip, Cues, Result

# backend options a user may pass flat, as the CLI's --base-url, --vllm-python, --engine-arg ...
_BACKEND_OPTIONS = (
    "base_url",
    "timeout",
    "max_retries",
    "detail",
    "device",
    "dtype",
    "api_key",
    "vllm_python",
    "engine_kwargs",
    "max_pixels",
)


def _items(inputs: str | Path | Iterable[str | Path | InputItem], frame_folders: bool = False) -> list[InputItem]:
    if isinstance(inputs, (str, Path)):
        return discover([inputs], frame_folders)
    items: list[InputItem] = []
    paths: list[str | Path] = []
    for x in inputs:
        if isinstance(x, InputItem):
            items.append(x)
        else:
            paths.append(x)
    return items + discover(paths, frame_folders)


def make_config(config: RunConfig | None = None, **settings: Any) -> RunConfig:
    """A RunConfig from keyword settings; backend options (base_url, timeout...) may be
    given flat, and ``labels`` may be a name, list or LabelSet."""
    from sovtp.labels import LabelSet, load_label_set

    config = config or RunConfig()
    options = {**config.backend_options, **(settings.pop("backend_options", None) or {})}
    for k in _BACKEND_OPTIONS:
        if k in settings:
            options[k] = settings.pop(k)
    if "labels" in settings and not isinstance(settings["labels"], LabelSet):
        labels = settings["labels"]
        settings["labels"] = load_label_set(labels if isinstance(labels, str) else ",".join(labels))
    if "include_cues" in settings and settings["include_cues"] is not None:
        settings["include_cues"] = frozenset(settings["include_cues"])
    known = {f.name for f in fields(RunConfig)}
    unknown = set(settings) - known
    if unknown:
        raise TypeError(f"unknown setting(s) {', '.join(sorted(unknown))}; see sovtp.RunConfig for the settings")
    return replace(config, backend_options=options, **settings)


def run(
    inputs: str | Path | Iterable[str | Path | InputItem],
    out: str | Path = "results.jsonl",
    config: RunConfig | None = None,
    progress: bool | Callable[[Result], None] = False,
    **settings: Any,
) -> RunSummary:
    """Label every input and append one record per input to ``out`` (resumable)."""
    from sovtp.pipeline import run_items

    cfg = make_config(config, **settings)
    items = _items(inputs, cfg.frame_folders)
    if progress is True:
        return _run_with_bar(items, cfg, Path(out))
    return run_items(items, cfg, out, progress=progress or None)


def _run_with_bar(items: Sequence[InputItem], cfg: RunConfig, out: Path) -> RunSummary:
    from sovtp.pipeline import run_items
    from sovtp.progress import RunBar

    bar = RunBar(len(items))
    try:
        summary = run_items(items, cfg, out, progress=bar.tick)
        bar.complete(summary.done + summary.skipped)
    except BaseException:
        bar.close(failed=True)
        raise
    bar.close()
    return summary


def preview(
    inputs: str | Path | Iterable[str | Path | InputItem],
    out_dir: str | Path = "preview",
    config: RunConfig | None = None,
    html: bool = False,
    root: Path | None = None,
    **settings: Any,
):
    """Write annotated frames + rendered prompt per input, without any model."""
    from sovtp.pipeline import preview_items

    cfg = make_config(config, **settings)
    items = _items(inputs, cfg.frame_folders)
    if root is None and isinstance(inputs, (str, Path)) and Path(inputs).is_dir():
        root = Path(inputs)
    return preview_items(items, cfg, out_dir, html=html, root=root)


def extract_cues(path: str | Path, config: RunConfig | None = None, **settings: Any) -> tuple[Clip, Cues]:
    """Decode one input and run the extractors: the clip and its cues, no model."""
    from sovtp.pipeline import Preparer
    from sovtp.video import content_sha256

    cfg = make_config(config, **settings)
    preparer = Preparer(cfg)
    timings: dict[str, float] = {}
    return preparer.clip_and_cues(Path(path), content_sha256(Path(path)), timings)


def load_results(path: str | Path) -> list[Result]:
    """The records of a results file, the latest per item."""
    from sovtp.results import load_results as _load

    return _load(path)
