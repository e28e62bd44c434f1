"""Small annotators, each drawing one kind of mark over a canvas from the frame's
:class:`FaceMark` s. A visual mode is an ordered tuple of them (see ``modes.py``).

Order matters only for tags: ID tags are placed before AU tags so that a face's
number keeps its preferred spot and AU tags move around it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from sovtp.render.draw import RED, WHITE, Canvas, box_rect, face_color, font_size_for, measure, place_tag
from sovtp.render.view import FaceMark


class Annotator(Protocol):
    def __call__(self, canvas: Canvas, marks: Sequence[FaceMark]) -> None: ...


def _line_width(mark: FaceMark) -> int:
    return max(2, int(round(mark.box.height / 60)))


def _observed(marks: Sequence[FaceMark]) -> list[FaceMark]:
    return [m for m in marks if m.observed]


def register_faces(canvas: Canvas, marks: Sequence[FaceMark]) -> None:
    """Tell the placer where faces are, so tags avoid covering them."""
    for m in _observed(marks):
        r = box_rect(m.box)
        if r not in canvas.placer.avoid:
            canvas.placer.avoid.append(r)


@dataclass(frozen=True)
class Boxes:
    """Face rectangles in the face's colour."""

    def __call__(self, canvas: Canvas, marks: Sequence[FaceMark]) -> None:
        register_faces(canvas, marks)
        d = canvas.draw
        for m in _observed(marks):
            x1, y1, x2, y2 = box_rect(m.box)
            d.rectangle((x1, y1, x2, y2), outline=face_color(m.id), width=_line_width(m))


@dataclass(frozen=True)
class IdTags:
    """The face's ID number in a filled tag, preferably inside the box's top-left corner
    (the box visibly "holds" its number), else just outside it."""

    def __call__(self, canvas: Canvas, marks: Sequence[FaceMark]) -> None:
        register_faces(canvas, marks)
        min_side = min(canvas.image.size)
        for m in _observed(marks):
            size = font_size_for(m.box.height, 0.2, min_side)
            text = str(m.id)
            w, h, _, _ = measure(text, size)
            x1, y1, x2, y2 = box_rect(m.box)
            lw = _line_width(m)
            candidates = [
                (x1 + lw, y1 + lw),  # inside, top-left
                (x2 - lw - w, y1 + lw),  # inside, top-right
                (x1, y1 - h),  # above, left
                (x1 + lw, y2 - lw - h),  # inside, bottom-left
                (x1, y2),  # below, left
            ]
            place_tag(canvas, text, size, face_color(m.id), candidates, own_face=box_rect(m.box), leader_to=(x1, y1))


@dataclass(frozen=True)
class Landmarks:
    """Dots on the readable landmark subset, sized to the face. White rims, not black:
    black-rimmed dots on a blurred face read as eyes to a face detector (privacy)."""

    def __call__(self, canvas: Canvas, marks: Sequence[FaceMark]) -> None:
        d = canvas.draw
        for m in _observed(marks):
            if m.landmarks is None:
                continue
            r = max(1.5, m.box.width / 80.0)
            color = face_color(m.id)
            for x, y in np.round(m.landmarks, 1).tolist():
                d.ellipse((x - r, y - r, x + r, y + r), fill=color, outline=WHITE if r >= 3 else None)


@dataclass(frozen=True)
class AUTags:
    """Short AU tags ("AU12 AU6") beside each face: right, left, below, then above it."""

    def __call__(self, canvas: Canvas, marks: Sequence[FaceMark]) -> None:
        register_faces(canvas, marks)
        min_side = min(canvas.image.size)
        for m in _observed(marks):
            if not m.aus:
                continue
            size = max(10, int(round(font_size_for(m.box.height, 0.2, min_side) * 0.8)))
            text = " ".join(m.aus)
            w, h, _, _ = measure(text, size)
            x1, y1, x2, y2 = box_rect(m.box)
            gap = 2
            candidates = [
                (x2 + gap, y1),
                (x1 - w - gap, y1),
                (x1, y2 + gap),
                (x1, y1 - h - gap),
                (x2 + gap, y2 - h),
                (x1 - w - gap, y2 - h),
            ]
            place_tag(canvas, text, size, face_color(m.id), candidates, own_face=None, leader_to=(x2, y1))


@dataclass(frozen=True)
class RedEllipse:
    """A red ellipse around the target face only (the "red circle" visual prompt)."""

    scale: float = 1.35

    def __call__(self, canvas: Canvas, marks: Sequence[FaceMark]) -> None:
        for m in marks:
            if not m.is_target:
                continue
            b = m.box.scaled(self.scale).clipped(canvas.image.width - 1, canvas.image.height - 1)
            canvas.draw.ellipse((b.x1, b.y1, b.x2, b.y2), outline=RED, width=max(2, int(round(m.box.height / 40))))


@dataclass(frozen=True)
class SoMMarks:
    """Set-of-Mark numbers at the most interior point of each person region (no box)."""

    def __call__(self, canvas: Canvas, marks: Sequence[FaceMark]) -> None:
        from sovtp.render.regions import interior_points

        observed = _observed(marks)
        points = interior_points(canvas.image.width, canvas.image.height, observed)
        min_side = min(canvas.image.size)
        for m in observed:
            size = font_size_for(m.box.height, 0.25, min_side)
            text = str(m.id)
            w, h, _, _ = measure(text, size)
            px, py = points[m.id]
            place_tag(canvas, text, size, face_color(m.id), [(px - w // 2, py - h // 2)], leader_to=(px, py))
