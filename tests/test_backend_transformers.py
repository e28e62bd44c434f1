"""The transformers backend on the tiny local Qwen2.5-VL checkpoint (real processor,
real model code, random weights): constrained labels are always in the set and the
label probabilities sum to 1; batching, usage and the response cache work."""

from __future__ import annotations

import asyncio
import math
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sovtp.backends import CachedBackend, Sampling, choose_mode, make_backend
from sovtp.cache import JsonCache
from sovtp.labels import DFEW, MAFW
from sovtp.parse import parse_answer
from sovtp.types import ImagePart, Prompt, TextPart


@pytest.fixture(scope="module")
def backend(tiny_vlm):
    b = make_backend("transformers", str(tiny_vlm), batch_size=3, concurrency=8)  # unused options are ignored
    asyncio.run(b.check())
    return b


def prompts(media: Path, labels=DFEW) -> list[Prompt]:
    faces = ["single_face.jpg", "0-f15-hao-ph.jpg", "15-f13-anc-ph.jpg", "multi_face.jpg"]
    out = []
    for i, name in enumerate(faces):
        img = np.asarray(Image.open(media / name).convert("RGB"))
        parts = (TextPart("You see numbered faces."), ImagePart(img), TextPart(f"What does face {i + 1} feel?"))
        out.append(Prompt(parts=parts, labels=labels.labels, template_name="t", template_hash="h", system="Answer briefly."))
    out.append(Prompt(parts=(TextPart("No image here."),), labels=labels.labels, template_name="t", template_hash="h"))
    return out


def test_capabilities_pick_rank(backend):
    assert choose_mode("auto", backend.capabilities, has_schema=True) == "rank"


@pytest.mark.parametrize("mode,labels", [("rank", DFEW), ("choice", DFEW), ("choice", MAFW)])
def test_constrained_label_always_in_set(backend, media, mode, labels):
    answers = asyncio.run(backend.answer(prompts(media, labels), mode, Sampling(max_tokens=6)))
    assert len(answers) == 5
    for a in answers:
        assert a.error is None, a.error
        assert set(a.label_scores) == set(labels.labels)
        assert math.isclose(sum(a.label_scores.values()), 1.0, abs_tol=1e-6)
        r = parse_answer(a, labels)
        assert r.status == "ok" and r.label in labels and r.label == max(a.label_scores, key=a.label_scores.get)
        assert a.usage.prompt_tokens and a.usage.prompt_tokens > 5
    with_image = answers[0].usage.prompt_tokens
    assert with_image > answers[-1].usage.prompt_tokens  # image tokens were fed to the model
    if mode == "rank":
        assert all("Final answer:" in a.text and a.usage.completion_tokens <= 6 for a in answers)


def test_free_generation_batched_left_padding(backend, media):
    ps = prompts(media)
    batched = asyncio.run(backend.answer(ps, "free", Sampling(max_tokens=5)))
    single = [asyncio.run(backend.answer([p], "free", Sampling(max_tokens=5)))[0] for p in ps[:2]]
    for a in batched:
        assert a.error is None and 0 < a.usage.completion_tokens <= 5
    # left padding keeps greedy answers identical whether batched or not
    assert [a.text for a in batched[:2]] == [a.text for a in single]


def test_scores_match_direct_computation(backend):
    """Rank scores equal a separate forward pass per label (no padding effects)."""
    import torch

    labels = ["happy", "sad", "disappointment"]
    ctx = "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\nFinal answer:"
    scores = backend.score_labels(ctx, [], labels)
    tok, model = backend._proc.tokenizer, backend._model
    ctx_ids = tok(ctx, add_special_tokens=False)["input_ids"]
    totals = []
    for lab in labels:
        ids = tok(" " + lab, add_special_tokens=False)["input_ids"]
        x = torch.tensor([ctx_ids + ids])
        with torch.inference_mode():
            lp = torch.log_softmax(model(input_ids=x).logits.float(), -1)[0]
        totals.append(sum(float(lp[len(ctx_ids) + j - 1, t]) for j, t in enumerate(ids)))
    z = sum(math.exp(t) for t in totals)
    for lab, t in zip(labels, totals, strict=True):
        assert math.isclose(scores[lab], math.exp(t) / z, rel_tol=1e-4)


def test_response_cache_reuses_answers(backend, media, tmp_path):
    ps = prompts(media)[:2]
    cache = JsonCache(tmp_path, "responses")
    first = asyncio.run(CachedBackend(backend, cache).answer(ps, "rank", Sampling(max_tokens=4)))
    cb = CachedBackend(backend, JsonCache(tmp_path, "responses"))
    second = asyncio.run(cb.answer(ps, "rank", Sampling(max_tokens=4)))
    assert cb.hits == 2 and cb.misses == 0 and all(a.cached for a in second)
    assert [a.label_scores for a in first] == [a.label_scores for a in second]
    # a different decoding setting, label set or image is a different request
    third = asyncio.run(cb.answer(ps, "rank", Sampling(max_tokens=5)))
    assert cb.misses == 2 and not any(a.cached for a in third)


def test_missing_model_is_one_sentence(tmp_path):
    from sovtp.errors import UserError

    b = make_backend("transformers", str(tmp_path / "nope"))
    with pytest.raises(UserError) as err:
        asyncio.run(b.check())
    assert "nope" in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("options", "says"),
    [
        ({"dtype": "fp16"}, "--dtype 'fp16' is not a torch floating-point type"),  # was AttributeError: module 'torch' has no attribute
        ({"dtype": "int8"}, "--dtype 'int8' is not a torch floating-point type"),
        ({"device": "cdua"}, "--device 'cdua' is not usable here"),
    ],
)
def test_a_bad_dtype_or_device_is_one_sentence(tiny_vlm, options, says):
    from sovtp.errors import UserError

    with pytest.raises(UserError, match=re.escape(says)):
        asyncio.run(make_backend("transformers", str(tiny_vlm), **options).check())


def test_prefix_cached_scores_equal_full_sequences_with_images(backend, media):
    """Rank scoring encodes the prompt (images included) once and continues its cache
    per label; the scores must equal scoring every label as a full sequence."""
    labels = [*MAFW.labels, "schadenfreude", "bewilderment"]  # the tiny tokenizer splits these two
    prompt = prompts(media, MAFW)[3]  # multi_face.jpg: an image with many vision tokens
    text, images = backend._chat_text(prompt)
    context = text + "\nFinal answer:"
    ctx = backend._inputs([context], [images])
    tok = backend._proc.tokenizer
    label_ids = [tok(" " + lab, add_special_tokens=False)["input_ids"] for lab in labels]
    assert max(len(ids) for ids in label_ids) > 1  # some labels are several tokens
    prefix = backend._label_logprobs_prefix(ctx, label_ids)
    full = backend._label_logprobs_full(ctx, label_ids)
    assert prefix == pytest.approx(full, rel=1e-4, abs=1e-4)
    scores = backend.score_labels(context, images, labels)
    assert backend._prefix_scoring  # the fast path ran, no fallback
    assert math.isclose(sum(scores.values()), 1.0, rel_tol=1e-6)


def test_prefix_scoring_passes_the_cache_under_the_name_transformers_takes(backend, media):
    """transformers 5.2x renamed the KV cache keyword to ``cache`` and will drop
    ``past_key_values`` in 5.40; the old name would then make the fast path fail and
    every later prompt quietly fall back to full sequences. No deprecation may fire."""
    import warnings

    text, images = backend._chat_text(prompts(media)[3])
    ctx = backend._inputs([text + "\nFinal answer:"], [images])
    label_ids = [backend._proc.tokenizer(" " + lab, add_special_tokens=False)["input_ids"] for lab in ("schadenfreude", "happy")]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        backend._label_logprobs_prefix(ctx, label_ids)
    assert not [str(w.message) for w in caught if "past_key_values" in str(w.message)]


def test_prefix_scores_stay_exact_after_other_prompts(backend, media):
    """Qwen2.5-VL keeps position offsets from its last prompt: a text-only context
    scored after an image prompt, or after a batched generate, must not inherit them."""
    labels = ["schadenfreude", "bewilderment", "happy", "sad"]
    tok = backend._proc.tokenizer
    label_ids = [tok(" " + lab, add_special_tokens=False)["input_ids"] for lab in labels]
    image_prompt, text_prompt = prompts(media)[3], prompts(media)[4]
    chats = [backend._chat_text(p) for p in (image_prompt, text_prompt, image_prompt)]
    backend._label_logprobs_prefix(backend._inputs([chats[0][0] + "\nFinal answer:"], [chats[0][1]]), label_ids)
    text_ctx = backend._inputs([chats[1][0] + "\nFinal answer:"], [[]])
    assert backend._label_logprobs_prefix(text_ctx, label_ids) == pytest.approx(backend._label_logprobs_full(text_ctx, label_ids), abs=1e-4)
    backend._generate([c[0] for c in chats], [c[1] for c in chats], Sampling(max_tokens=2))  # leaves 3-row offsets
    image_ctx = backend._inputs([chats[0][0] + "\nFinal answer:"], [chats[0][1]])
    assert backend._label_logprobs_prefix(image_ctx, label_ids) == pytest.approx(
        backend._label_logprobs_full(image_ctx, label_ids), abs=1e-4
    )
    assert backend._prefix_scoring


def test_the_response_cache_tells_apart_dtype_device_and_a_checkpoints_chat_template(tiny_vlm, tmp_path):
    """A bfloat16 rerun got the float32 run's cached scores, and so did a rerun after the
    checkpoint folder's chat template was edited: neither was in the cache key."""
    import shutil

    from sovtp.backends.transformers_backend import TransformersBackend

    folder = tmp_path / "ckpt"
    shutil.copytree(tiny_vlm, folder)
    ident = TransformersBackend(str(folder)).cache_identity()
    assert TransformersBackend(str(folder)).cache_identity() == ident  # stable
    assert TransformersBackend(str(folder), dtype="bfloat16").cache_identity() != ident
    assert TransformersBackend(str(folder), device="cpu").cache_identity() != ident
    templates = [p for p in folder.iterdir() if p.name.startswith("chat_template")]
    assert templates, sorted(p.name for p in folder.iterdir())
    templates[0].write_text(templates[0].read_text().replace("You are a helpful assistant.", "You are a careful rater."))
    assert TransformersBackend(str(folder)).cache_identity() != ident
