"""A response cache in front of any backend, for deterministic requests only.

Why: a sovtp run over a dataset is thousands of paid or slow model calls; an
interrupted or repeated run should not pay for answers it already has. Only requests
at temperature 0 are cached (a sampled answer is not a fact about the input). The key
holds everything that can change an answer — backend, the model's identity (not the
server URL: the same model behind another URL answers the same), decoding mode,
sampling settings, system + text parts in order, the sha256 of every image's pixels,
the label set and the answer schema — and never the API key.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from sovtp.backends.base import Backend, Sampling
from sovtp.cache import JsonCache, stable_key
from sovtp.types import Answer, DecodingMode, ImagePart, Prompt, TextPart, Usage

CACHE_VERSION = 1


def request_key(backend: Backend, prompt: Prompt, mode: DecodingMode, sampling: Sampling) -> str:
    """The content address of one request's answer."""
    identity = getattr(backend, "cache_identity", None)
    ident = identity() if callable(identity) else {"backend": backend.name, "model": backend.model}
    parts: list[Any] = []
    for part in prompt.parts:
        if isinstance(part, TextPart):
            parts.append(["text", part.text])
        elif isinstance(part, ImagePart):
            parts.append(["image", part.sha256])
    return stable_key(
        "sovtp-response",
        CACHE_VERSION,
        ident,
        mode,
        sampling.key(),
        prompt.system,
        parts,
        list(prompt.labels),
        prompt.answer_schema,
    )


def answer_to_json(a: Answer) -> dict[str, Any]:
    return {
        "text": a.text,
        "mode": a.mode,
        "parsed": a.parsed,
        "label_scores": a.label_scores,
        "usage": dataclasses.asdict(a.usage),
        "latency_s": a.latency_s,
    }


def answer_from_json(d: dict[str, Any]) -> Answer:
    return Answer(
        text=d.get("text", ""),
        mode=d.get("mode", "free"),
        parsed=d.get("parsed"),
        label_scores=d.get("label_scores"),
        usage=Usage(**(d.get("usage") or {})),
        latency_s=0.0,
        cached=True,
    )


class CachedBackend:
    """Wraps a backend; answers deterministic requests from ``cache`` when it can and
    sends only the misses (as one batch) to the wrapped backend. Error answers are not
    cached, so a rerun retries them."""

    def __init__(self, inner: Backend, cache: JsonCache) -> None:
        self.inner = inner
        self.cache = cache
        self.name = inner.name
        self.hits = 0
        self.misses = 0

    @property
    def model(self) -> str:
        return self.inner.model

    @property
    def capabilities(self):
        return self.inner.capabilities

    def __getattr__(self, item: str):  # check(), preferred_batch_size, cache_identity ...
        return getattr(self.inner, item)

    async def answer(self, prompts: Sequence[Prompt], mode: DecodingMode, sampling: Sampling) -> list[Answer]:
        if sampling.temperature != 0 or not self.cache.enabled:
            return await self.inner.answer(prompts, mode, sampling)
        keys = [request_key(self.inner, p, mode, sampling) for p in prompts]
        out: list[Answer | None] = []
        for k in keys:
            hit = self.cache.get(k)
            out.append(answer_from_json(hit) if isinstance(hit, dict) else None)
        todo = [i for i, a in enumerate(out) if a is None]
        self.hits += len(prompts) - len(todo)
        self.misses += len(todo)
        if todo:
            fresh = await self.inner.answer([prompts[i] for i in todo], mode, sampling)
            for i, a in zip(todo, fresh, strict=True):
                out[i] = a
                if a.error is None:
                    self.cache.put(keys[i], answer_to_json(a))
        return [a for a in out if a is not None]

    async def aclose(self) -> None:
        await self.inner.aclose()
