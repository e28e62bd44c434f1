"""Person regions from face (and pose) boxes, and their most interior points.

Renderers never run extractors, so a person region is estimated from what the cues
already hold: the face box, extended to a body box below it (or the pose keypoints'
box when a pose was found). Overlapping regions are split between people by nearest
face centre (in face widths), so each pixel belongs to one person and every mark
lands on its own person.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from sovtp.render.view import FaceMark
from sovtp.types import Box

WORK_SIDE = 256  # regions are computed on a grid of at most this side: fast, same result shape
MARK_ROOM = 8.0  # px: how far inside a body region a mark's centre must be to go there


def person_box(m: FaceMark) -> Box:
    """The face box widened to shoulders and extended down to the chest, or the pose box."""
    fw, fh = m.box.width, m.box.height
    cx = m.box.center[0]
    body = Box(x1=cx - 1.25 * fw, y1=m.box.y1 - 0.15 * fh, x2=cx + 1.25 * fw, y2=m.box.y2 + 2.5 * fh)
    if m.body is not None:
        body = Box(
            x1=min(m.box.x1, m.body.x1),
            y1=min(m.box.y1, m.body.y1),
            x2=max(m.box.x2, m.body.x2),
            y2=max(m.box.y2, m.body.y2),
        )
    return body


def person_labels(width: int, height: int, marks: Sequence[FaceMark], scale: float) -> np.ndarray:
    """A label image at ``scale`` (0 = nobody, else the face ID) of the person regions."""
    h, w = max(1, int(round(height * scale))), max(1, int(round(width * scale)))
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    xs = (xs + 0.5) / scale
    ys = (ys + 0.5) / scale
    labels = np.zeros((h, w), dtype=np.int32)
    best = np.full((h, w), np.inf, dtype=np.float32)
    for m in sorted(marks, key=lambda m: m.id):
        b = person_box(m)
        inside = (xs >= b.x1) & (xs < b.x2) & (ys >= b.y1) & (ys < b.y2)
        cx, cy = m.box.center
        d = np.hypot(xs - cx, ys - cy) / max(1.0, m.box.width)
        take = inside & (d < best)
        labels[take] = m.id
        best[take] = d[take]
    return labels


def interior_points(width: int, height: int, marks: Sequence[FaceMark]) -> dict[int, tuple[int, int]]:
    """Face ID -> the point of its person region farthest from the region's edge (the
    Set-of-Mark placement rule) and off every face, in canvas pixels. Ties: the first in
    reading order."""
    import cv2  # noqa: PLC0415

    if not marks:
        return {}
    scale = min(1.0, WORK_SIDE / max(width, height))
    labels = person_labels(width, height, marks, scale)
    faces = np.zeros(labels.shape, dtype=bool)  # every face box: a mark there would cover a face
    for m in marks:
        x1, y1 = int(np.floor(m.box.x1 * scale)), int(np.floor(m.box.y1 * scale))
        faces[max(y1, 0) : max(int(np.ceil(m.box.y2 * scale)), 0), max(x1, 0) : max(int(np.ceil(m.box.x2 * scale)), 0)] = True
    points: dict[int, tuple[int, int]] = {}
    for m in marks:
        region = labels == m.id
        if not region.any():
            cx, cy = m.box.center
            points[m.id] = (int(round(cx)), int(round(cy)))
            continue
        # On the body, off every face, where there is room for a mark (MARK_ROOM full-size
        # pixels from the body region's edges); a close-up with no such room keeps the
        # region's most interior point, on the face.
        dist = cv2.distanceTransform(np.pad((region & ~faces).astype(np.uint8), 1), cv2.DIST_L2, 5)[1:-1, 1:-1]
        if dist.max() < MARK_ROOM * scale:
            dist = cv2.distanceTransform(np.pad(region.astype(np.uint8), 1), cv2.DIST_L2, 5)[1:-1, 1:-1]
        iy, ix = np.unravel_index(int(np.argmax(dist)), dist.shape)
        points[m.id] = (int(round((ix + 0.5) / scale)), int(round((iy + 0.5) / scale)))
    return points


def person_mask(width: int, height: int, marks: Sequence[FaceMark], face_id: int) -> np.ndarray:
    """Full-resolution boolean mask of one person's region."""
    import cv2  # noqa: PLC0415

    scale = min(1.0, WORK_SIDE / max(width, height))
    small = (person_labels(width, height, marks, scale) == face_id).astype(np.uint8)
    return cv2.resize(small, (width, height), interpolation=cv2.INTER_NEAREST).astype(bool)
