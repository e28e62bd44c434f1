"""Model backends: one interface (:class:`~sovtp.backends.base.Backend`), three transports.

``make_backend`` imports a backend's module only when it is asked for, so ``import
sovtp`` never pulls in torch, transformers, vllm or the openai SDK.
"""

from __future__ import annotations

from typing import Any

from sovtp.backends.base import Backend, Capabilities, Sampling, choose_mode
from sovtp.backends.response_cache import CachedBackend

BACKEND_NAMES = ("openai", "transformers", "vllm")


def make_backend(name: str, model: str, **options: Any) -> Backend:
    """Build a backend by name. Options a backend does not use are ignored, so the
    CLI can pass one option set (concurrency, timeout, device, ...) to any of them."""
    if name == "openai":
        from sovtp.backends.openai_compat import OpenAIBackend

        return OpenAIBackend(model=model, **options)
    if name == "transformers":
        from sovtp.backends.transformers_backend import TransformersBackend

        return TransformersBackend(model=model, **options)
    if name == "vllm":
        import importlib.util
        import os

        python = options.pop("vllm_python", None) or os.environ.get("SOVTP_VLLM_PYTHON")
        if python and importlib.util.find_spec("vllm") is None:
            # vLLM lives in another environment (protobuf conflict with mediapipe): bridge to it.
            from sovtp.backends.vllm_bridge import VLLMBridgeBackend

            return VLLMBridgeBackend(model=model, vllm_python=python, **options)
        from sovtp.backends.vllm_engine import VLLMBackend

        return VLLMBackend(model=model, **options)
    raise ValueError(f"backend {name!r} is not one of {', '.join(BACKEND_NAMES)}; pick one with --backend")


__all__ = ["Backend", "BACKEND_NAMES", "CachedBackend", "Capabilities", "Sampling", "choose_mode", "make_backend"]
