"""The vLLM engine's image limit and start-up failures, without vLLM: ``vllm.LLM`` is
replaced by a FAKE engine that records its arguments (the real engine is exercised in
tests/test_vllm.py, in the vLLM environment)."""

from __future__ import annotations

import asyncio
import types

import numpy as np
import pytest

import sovtp.backends.vllm_engine as engine
from sovtp.backends.base import Sampling
from sovtp.errors import UserError
from sovtp.labels import DFEW
from sovtp.pipeline import RunConfig, _make_backend, answer_prompts
from sovtp.types import ImagePart, Prompt, TextPart


class FakeLLM:
    """FAKE vllm.LLM: answers "happy" to every conversation; keeps its arguments."""

    started: list[dict] = []

    def __init__(self, **kw) -> None:
        FakeLLM.started.append(kw)
        if kw.get("max_model_len", 0) > 4096:
            raise ValueError("max_model_len 8192 exceeds the model's 4096")

    def chat(self, convs, sampling_params=None, use_tqdm=False):
        out = types.SimpleNamespace(text="happy", token_ids=[1])
        return [types.SimpleNamespace(outputs=[out], prompt_token_ids=[1, 2]) for _ in convs]


@pytest.fixture(autouse=True)
def fake_vllm(monkeypatch):
    FakeLLM.started = []
    monkeypatch.setattr(engine, "import_vllm", lambda: types.SimpleNamespace(LLM=FakeLLM))
    monkeypatch.setattr(engine.VLLMBackend, "sampling_params", lambda self, p, m, s: None)


def prompt(n_images: int) -> Prompt:
    img = np.zeros((32, 32, 3), np.uint8)
    return Prompt(
        parts=(TextPart("x"), *[ImagePart(img) for _ in range(n_images)]), labels=DFEW.labels, template_name="t", template_hash="-"
    )


def test_the_image_limit_follows_the_run_not_the_first_batch():
    """A first batch of photos started the engine for 1 image; every 8-frame video after
    it failed ("the prompt has 8 images but the engine was started for 1")."""
    backend = _make_backend(RunConfig(backend="vllm", model="m", num_frames=8, cache_dir=None))
    photos = asyncio.run(backend.answer([prompt(1), prompt(1)], "free", Sampling()))
    video = asyncio.run(backend.answer([prompt(8)], "free", Sampling()))
    assert [a.error for a in photos + video] == [None, None, None]
    assert FakeLLM.started[0]["limit_mm_per_prompt"]["image"] == 8
    asked = engine.VLLMBackend(model="m", engine_kwargs={"limit_mm_per_prompt": {"image": 12, "video": 0}})
    assert asyncio.run(asked.answer([prompt(12)], "free", Sampling()))[0].error is None  # --engine-arg wins


def test_an_engine_that_cannot_start_stops_the_run_in_one_sentence():
    """Before, every batch tried to start it again and every item became an error
    record, with exit code 0."""
    backend = engine.VLLMBackend(model="m", engine_kwargs={"max_model_len": 8192})
    with pytest.raises(UserError, match=r"vLLM could not start an engine for 'm' \(ValueError: max_model_len 8192"):
        asyncio.run(answer_prompts(backend, [prompt(1)], "free", Sampling(), "vllm"))
