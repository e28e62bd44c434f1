"""``--backend vllm`` when vLLM lives in another Python environment.

Why this exists: mediapipe 0.10.21 (the cue extractors' models) needs protobuf<5 and
vLLM needs protobuf>=5, so they cannot share one environment. The bridge keeps the
cue pipeline here and runs the real :class:`~sovtp.backends.vllm_engine.VLLMBackend`
in a worker process started with the other environment's interpreter
(``--vllm-python .venv-vllm/bin/python``). Prompts cross a pipe as JSON lines, images
as base64 ``.npy`` arrays (lossless, loaded without pickle); the engine stays loaded
for the whole run, so batching and prefix caching work as in-process.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import subprocess
import threading
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

import numpy as np

from sovtp.backends.base import Capabilities, Sampling
from sovtp.errors import UserError
from sovtp.types import Answer, DecodingMode, ImagePart, Prompt, TextPart, Usage


def encode_prompt(p: Prompt) -> dict[str, Any]:
    parts: list[dict[str, Any]] = []
    for part in p.parts:
        if isinstance(part, TextPart):
            parts.append({"text": part.text})
        else:
            buf = io.BytesIO()
            np.save(buf, np.ascontiguousarray(part.image), allow_pickle=False)
            parts.append({"npy": base64.b64encode(buf.getvalue()).decode("ascii"), "caption": part.caption})
    return {
        "parts": parts,
        "labels": list(p.labels),
        "template_name": p.template_name,
        "template_hash": p.template_hash,
        "system": p.system,
        "answer_schema": p.answer_schema,
        "item_id": p.item_id,
    }


def decode_prompt(d: dict[str, Any]) -> Prompt:
    parts: list[TextPart | ImagePart] = []
    for part in d["parts"]:
        if "text" in part:
            parts.append(TextPart(part["text"]))
        else:
            arr = np.load(io.BytesIO(base64.b64decode(part["npy"])), allow_pickle=False)
            parts.append(ImagePart(arr, caption=part.get("caption", "")))
    return Prompt(
        parts=tuple(parts),
        labels=tuple(d["labels"]),
        template_name=d["template_name"],
        template_hash=d["template_hash"],
        system=d.get("system"),
        answer_schema=d.get("answer_schema"),
        item_id=d.get("item_id", ""),
    )


def decode_answer(d: dict[str, Any]) -> Answer:
    usage = Usage(**d.pop("usage", {}))
    return Answer(usage=usage, **d)


class VLLMBridgeBackend:
    """The vLLM engine, run by ``python`` (another environment's interpreter)."""

    name = "vllm"
    capabilities = Capabilities(json_schema=True, choice=True)

    def __init__(self, model: str, vllm_python: str, **options: Any) -> None:
        self.model = model
        self.python = vllm_python
        self.options = {k: v for k, v in options.items() if _jsonable(v) and k not in ("api_key",)}
        self.preferred_batch_size = 256
        self._proc: subprocess.Popen | None = None
        self._lock = threading.Lock()

    def cache_identity(self) -> dict[str, Any]:
        from sovtp.backends.base import checkpoint_identity

        keep = ("max_pixels", "image_max_side", "dtype", "engine_kwargs")
        return {"backend": self.name, "model": checkpoint_identity(self.model) or self.model, **{k: self.options.get(k) for k in keep}}

    # ------------------------------------------------------------------ worker process

    def _start(self) -> subprocess.Popen:
        if self._proc is not None and self._proc.poll() is None:
            return self._proc
        if not os.path.exists(self.python):
            raise UserError(
                f"--vllm-python {self.python} does not exist; create the vLLM environment (bash scripts/make_vllm_venv.sh) or fix the path."
            )
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self._proc = subprocess.Popen(
            [self.python, "-m", "sovtp.backends.vllm_worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=None,  # vLLM's own logs go to our stderr
            text=True,
            env=env,
        )
        reply = self._call({"op": "init", "model": self.model, "options": self.options})
        if not reply.get("ready"):
            raise UserError(reply.get("error") or "the vLLM worker did not start; run it by hand to see why.")
        return self._proc

    def _call(self, message: dict[str, Any]) -> dict[str, Any]:
        proc = self._proc
        assert proc is not None and proc.stdin is not None and proc.stdout is not None
        try:
            proc.stdin.write(json.dumps(message) + "\n")
            proc.stdin.flush()
            line = proc.stdout.readline()
        except BrokenPipeError:
            line = ""
        if not line:
            code = proc.wait(timeout=30)
            raise UserError(f"the vLLM worker ({self.python}) exited with code {code}; its log is above.")
        return json.loads(line)

    # ------------------------------------------------------------------ Backend API

    async def check(self) -> None:
        await asyncio.to_thread(self._locked_start)

    def _locked_start(self) -> None:
        with self._lock:
            self._start()

    async def answer(self, prompts: Sequence[Prompt], mode: DecodingMode, sampling: Sampling) -> list[Answer]:
        return await asyncio.to_thread(self._answer_sync, list(prompts), mode, sampling)

    def _answer_sync(self, prompts: list[Prompt], mode: DecodingMode, sampling: Sampling) -> list[Answer]:
        with self._lock:
            self._start()
            reply = self._call({"op": "answer", "mode": mode, "sampling": asdict(sampling), "prompts": [encode_prompt(p) for p in prompts]})
        if "error" in reply:
            # a run-level problem ends the run in one sentence; one bad batch fails only its items
            raise (UserError if reply.get("fatal") else RuntimeError)(reply["error"])
        return [decode_answer(a) for a in reply["answers"]]

    async def aclose(self) -> None:
        await asyncio.to_thread(self._close)

    def _close(self) -> None:
        with self._lock:
            proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            try:
                proc.stdin.write(json.dumps({"op": "close"}) + "\n")  # type: ignore[union-attr]
                proc.stdin.flush()  # type: ignore[union-attr]
                proc.wait(timeout=60)
            except (BrokenPipeError, subprocess.TimeoutExpired, OSError):
                proc.kill()
                proc.wait()


def _jsonable(v: Any) -> bool:
    try:
        json.dumps(v)
    except (TypeError, ValueError):
        return False
    return True
