"""vLLM's offline engine in-process (``--backend vllm``): the fast path on a GPU.

Why one ``LLM.chat`` call per batch: vLLM schedules what it is given at once
(continuous batching); with prefix caching the long instruction shared by every
prompt is computed once. Constrained decoding uses vLLM's structured outputs
(``StructuredOutputsParams(json=...)`` / ``choice=[...]``) with xgrammar and
``disable_any_whitespace`` (otherwise a JSON schema lets a model emit whitespace until
``max_tokens``). Images are capped through the processor's ``max_pixels``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

from sovtp.backends.base import Capabilities, Sampling
from sovtp.backends.messages import prompt_schema, vllm_messages
from sovtp.errors import UserError
from sovtp.types import Answer, DecodingMode, Prompt, Usage

NO_VLLM = (
    "vLLM is not installed in this Python environment; point --vllm-python at the interpreter of an environment "
    "that has it (bash scripts/make_vllm_venv.sh builds one), or use --backend transformers / openai."
)


def import_vllm():
    """Import vllm (after making torchvision importable), or raise the one-sentence error."""
    from sovtp.backends._torchvision_shim import ensure_torchvision

    try:
        ensure_torchvision()
        import vllm
    except ImportError:
        raise UserError(NO_VLLM) from None
    return vllm


class VLLMBackend:
    name = "vllm"
    capabilities = Capabilities(json_schema=True, choice=True)

    def __init__(
        self,
        model: str,
        max_images: int | None = None,
        max_pixels: int | None = 768 * 28 * 28,
        image_max_side: int | None = None,
        seed: int = 0,
        dtype: str = "auto",
        max_model_len: int | None = None,
        gpu_memory_utilization: float = 0.9,
        enforce_eager: bool = False,
        engine_kwargs: dict[str, Any] | None = None,
        **_ignored: Any,
    ) -> None:
        self.model = model
        self.max_images = max_images
        self.max_pixels = max_pixels
        self.image_max_side = image_max_side
        self.seed = seed
        self.dtype = dtype
        self.max_model_len = max_model_len
        self.gpu_memory_utilization = gpu_memory_utilization
        self.enforce_eager = enforce_eager
        self.engine_kwargs = dict(engine_kwargs or {})
        self.preferred_batch_size = 256  # the engine schedules; give it a lot at once
        self._llm = None
        self._limit = 0

    def cache_identity(self) -> dict[str, Any]:
        from sovtp.backends.base import checkpoint_identity

        return {
            "backend": self.name,
            "model": checkpoint_identity(self.model) or self.model,  # a local folder: its files, as the bridge and transformers
            "max_pixels": self.max_pixels,
            "image_max_side": self.image_max_side,
            "dtype": self.dtype,
            "engine_kwargs": self.engine_kwargs,
        }

    def engine_args(self, n_images: int) -> dict[str, Any]:
        """The ``vllm.LLM`` keyword arguments for prompts of up to ``n_images`` images."""
        args: dict[str, Any] = {
            "model": self.model,
            "seed": self.seed,
            "dtype": self.dtype,
            "enable_prefix_caching": True,
            "limit_mm_per_prompt": {"image": max(1, n_images), "video": 0},
            "structured_outputs_config": {"backend": "xgrammar", "disable_any_whitespace": True},
            "enforce_eager": self.enforce_eager,
        }
        if self.max_pixels:
            args["mm_processor_kwargs"] = {"max_pixels": int(self.max_pixels)}
        if self.max_model_len:
            args["max_model_len"] = self.max_model_len
        try:
            import torch

            if torch.cuda.is_available():
                args["gpu_memory_utilization"] = self.gpu_memory_utilization
        except ImportError:
            pass
        args.update(self.engine_kwargs)
        return args

    def _engine(self, n_images: int):
        if self._llm is not None:
            return self._llm
        vllm = import_vllm()
        limit = max(n_images, self.max_images or 0, 1)
        asked = self.engine_kwargs.get("limit_mm_per_prompt")
        if isinstance(asked, dict) and asked.get("image"):
            limit = int(asked["image"])  # --engine-arg limit_mm_per_prompt wins, as it does in engine_args
        try:
            self._llm = vllm.LLM(**self.engine_args(limit))
        except Exception as exc:
            detail = " ".join(str(exc).split())[:300] or type(exc).__name__
            raise UserError(
                f"vLLM could not start an engine for {self.model!r} ({type(exc).__name__}: {detail}); check the model path and that a GPU (or the vLLM CPU build) is available."
            ) from None
        self._limit = limit
        return self._llm

    def sampling_params(self, prompt: Prompt, mode: DecodingMode, sampling: Sampling):
        from vllm import SamplingParams
        from vllm.sampling_params import StructuredOutputsParams

        so = None
        if mode == "json":
            so = StructuredOutputsParams(json=prompt_schema(prompt))
        elif mode == "choice":
            so = StructuredOutputsParams(choice=list(prompt.labels))
        return SamplingParams(
            temperature=sampling.temperature,
            top_p=sampling.top_p,
            max_tokens=sampling.max_tokens,
            seed=sampling.seed,
            structured_outputs=so,
        )

    async def check(self) -> None:
        import_vllm()

    async def answer(self, prompts: Sequence[Prompt], mode: DecodingMode, sampling: Sampling) -> list[Answer]:
        return await asyncio.to_thread(self._answer_sync, list(prompts), mode, sampling)

    def _answer_sync(self, prompts: list[Prompt], mode: DecodingMode, sampling: Sampling) -> list[Answer]:
        from sovtp.parse import extract_json

        if mode == "rank":
            mode = "choice"  # the engine constrains the label directly
        llm = self._engine(max((len(p.images) for p in prompts), default=1))
        out: list[Answer | None] = [None] * len(prompts)
        idx, convs, params = [], [], []
        for i, p in enumerate(prompts):
            if len(p.images) > self._limit:
                out[i] = Answer(
                    mode=mode,
                    error=f"the prompt has {len(p.images)} images but the engine was started for {self._limit}; raise --engine-arg limit_mm_per_prompt",
                )
                continue
            idx.append(i)
            convs.append(vllm_messages(p, self.image_max_side))
            params.append(self.sampling_params(p, mode, sampling))
        if convs:
            t0 = time.perf_counter()
            results = llm.chat(convs, sampling_params=params, use_tqdm=False)
            dt = (time.perf_counter() - t0) / len(convs)
            for i, r in zip(idx, results, strict=True):
                o = r.outputs[0]
                text = o.text
                out[i] = Answer(
                    text=text,
                    mode=mode,
                    parsed=extract_json(text) if mode == "json" else None,
                    usage=Usage(prompt_tokens=len(r.prompt_token_ids or []), completion_tokens=len(o.token_ids)),
                    latency_s=dt,
                )
        return [a for a in out if a is not None]

    async def aclose(self) -> None:
        self._llm = None
