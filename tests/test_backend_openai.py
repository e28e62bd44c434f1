"""The OpenAI-compatible backend through the real openai client against real local
HTTP servers: retries (429 + Retry-After, 500, resets), timeouts, the final error
record, fail-fast on a dead server, the response cache, and that the key never leaks."""

from __future__ import annotations

import asyncio
import json
import logging
import socket

import numpy as np
import pytest

from sovtp.backends import CachedBackend, Sampling, make_backend
from sovtp.cache import JsonCache
from sovtp.errors import UserError
from sovtp.labels import DFEW
from sovtp.parse import answer_schema, parse_answer
from sovtp.types import ImagePart, Prompt, TextPart
from tests.helpers.servers import FaultServer, ModelServer

KEY = "sk-sovtp-TEST-KEY-0123456789abcdef"


def prompt(i: int = 0, schema: bool = True) -> Prompt:
    img = np.full((60, 90, 3), i % 255, np.uint8)
    return Prompt(
        parts=(TextPart(f"Describe face 1 in clip {i}."), ImagePart(img), TextPart("Answer.")),
        labels=DFEW.labels,
        template_name="t",
        template_hash="h",
        answer_schema=answer_schema(DFEW, ["observation"], per_face_ids=[1]) if schema else None,
    )


def backend(server, **kw):
    opts = dict(base_url=server.base_url, api_key=KEY, timeout=3.0, backoff_base=0.01, max_retries=4)
    opts.update(kw)
    return make_backend("openai", "", **opts)


async def run(b, prompts, mode="json", sampling=Sampling()):
    try:
        await b.check()
        return await b.answer(prompts, mode, sampling)
    finally:
        await b.aclose()


def test_json_request_shape_and_answer():
    with FaultServer() as s:
        [a] = asyncio.run(run(backend(s, image_max_side=40, detail="low"), [prompt()]))
        body = s.requests[0]["body"]
    assert a.error is None and a.retries == 0 and a.usage.completion_tokens
    assert body["response_format"]["json_schema"]["schema"]["properties"]["label"]["enum"] == list(DFEW.labels)
    assert "structured_outputs" not in body and not any(k.startswith("guided") for k in body)
    image = body["messages"][0]["content"][1]["image_url"]
    assert image["url"].startswith("data:image/jpeg;base64,") and image["detail"] == "low"
    from sovtp.backends.messages import decode_data_url

    assert max(decode_data_url(image["url"]).shape[:2]) == 40  # resized to the max side
    r = parse_answer(a, DFEW, target_id=1)
    assert r.status == "ok" and r.label == "happy" and r.face_labels == {"1": "happy"}


def test_vllm_server_gets_structured_outputs():
    with FaultServer(owned_by="vllm") as s:
        b = backend(s)
        asyncio.run(run(b, [prompt()], "json"))
        b2 = backend(s)
        [a] = asyncio.run(run(b2, [prompt()], "choice"))
        bodies = [r["body"] for r in s.requests]
    assert b.capabilities.choice
    assert bodies[0]["structured_outputs"]["json"]["properties"]["label"]["enum"] == list(DFEW.labels)
    assert "response_format" not in bodies[0]
    assert bodies[1]["structured_outputs"] == {"choice": list(DFEW.labels)}
    assert a.text == "happy"


def test_retries_429_retry_after_500_reset():
    with FaultServer(plan=["429", "500", "reset", "503", "ok"], retry_after=1) as s:
        [a] = asyncio.run(run(backend(s), [prompt()]))
        times = [r["t"] for r in s.requests]
    assert a.error is None and a.retries == 4
    assert [r for r in ["429", "500", "reset", "503", "ok"]] == [r["action"] for r in s.requests]
    assert times[1] - times[0] >= 0.95  # Retry-After: 1 was honoured (a lower bound, not a speed check)


def test_stall_times_out_then_retries():
    with FaultServer(plan=["stall"], stall_s=3.0) as s:
        [a] = asyncio.run(run(backend(s, timeout=0.5), [prompt()]))
    assert a.error is None and a.retries == 1


def test_final_error_record_after_retries():
    with FaultServer(default="500") as s:
        answers = asyncio.run(run(backend(s, max_retries=2), [prompt(0), prompt(1)]))
        n = s.count
    assert n == 6  # 2 prompts x (1 + 2 retries)
    for a in answers:
        assert a.retries == 2 and "after 2 retries" in a.error and "HTTP 500" in a.error
        assert parse_answer(a, DFEW).status == "error"


def test_client_error_is_not_retried():
    with FaultServer(default="400") as s:
        [a] = asyncio.run(run(backend(s), [prompt()]))
        assert s.count == 1
    assert a.retries == 0 and "HTTP 400" in a.error


def test_dead_server_fails_fast_in_one_sentence():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    b = make_backend("openai", "m", base_url=f"http://127.0.0.1:{port}/v1", api_key=KEY)
    with pytest.raises(UserError) as err:
        asyncio.run(run(b, [prompt()]))
    msg = str(err.value)
    assert f"127.0.0.1:{port}" in msg and msg.count(".") <= 4 and KEY not in msg


def test_missing_key_for_hosted_api(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    b = make_backend("openai", "gpt-4o")
    with pytest.raises(UserError, match="OPENAI_API_KEY"):
        asyncio.run(run(b, [prompt()]))


def test_cache_second_run_sends_zero_requests_and_no_key_in_files(tmp_path, caplog, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    caplog.set_level(logging.DEBUG)
    prompts = [prompt(i) for i in range(5)]
    with FaultServer(plan=["429"], retry_after=0) as s:
        first = asyncio.run(run(CachedBackend(backend(s, api_key=None), JsonCache(tmp_path / "cache", "responses")), prompts))
        n1 = s.count
        second = asyncio.run(run(CachedBackend(backend(s, api_key=None), JsonCache(tmp_path / "cache", "responses")), prompts))
        n2 = s.count
        shown = repr(backend(s))
        # the key went to the server (as it must) ...
        assert any(KEY in json.dumps(r["headers"]) for r in s.requests)
    assert n1 == 6 and n2 == n1  # the second identical run sent zero requests
    assert all(a.cached for a in second) and not any(a.cached for a in first)
    assert [a.text for a in first] == [a.text for a in second]
    # ... and nowhere else: no cache file, no log line, no repr
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert len(files) == 5
    for f in files:
        assert KEY not in f.read_text(encoding="utf-8")
    assert KEY not in caplog.text and KEY not in shown


def test_cache_skips_sampled_requests(tmp_path):
    with FaultServer() as s:
        cache = JsonCache(tmp_path, "responses")
        for _ in range(2):
            asyncio.run(run(CachedBackend(backend(s), cache), [prompt()], sampling=Sampling(temperature=0.7)))
        assert s.count == 2 and not any(tmp_path.rglob("*.json"))


def test_error_text_is_scrubbed():
    b = make_backend("openai", "m", base_url="http://127.0.0.1:9/v1", api_key=KEY)
    assert KEY not in b.scrub(f"bad key {KEY} and {KEY[:14]}")


def test_through_a_real_model_server(tiny_vlm):
    """The real openai client against a server answered by the tiny Qwen2.5-VL model."""
    from sovtp.backends.transformers_backend import TransformersBackend

    with ModelServer(TransformersBackend(str(tiny_vlm))) as s:
        s.owned_by = "vllm"  # so the client sends structured_outputs.choice, which this server honours
        answers = asyncio.run(run(backend(s), [prompt(0, schema=False), prompt(1, schema=False)], "choice", Sampling(max_tokens=8)))
        assert s.count == 2
    for a in answers:
        assert a.error is None and a.text in DFEW.labels and a.usage.prompt_tokens > 16  # image tokens included
    free = asyncio.run(_free(tiny_vlm))
    assert free.error is None and free.usage.completion_tokens == 5


async def _free(tiny_vlm):
    from sovtp.backends.transformers_backend import TransformersBackend

    with ModelServer(TransformersBackend(str(tiny_vlm))) as s:
        b = backend(s)
        await b.check()
        [a] = await b.answer([prompt(0, schema=False)], "free", Sampling(max_tokens=5))
        await b.aclose()
        return a


class _Gateway(FaultServer):
    """A proxy that answers 200 with an error object first (OpenRouter-style), then a real
    completion; or, with ``refuse``, a structured-output refusal (content null)."""

    refuse = False

    def _post(self, h):
        self.read_body(h)
        with self.lock:
            self.requests.append({})
            n = len(self.requests)
        if self.refuse:
            body = self.completion("m", "")
            body["choices"][0]["message"] = {"role": "assistant", "content": None, "refusal": "I'm sorry, I can't help with that."}
            self.send_json(h, 200, body)
        elif n == 1:
            self.send_json(h, 200, {"error": {"message": "Upstream provider overloaded", "code": 502}})
        else:
            self.send_json(h, 200, self.completion("m", '{"observation": "x", "faces": {"1": "sad"}, "label": "sad"}'))


def test_a_200_that_carries_an_error_is_retried_and_never_cached(tmp_path):
    """Before, it became an empty "invalid" answer, written to the response cache: a
    rerun never asked again."""
    with _Gateway() as server:
        cache = JsonCache(tmp_path, "responses")
        [a] = asyncio.run(run(CachedBackend(backend(server), cache), [prompt()]))
        assert a.error is None and a.retries == 1 and parse_answer(a, DFEW).label == "sad"
        assert server.count == 2


def test_a_refusal_is_kept_as_the_raw_answer():
    with _Gateway() as server:
        server.refuse = True
        [a] = asyncio.run(run(backend(server), [prompt()]))
    parsed = parse_answer(a, DFEW)
    assert parsed.status == "invalid" and parsed.raw == "[refused] I'm sorry, I can't help with that."
