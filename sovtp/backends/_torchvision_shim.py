"""Make a CPU-incompatible torchvision importable, only when it fails to import.

Why: on machines where the registry's torchvision wheel was built against a CUDA torch
while torch itself is a CPU build, ``import torchvision`` dies with
``operator torchvision::nms does not exist`` (its compiled ops cannot load). transformers'
Qwen2-VL/2.5-VL processors and vLLM import torchvision for pure-Python transforms only,
so declaring the missing op schemas (and a PIL ``decode_image``) is enough for them.
ultralytics (the YOLO-pose extractor) also calls ``torchvision.ops.nms`` after every
prediction, so the shim gives ``torchvision::nms`` a pure-torch CPU kernel with the same
semantics as torchvision's own (:func:`_nms_cpu`). The other compiled ops stay missing and
fail when called (``qnms`` with torch's "could not run" error, the rest as absent ops).
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
    import torchvision.ops.boxes as tvboxes

    # torchvision.ops.nms refuses to run while its compiled library is absent; nms now has
    # a kernel, so lift that check for the box ops (torchvision.ops.boxes) only.
    tvboxes._assert_has_ops = _boxes_ops_available

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


def _boxes_ops_available() -> None:
    """Stand-in for torchvision.ops.boxes' ``_assert_has_ops`` once the shim is applied."""


def _nms_cpu(dets, scores, iou_threshold: float):
    """Greedy non-maximum suppression, as torchvision's CPU kernel computes it.

    ``dets`` (N, 4) boxes as x1, y1, x2, y2; ``scores`` (N,). Visits boxes by decreasing
    score (ties in index order), keeps each one not yet suppressed and suppresses every
    later box whose IoU with it exceeds ``iou_threshold``. Returns the kept indices, int64,
    by decreasing score.
    """
    import torch

    if dets.dim() != 2 or dets.size(1) != 4:
        raise RuntimeError(f"boxes should be a 2d tensor of shape (N, 4), got {tuple(dets.shape)}")
    if scores.dim() != 1 or scores.size(0) != dets.size(0):
        raise RuntimeError(f"scores should be a 1d tensor of {dets.size(0)} elements, got {tuple(scores.shape)}")
    if not dets.is_floating_point() or dets.dtype != scores.dtype:
        raise RuntimeError(f"dets and scores should have the same floating type, got {dets.dtype} and {scores.dtype}")
    if dets.numel() == 0:
        return torch.empty(0, dtype=torch.int64, device=dets.device)
    x1, y1, x2, y2 = (dets[:, k].contiguous() for k in range(4))
    areas = (x2 - x1) * (y2 - y1)
    order = torch.sort(scores, dim=0, descending=True, stable=True).indices
    keep: list[int] = []
    while order.numel():
        i = int(order[0])
        keep.append(i)
        rest = order[1:]
        w = (torch.minimum(x2[rest], x2[i]) - torch.maximum(x1[rest], x1[i])).clamp(min=0)
        h = (torch.minimum(y2[rest], y2[i]) - torch.maximum(y1[rest], y1[i])).clamp(min=0)
        inter = w * h
        iou = inter / (areas[i] + areas[rest] - inter)
        # Compared in double like the C++ kernel; a NaN IoU (empty union) never suppresses.
        order = rest[~(iou.double() > iou_threshold)]
    return torch.tensor(keep, dtype=torch.int64, device=dets.device)


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
            if op == "nms":  # declared here, so torchvision's own kernel is absent
                _LIB.impl("nms", _nms_cpu, "CPU")


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
