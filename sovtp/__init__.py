"""sovtp: zero-shot emotion recognition in videos with vision LLMs by Set-of-Vision-Text
Prompting. ``import sovtp`` is light: heavy libraries (torch, mediapipe, vllm) load only
when a stage that needs them runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_LAZY = {
    "run": "sovtp.api",
    "preview": "sovtp.api",
    "extract_cues": "sovtp.api",
    "load_results": "sovtp.api",
    "make_config": "sovtp.api",
    "RunConfig": "sovtp.pipeline",
    "RunSummary": "sovtp.pipeline",
    "InputItem": "sovtp.inputs",
    "LabelSet": "sovtp.labels",
    "load_label_set": "sovtp.labels",
    "Clip": "sovtp.types",
    "Cues": "sovtp.types",
    "Prompt": "sovtp.types",
    "Answer": "sovtp.types",
    "Result": "sovtp.types",
}

__all__ = sorted(_LAZY) + ["__version__"]

if TYPE_CHECKING:  # pragma: no cover  (names for type checkers; __getattr__ loads them)
    from sovtp.api import extract_cues, load_results, make_config, preview, run
    from sovtp.inputs import InputItem
    from sovtp.labels import LabelSet, load_label_set
    from sovtp.pipeline import RunConfig, RunSummary
    from sovtp.types import Answer, Clip, Cues, Prompt, Result


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'sovtp' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
