"""Shared helpers for the mediapipe-based extractors: crops around faces and the
one-sentence error when mediapipe cannot be imported.

mediapipe is imported lazily (inside functions) so that ``import sovtp`` and listing
plugins stay fast; the graphs are created once per extractor instance and reused.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from sovtp.extract import ExtractorUnavailable
from sovtp.types import Box


def import_mediapipe_solutions() -> Any:
    """``mediapipe.solutions``, or ExtractorUnavailable naming the fix."""
    try:
        from mediapipe.python import solutions  # noqa: PLC0415
    except Exception as exc:  # ImportError, or a broken protobuf/numpy pairing
        raise ExtractorUnavailable(
            f"mediapipe could not be imported ({type(exc).__name__}); install it with `pip install mediapipe==0.10.21` (needs numpy<2, protobuf<5)"
        ) from None
    return solutions


def square_crop_box(box: Box, scale: float, width: int, height: int) -> Box:
    """A square box of side ``scale`` x the face's longer side, centred on the face and
    clipped to the frame (the mesh model expects a face filling about 2/3 of its input)."""
    side = max(box.width, box.height) * scale
    cx, cy = box.center
    return Box(x1=cx - side / 2, y1=cy - side / 2, x2=cx + side / 2, y2=cy + side / 2).clipped(width, height)


def crop(image: np.ndarray, box: Box) -> tuple[np.ndarray, int, int]:
    """A C-contiguous RGB crop (mediapipe needs contiguous memory) and its top-left corner."""
    x1, y1, x2, y2 = box.as_int()
    x1, y1 = max(0, x1), max(0, y1)
    x2, y2 = min(image.shape[1], x2), min(image.shape[0], y2)
    return np.ascontiguousarray(image[y1:y2, x1:x2]), x1, y1
