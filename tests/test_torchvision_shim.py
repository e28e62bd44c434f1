"""The torchvision shim's pure-torch ``torchvision::nms`` kernel, and that the shim acts only
when torchvision's compiled ops cannot load."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from sovtp.backends import _torchvision_shim as shim  # noqa: E402


def reference_nms(boxes: np.ndarray, scores: np.ndarray, thr: float, dtype: type = np.float64) -> list[int]:
    """Plain greedy NMS: by decreasing score (ties by index), keep a box unless its IoU with
    a box already kept exceeds ``thr`` (an empty union, 0/0, never suppresses). The IoU is
    computed in ``dtype`` and compared in double, as torchvision's CPU kernel does."""
    boxes = boxes.astype(dtype)

    def iou(a: np.ndarray, b: np.ndarray) -> float:
        w = max(dtype(0), min(a[2], b[2]) - max(a[0], b[0]))
        h = max(dtype(0), min(a[3], b[3]) - max(a[1], b[1]))
        inter = w * h
        union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
        return float(inter / union) if union else float("nan")

    keep: list[int] = []
    for i in sorted(range(len(scores)), key=lambda i: -scores[i]):
        if not any(iou(boxes[i], boxes[k]) > thr for k in keep):
            keep.append(i)
    return keep


def random_boxes(rng: np.random.Generator, n: int, integer: bool) -> np.ndarray:
    xy = rng.uniform(0, 100, (n, 2))
    wh = rng.uniform(0, 40, (n, 2))
    if integer:
        xy, wh = np.floor(xy), np.floor(wh)  # exact IoUs, incl. ties with the threshold and empty boxes
    wh[rng.random(n) < 0.05] = 0.0  # some zero-area boxes
    return np.concatenate([xy, xy + wh], axis=1)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("thr", [0.0, 0.3, 0.5, 0.7, 1.0])
def test_nms_kernel_matches_a_plain_reference(seed: int, thr: float) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 120))
    for integer, dtype in ((False, np.float64), (True, np.float32)):
        boxes = random_boxes(rng, n, integer)
        scores = rng.random(n).round(1 if seed % 2 else 6).astype(dtype)  # odd seeds: many tied scores
        got = shim._nms_cpu(torch.from_numpy(boxes.astype(dtype)), torch.from_numpy(scores), thr)
        assert got.dtype == torch.int64
        assert got.tolist() == reference_nms(boxes, scores, thr, dtype)
        assert (np.diff(scores[got.numpy()]) <= 0).all()  # by decreasing score


def test_nms_kernel_edge_cases() -> None:
    empty = shim._nms_cpu(torch.zeros((0, 4)), torch.zeros(0), 0.5)
    assert empty.dtype == torch.int64 and empty.shape == (0,)
    boxes = torch.tensor([[0.0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30]])
    assert shim._nms_cpu(boxes, torch.tensor([0.8, 0.9, 0.1]), 0.5).tolist() == [1, 2]
    with pytest.raises(RuntimeError, match="boxes"):
        shim._nms_cpu(torch.zeros((3, 5)), torch.zeros(3), 0.5)
    with pytest.raises(RuntimeError, match="scores"):
        shim._nms_cpu(torch.zeros((3, 4)), torch.zeros(2), 0.5)


def test_torchvision_ops_nms_matches_the_reference_with_or_without_the_shim() -> None:
    """torchvision's own kernel where its ops load, the shim's where they do not."""
    if not shim.ensure_torchvision():
        pytest.skip("torchvision is not installed")
    import torchvision

    rng = np.random.default_rng(7)
    boxes, scores = random_boxes(rng, 300, integer=True), rng.permutation(300).astype(np.float32) / 300  # distinct scores
    for thr in (0.3, 0.5):
        keep = torchvision.ops.nms(torch.from_numpy(boxes.astype(np.float32)), torch.from_numpy(scores), thr)
        assert keep.tolist() == reference_nms(boxes, scores, thr, np.float32)
    scores64 = scores.astype(np.float64)
    keep = torch.ops.torchvision.nms(torch.from_numpy(boxes), torch.from_numpy(scores64), 0.5)
    assert keep.tolist() == reference_nms(boxes, scores64, 0.5)
    # Applied exactly when torchvision's compiled library did not load; then the CPU kernel is the shim's.
    assert shim.shim_applied() == (not torchvision.extension._has_ops())
    if shim.shim_applied():
        assert torch._C._dispatch_has_kernel_for_dispatch_key("torchvision::nms", "CPU")


def run_fresh(code: str) -> str:
    """``code`` in a fresh interpreter (op registrations are process-wide); its stdout."""
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout.strip()


PRELUDE = """
import sys, types
import torch
from sovtp.backends import _torchvision_shim as shim

def declared(op):
    try:
        torch._C._dispatch_find_schema_or_throw(op, "")
        return True
    except RuntimeError:
        return False
"""


def test_shim_leaves_a_working_or_absent_torchvision_alone() -> None:
    out = run_fresh(
        PRELUDE
        + """
sys.modules["torchvision"] = types.ModuleType("torchvision")  # one that imports cleanly
print(shim.ensure_torchvision(), shim.shim_applied(), declared("torchvision::nms"))
sys.modules["torchvision"] = None  # not installed
print(shim.ensure_torchvision(), shim.shim_applied(), declared("torchvision::nms"))
"""
    )
    assert out.splitlines() == ["True False False", "False False False"]


def test_shim_never_replaces_a_real_nms_kernel() -> None:
    out = run_fresh(
        PRELUDE
        + """
real = torch.library.Library("torchvision", "FRAGMENT")  # as torchvision's compiled library does
real.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
real.impl("nms", lambda d, s, t: torch.tensor([42]), "CPU")
shim._define_ops()
print(torch.ops.torchvision.nms(torch.zeros((1, 4)), torch.zeros(1), 0.5).tolist(), declared("torchvision::qnms"))
"""
    )
    assert out == "[42] True"
