"""Pixel operations that change the frame itself rather than draw on it: the reverse
modes (everything but the target blurred or greyed) and the target-face crop.

Reverse modes keep the target's face box pixel-identical to the input: the mask is an
ellipse around the face, feathered outside it, and forced to 1 inside the face box, so
the face the model must read is never softened.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from sovtp.render.view import FaceMark
from sovtp.types import Box

FOCUS_SCALE = 1.6  # the kept ellipse spans this many face sizes (hair, chin, some context)


def target_mark(marks: Sequence[FaceMark]) -> FaceMark | None:
    for m in marks:
        if m.is_target:
            return m
    return None


def _keep_mask(shape: tuple[int, int], target: FaceMark, region: str, marks: Sequence[FaceMark]) -> np.ndarray:
    """Float mask in [0, 1]: 1 where the frame is kept as is."""
    import cv2  # noqa: PLC0415

    h, w = shape
    mask = np.zeros((h, w), dtype=np.float32)
    if region == "person":
        from sovtp.render.regions import person_mask

        mask[person_mask(w, h, marks, target.id)] = 1.0
    b = target.box.scaled(FOCUS_SCALE)
    cx, cy = b.center
    axes = (max(1, int(round(b.width / 2))), max(1, int(round(b.height / 2))))
    cv2.ellipse(mask, (int(round(cx)), int(round(cy))), axes, 0, 0, 360, 1.0, thickness=-1)
    feather = max(1, int(round(target.box.width / 20))) * 2 + 1
    mask = cv2.GaussianBlur(mask, (feather, feather), 0)
    x1, y1, x2, y2 = target.box.clipped(w, h).as_int()
    mask[y1:y2, x1:x2] = 1.0
    return mask


def reverse_focus(image: np.ndarray, marks: Sequence[FaceMark], kind: str = "blur", region: str = "face") -> np.ndarray:
    """Blur (``kind="blur"``) or grey (``"gray"``) everything outside the target's face
    (``region="face"``) or person (``"person"``). No target: the frame is returned unchanged."""
    import cv2  # noqa: PLC0415

    target = target_mark(marks)
    if target is None:
        return image
    h, w = image.shape[:2]
    if kind == "blur":
        sigma = max(2.0, max(h, w) / 100.0)
        other = cv2.GaussianBlur(image, (0, 0), sigmaX=sigma, sigmaY=sigma)
    elif kind == "gray":
        gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
        other = np.repeat(gray[:, :, None], 3, axis=2)
    else:
        raise ValueError(f"unknown reverse-focus kind {kind!r}; use 'blur' or 'gray'")
    mask = _keep_mask((h, w), target, region, marks)[:, :, None]
    out = image.astype(np.float32) * mask + other.astype(np.float32) * (1.0 - mask)
    out = np.clip(np.round(out), 0, 255).astype(np.uint8)
    x1, y1, x2, y2 = target.box.clipped(w, h).as_int()
    out[y1:y2, x1:x2] = image[y1:y2, x1:x2]  # exact, whatever float rounding did
    return out


def crop_box(target: FaceMark, width: int, height: int, scale: float = 1.0) -> Box:
    return target.box.scaled(scale).clipped(width, height)


def crop_target(image: np.ndarray, marks: Sequence[FaceMark], scale: float = 1.0, min_side: int = 64) -> np.ndarray | None:
    """The target's face region (box times ``scale``), upscaled only when its shorter
    side is under ``min_side`` (vision encoders reject tiny images). None: no target."""
    target = target_mark(marks)
    if target is None:
        return None
    h, w = image.shape[:2]
    x1, y1, x2, y2 = crop_box(target, w, h, scale).as_int()
    if x2 - x1 < 1 or y2 - y1 < 1:
        return None
    out = np.ascontiguousarray(image[y1:y2, x1:x2])
    short = min(out.shape[:2])
    if short < min_side:
        import cv2  # noqa: PLC0415

        f = min_side / short
        out = cv2.resize(out, (int(round(out.shape[1] * f)), int(round(out.shape[0] * f))), interpolation=cv2.INTER_CUBIC)
    return out
