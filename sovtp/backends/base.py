"""The one backend interface every model transport implements.

A backend takes a batch of composed :class:`~sovtp.types.Prompt` s and returns one
:class:`~sovtp.types.Answer` per prompt, in order, never raising for a single failed
request: a request that failed after its retries comes back as an Answer with
``error`` set, so one bad item never loses the batch. Backends declare what they
support so the runner can pick the decoding mode (``--structured auto``).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from sovtp.types import Answer, DecodingMode, Prompt


@dataclass(frozen=True)
class Capabilities:
    max_images: int | None = None  # None: no fixed limit
    json_schema: bool = False  # constrained decoding to a JSON schema
    choice: bool = False  # constrained decoding to one of a list of strings
    rank: bool = False  # scores each label's continuation (always in the set)
    logprobs: bool = False


@dataclass(frozen=True)
class Sampling:
    """Decoding settings. Part of the response-cache key: anything here changes an answer."""

    temperature: float = 0.0
    max_tokens: int = 512
    seed: int | None = 0
    top_p: float = 1.0
    extra: dict[str, Any] = field(default_factory=dict)

    def key(self) -> dict[str, Any]:
        return {"temperature": self.temperature, "max_tokens": self.max_tokens, "seed": self.seed, "top_p": self.top_p, "extra": self.extra}


@runtime_checkable
class Backend(Protocol):
    name: str
    model: str
    capabilities: Capabilities

    async def answer(self, prompts: Sequence[Prompt], mode: DecodingMode, sampling: Sampling) -> list[Answer]: ...

    async def aclose(self) -> None: ...


def choose_mode(requested: str, caps: Capabilities, has_schema: bool) -> DecodingMode:
    """Resolve ``--structured auto|json|choice|rank|off`` against what the backend can do.

    auto prefers a JSON schema (keeps the reasoning fields and constrains the label),
    then rank classification, then a constrained choice, then free text parsed strictly.
    """
    if requested == "off":
        return "free"
    if requested == "auto":
        if has_schema and caps.json_schema:
            return "json"
        if caps.rank:
            return "rank"
        if caps.choice:
            return "choice"
        return "free"
    if requested == "json":
        return "json" if caps.json_schema and has_schema else "free"
    if requested in ("choice", "rank"):
        ok = caps.choice if requested == "choice" else caps.rank
        return requested if ok else "free"  # type: ignore[return-value]
    raise ValueError(f"--structured {requested!r} is not one of auto, json, choice, rank, off")


def run_sync(coro):
    """Run a coroutine from synchronous code (the CLI and the plain Python API)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    raise RuntimeError("run_sync was called inside a running event loop; await the async API instead")


# Files of a local checkpoint folder that change what the model answers besides its weights:
# the chat template (the system line, the image placeholders), the tokenizer, the image
# processor's resizing, the default generation settings.
CHECKPOINT_TEXT_FILES = (
    "config.json",
    "chat_template.jinja",
    "chat_template.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.json",
    "merges.txt",
    "preprocessor_config.json",
    "processor_config.json",
    "video_preprocessor_config.json",
    "generation_config.json",
)


def checkpoint_identity(model: str) -> str | None:
    """The identity of a local checkpoint folder: the content of its text files
    (``CHECKPOINT_TEXT_FILES``) and each weight file's name, size and mtime (hashing
    gigabytes of weights would cost more than it protects). None for a hub id. Run keys
    and the response cache use it, so weights saved again into the same folder, or an
    edited chat template, are not answered from the old model's records."""
    from pathlib import Path

    folder = Path(model)
    if not (folder / "config.json").is_file():
        return None
    files = [folder / name for name in CHECKPOINT_TEXT_FILES if (folder / name).is_file()]
    weights = [p for pattern in ("*.safetensors", "*.bin", "*.pt") for p in folder.glob(pattern)]
    state = tuple(sorted((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in [*files, *weights]))
    return _checkpoint_digest(state)


@functools.lru_cache(maxsize=16)
def _checkpoint_digest(state: tuple[tuple[str, int, int], ...]) -> str:
    """The digest of one state of a checkpoint folder (cached: run keys ask once per item)."""
    from pathlib import Path

    from sovtp.cache import stable_key

    texts = {
        Path(p).name: Path(p).read_text(encoding="utf-8", errors="replace") for p, _, _ in state if Path(p).name in CHECKPOINT_TEXT_FILES
    }
    weights = sorted((Path(p).name, size, mtime // 1_000_000_000) for p, size, mtime in state if Path(p).name not in CHECKPOINT_TEXT_FILES)
    return stable_key(texts, weights)
