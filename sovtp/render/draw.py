"""Drawing primitives shared by every annotator: the canvas, fonts, colours, tags, and
the placer that keeps tags inside the image and off each other.

Why one placer per canvas: tags from different annotators (face IDs, AU tags, frame
numbers of a grid tile) compete for the same space; routing every tag through one
placer is what guarantees that no two tags overlap, whatever modes are composed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from sovtp.types import Box

Rect = tuple[int, int, int, int]  # x1, y1, x2, y2 (exclusive), integer canvas pixels

# High-contrast colours, distinguishable from each other and from skin tones; one per
# face ID (ID 1 -> first colour), so a face's box, tag and landmarks share a colour.
PALETTE: tuple[tuple[int, int, int], ...] = (
    (255, 40, 40),
    (30, 144, 255),
    (255, 215, 0),
    (50, 205, 50),
    (255, 0, 255),
    (0, 230, 230),
    (255, 140, 0),
    (160, 80, 255),
)
RED = (255, 0, 0)
BLACK = (0, 0, 0)
WHITE = (255, 255, 255)

MIN_FONT = 10
MAX_FONT = 64


def face_color(face_id: int) -> tuple[int, int, int]:
    return PALETTE[(face_id - 1) % len(PALETTE)]


def text_color_on(fill: tuple[int, int, int]) -> tuple[int, int, int]:
    """Black or white, whichever contrasts more with ``fill`` (relative luminance)."""
    r, g, b = fill
    return BLACK if 0.299 * r + 0.587 * g + 0.114 * b > 140 else WHITE


@lru_cache(maxsize=64)
def font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """Pillow's bundled scalable font (no system fonts: same glyphs, same bytes, everywhere)."""
    return ImageFont.load_default(size=max(MIN_FONT, min(int(size), MAX_FONT)))


def font_size_for(face_height: float, factor: float = 0.2, image_min_side: int | None = None) -> int:
    """A font size proportional to the face, bounded so tags stay readable and small."""
    size = int(round(face_height * factor))
    if image_min_side:
        size = min(size, max(MIN_FONT, image_min_side // 12))
    return max(MIN_FONT, min(size, MAX_FONT))


def rects_overlap(a: Rect, b: Rect) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def overlap_area(a: Rect, b: Rect) -> int:
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    return max(0, w) * max(0, h)


def box_rect(box: Box) -> Rect:
    x1, y1, x2, y2 = box.as_int()
    return x1, y1, x2, y2


@dataclass
class Placer:
    """Chooses where each tag goes: the first preferred spot that is inside the image,
    free of other tags and (softly) off faces; failing that, the nearest free spot
    found by a scan of the whole image. Deterministic: same requests, same spots."""

    width: int
    height: int
    taken: list[Rect] = field(default_factory=list)
    avoid: list[Rect] = field(default_factory=list)  # faces: avoided when possible

    def _inside(self, x: int, y: int, w: int, h: int) -> tuple[int, int]:
        x = min(max(0, x), max(0, self.width - w))
        y = min(max(0, y), max(0, self.height - h))
        return x, y

    def _collides(self, r: Rect) -> bool:
        return any(rects_overlap(r, t) for t in self.taken)

    def _face_cost(self, r: Rect, skip: Rect | None) -> int:
        return sum(overlap_area(r, a) for a in self.avoid if a != skip)

    def reserve(self, rect: Rect) -> None:
        self.taken.append(rect)

    def place(self, w: int, h: int, candidates: Sequence[tuple[int, int]], own_face: Rect | None = None) -> tuple[Rect, bool]:
        """A free rect of size w x h; the bool says whether it is one of ``candidates``
        (False: it was moved away, so callers may draw a leader line)."""
        w, h = min(w, self.width), min(h, self.height)
        best: tuple[int, int, Rect] | None = None
        for order, (cx, cy) in enumerate(candidates):
            x, y = self._inside(cx, cy, w, h)
            r = (x, y, x + w, y + h)
            if self._collides(r):
                continue
            cost = self._face_cost(r, own_face)
            if cost == 0:
                self.taken.append(r)
                return r, True
            if best is None or (cost, order) < best[:2]:
                best = (cost, order, r)
        anchor = self._inside(candidates[0][0], candidates[0][1], w, h) if candidates else (0, 0)
        scanned = self._scan(w, h, anchor, own_face)
        if scanned is not None:
            self.taken.append(scanned)
            return scanned, False
        if best is not None:
            self.taken.append(best[2])
            return best[2], True
        # The image is full of tags: overlap is unavoidable; keep the first choice.
        x, y = anchor
        r = (x, y, x + w, y + h)
        self.taken.append(r)
        return r, True

    def _scan(self, w: int, h: int, anchor: tuple[int, int], own_face: Rect | None) -> Rect | None:
        """Nearest position (to ``anchor``) free of tags and faces, else free of tags only."""
        if w > self.width or h > self.height:
            return None
        occ = np.zeros((self.height + 1, self.width + 1), dtype=np.int64)
        soft = np.zeros_like(occ)
        for x1, y1, x2, y2 in self.taken:
            occ[max(0, y1) : max(0, y2), max(0, x1) : max(0, x2)] = 1
        for r in self.avoid:
            if r != own_face:
                x1, y1, x2, y2 = r
                soft[max(0, y1) : max(0, y2), max(0, x1) : max(0, x2)] = 1
        step = max(2, h // 3)
        ys = np.arange(0, self.height - h + 1, step)
        xs = np.arange(0, self.width - w + 1, step)
        if len(ys) == 0 or len(xs) == 0:
            return None

        def window_sums(mask: np.ndarray) -> np.ndarray:
            sat = np.zeros((mask.shape[0] + 1, mask.shape[1] + 1), dtype=np.int64)
            sat[1:, 1:] = mask.cumsum(0).cumsum(1)
            y0, x0 = ys[:, None], xs[None, :]
            return sat[y0 + h, x0 + w] - sat[y0, x0 + w] - sat[y0 + h, x0] + sat[y0, x0]

        hard = window_sums(occ)
        faces = window_sums(soft)
        dist = (ys[:, None] - anchor[1]) ** 2 + (xs[None, :] - anchor[0]) ** 2
        for ok in (hard == 0) & (faces == 0), hard == 0:
            if ok.any():
                d = np.where(ok, dist, np.iinfo(np.int64).max)
                iy, ix = np.unravel_index(int(np.argmin(d)), d.shape)
                x, y = int(xs[ix]), int(ys[iy])
                return x, y, x + w, y + h
        return None


@dataclass
class Canvas:
    """The image being annotated plus its drawing state (one placer for all tags)."""

    image: Image.Image
    placer: Placer

    @classmethod
    def from_array(cls, array: np.ndarray, reserved: Sequence[Rect] = ()) -> Canvas:
        img = Image.fromarray(np.ascontiguousarray(array), mode="RGB")
        placer = Placer(img.width, img.height, taken=list(reserved))
        return cls(img, placer)

    @property
    def draw(self) -> ImageDraw.ImageDraw:
        return ImageDraw.Draw(self.image)

    def to_array(self) -> np.ndarray:
        return np.asarray(self.image, dtype=np.uint8).copy()


def measure(text: str, size: int) -> tuple[int, int, int, int]:
    """(width, height, x offset, y offset) of ``text`` in a tag with padding."""
    f = font(size)
    x0, y0, x1, y1 = f.getbbox(text)
    pad = max(2, size // 5)
    return (x1 - x0) + 2 * pad, (y1 - y0) + 2 * pad, pad - x0, pad - y0


def draw_tag(canvas: Canvas, rect: Rect, text: str, size: int, fill: tuple[int, int, int]) -> None:
    """A filled, outlined label: readable on any background (outline in the text colour's
    opposite so the tag edge shows on both dark and light frames)."""
    d = canvas.draw
    fg = text_color_on(fill)
    outline = WHITE if fg == BLACK else BLACK
    x1, y1, x2, y2 = rect
    d.rectangle((x1, y1, x2 - 1, y2 - 1), fill=fill, outline=outline, width=1)
    _, _, ox, oy = measure(text, size)
    d.text((x1 + ox, y1 + oy), text, fill=fg, font=font(size))


def place_tag(
    canvas: Canvas,
    text: str,
    size: int,
    fill: tuple[int, int, int],
    candidates: Sequence[tuple[int, int]],
    own_face: Rect | None = None,
    leader_to: tuple[int, int] | None = None,
) -> Rect:
    """Measure, place (collision-free) and draw one tag; returns where it went."""
    w, h, _, _ = measure(text, size)
    rect, as_asked = canvas.placer.place(w, h, candidates, own_face)
    if not as_asked and leader_to is not None:
        cx, cy = (rect[0] + rect[2]) // 2, (rect[1] + rect[3]) // 2
        canvas.draw.line((cx, cy, leader_to[0], leader_to[1]), fill=fill, width=max(1, size // 10))
    draw_tag(canvas, rect, text, size, fill)
    return rect
