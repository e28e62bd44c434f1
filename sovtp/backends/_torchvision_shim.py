"""Make a CPU-incompatible torchvision importable, only when it fails to import.

Why: on machines where the registry's torchvision wheel was built against a CUDA torch
while torch itself is a CPU build, ``import torchvision`` dies with
``operator torchvision::nms does not exist`` (its compiled ops cannot load). transformers'
Qwen2-VL/2.5-VL processors and vLLM import torchvision for pure-Python transforms only,
so declaring the missing op schemas (and a PIL ``decode_image``) is enough for them.
A torchvision that imports cleanly, or none at all, is left untouched.
"""

from __future__ import annotations

import sys

_LIB = None  # keeps the op-schema library alive for the life of the process
_applied = False


def ensure_torchvision() -> bool:
    """Import torchvision, shimming its compiled ops if they cannot load.

    Returns True when torchvision is importable afterwards, False when it is not installed.
    """
    global _LIB, _applied
    try:
        import torchvision  # noqa: F401

        return True
    except ModuleNotFoundError:
        return False
    except RuntimeError as exc:
        if "torchvision::" not in str(exc):
            raise
    for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
        del sys.modules[name]
    _define_ops()
    import torchvision.io as tvio

    def decode_image(input, mode=None, apply_exif_orientation: bool = False):  # noqa: A002
        """PIL-based stand-in for torchvision.io.decode_image (its C decoder cannot load)."""
        import io

        import numpy as np
        import torch
        from PIL import Image

        data = input.numpy().tobytes() if hasattr(input, "numpy") else bytes(input)
        img = Image.open(io.BytesIO(data)).convert("RGB")
        return torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1).contiguous()

    tvio.decode_image = decode_image
    _applied = True
    return True


def shim_applied() -> bool:
    return _applied


def _define_ops() -> None:
    global _LIB
    if _LIB is not None:
        return
    import torch

    # FRAGMENT, and only ops not yet declared: the .pth hook and this module may both
    # run in one process (they are separate module objects).
    _LIB = torch.library.Library("torchvision", "FRAGMENT")
    for op in ("nms", "qnms"):
        try:
            torch._C._dispatch_find_schema_or_throw(f"torchvision::{op}", "")
        except RuntimeError:
            _LIB.define(f"{op}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")


class _Hook:
    """A meta-path finder that declares the op schemas just before torchvision is first
    imported. Installed at interpreter start (a .pth file) only in an environment known
    to have the broken build — scripts/make_vllm_venv.sh does that for .venv-vllm,
    because vLLM imports torchvision in subprocesses sovtp does not control."""

    def find_spec(self, name, path=None, target=None):
        if name == "torchvision":
            sys.meta_path.remove(self)
            _define_ops()
        return None


def install_hook() -> None:
    if not any(isinstance(f, _Hook) for f in sys.meta_path):
        sys.meta_path.insert(0, _Hook())
