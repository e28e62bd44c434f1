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


# One NormalizedLandmark on the wire: field 1 of the list (tag 0x0A), length 15, then
# x, y, z as fixed32 fields 1-3 (tags 0x0D, 0x15, 0x1D). The face mesh sets exactly these.
_XYZ_RECORD = np.dtype([("tag", "u1"), ("len", "u1"), ("tx", "u1"), ("x", "<f4"), ("ty", "u1"), ("y", "<f4"), ("tz", "u1"), ("z", "<f4")])


def landmark_array(landmarks: Any) -> np.ndarray:
    """An ``N x 3`` float64 array of a mediapipe ``NormalizedLandmarkList`` (x, y, z).

    Why not a comprehension over ``landmarks.landmark``: 1,434 protobuf attribute reads
    cost 0.4 ms a face, as much as a tenth of the mesh model itself. The list's wire
    format is fixed (protobuf encodes these float fields as little-endian fixed32), so
    one ``SerializeToString`` read as a numpy record array gives the same values in
    0.06 ms. Anything but that exact layout (a field unset, visibility present) takes
    the attribute path, so the result never depends on the shortcut."""
    count = len(landmarks.landmark)
    wire = landmarks.SerializeToString()
    if count and len(wire) == _XYZ_RECORD.itemsize * count:
        rec = np.frombuffer(wire, dtype=_XYZ_RECORD)
        if (
            (rec["tag"] == 0x0A).all()
            and (rec["len"] == _XYZ_RECORD.itemsize - 2).all()
            and (rec["tx"] == 0x0D).all()
            and (rec["ty"] == 0x15).all()
            and (rec["tz"] == 0x1D).all()
        ):
            return np.stack([rec["x"], rec["y"], rec["z"]], axis=1).astype(np.float64)
    return np.array([(p.x, p.y, p.z) for p in landmarks.landmark], dtype=np.float64).reshape(-1, 3)
