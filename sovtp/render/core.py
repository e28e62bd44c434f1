"""Frames + cues -> the images a model sees: one per sampled frame, or one grid.

Order per frame, always: resize (so marks are drawn at the size sent, and stay
legible) -> de-identify (privacy) -> pixel operation of the mode (reverse focus, crop)
-> annotators. Marks come last so privacy never hides them; nothing is cropped except
in ``crop`` mode. Every step is deterministic: same input, same bytes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from sovtp.render.draw import BLACK, Canvas, Rect, draw_tag, measure
from sovtp.render.focus import crop_target, reverse_focus
from sovtp.render.modes import check_layout, get_mode
from sovtp.render.privacy import check_privacy, deidentify
from sovtp.render.view import face_marks
from sovtp.types import Clip, Cues, Frame, ImagePart

GRID_MAX_SIDE = 1536  # a grid's longer side when no max_side is given
GRID_BACKGROUND = (24, 24, 24)


def _resize(image: np.ndarray, scale: float) -> np.ndarray:
    if scale == 1.0:
        return image
    import cv2  # noqa: PLC0415

    h, w = image.shape[:2]
    size = (max(1, int(round(w * scale))), max(1, int(round(h * scale))))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC)


def render_frame(
    frame: Frame,
    cues: Cues,
    mode: str = "sovtp",
    privacy: str = "none",
    scale: float = 1.0,
    reserved: Sequence[Rect] = (),
    focus_region: str = "face",
    crop_scale: float = 1.0,
) -> np.ndarray:
    """One annotated frame (RGB uint8). ``reserved`` rects stay free of tags (a grid's
    frame number). ``focus_region`` ("face" | "person") is what reverse modes keep."""
    vm = get_mode(mode)
    check_privacy(privacy)
    image = _resize(np.ascontiguousarray(frame.image), scale)
    marks = face_marks(cues, frame.position, scale)
    image = deidentify(image, marks, privacy)
    if vm.focus is not None:
        image = reverse_focus(image, marks, vm.focus, focus_region)
    if vm.crop:
        cropped = crop_target(image, marks, crop_scale)
        return cropped if cropped is not None else image
    if not vm.annotators:
        return image if image is not frame.image else image.copy()
    canvas = Canvas.from_array(image, reserved)
    for annotate in vm.annotators:
        annotate(canvas, marks)
    return canvas.to_array()


def _caption(frame: Frame, n: int, mode: str, is_image: bool = False, frame_count: int | None = None) -> str:
    if is_image:  # a still photo has no frame number or time to show
        return f"the photo · {mode}"
    if frame.timestamp is None:  # a frame folder without a frame rate: counted as the template's {{ frames }} are
        of = f" of {frame_count}" if frame_count else ""
        return f"frame {frame.position + 1}/{n} (source frame {frame.index + 1}{of}) · {mode}"
    return f"frame {frame.position + 1}/{n} (video frame {frame.index}, t={frame.timestamp:.2f} s) · {mode}"


def _label_size(cell_h: int) -> int:
    return max(12, min(48, int(round(cell_h * 0.07))))


def _fit(image: np.ndarray, cw: int, ch: int) -> np.ndarray:
    """Resize to fit a cw x ch cell (aspect kept) and centre it on the grid background."""
    h, w = image.shape[:2]
    s = min(cw / w, ch / h)
    img = _resize(image, s) if abs(s - 1.0) > 1e-9 else image
    cell = np.empty((ch, cw, 3), dtype=np.uint8)
    cell[:] = GRID_BACKGROUND
    y, x = (ch - img.shape[0]) // 2, (cw - img.shape[1]) // 2
    cell[y : y + img.shape[0], x : x + img.shape[1]] = img[:ch, :cw]
    return cell


def grid_shape(n: int) -> tuple[int, int]:
    """(rows, cols): near-square, wider than tall (frames are usually landscape)."""
    cols = max(1, math.ceil(math.sqrt(n)))
    rows = max(1, math.ceil(n / cols))
    return rows, cols


def render_grid(
    clip: Clip,
    cues: Cues,
    mode: str,
    privacy: str,
    max_side: int | None,
    **options,
) -> ImagePart:
    """All sampled frames tiled in reading order, each numbered (1..N) in its corner."""
    frames = clip.frames
    n = len(frames)
    rows, cols = grid_shape(n)
    fw, fh = frames[0].width, frames[0].height
    limit = max_side or GRID_MAX_SIDE
    gap = max(4, int(round(limit / 300)))
    scale = min(1.0, (limit - gap * (cols + 1)) / (cols * fw), (limit - gap * (rows + 1)) / (rows * fh))
    cw, ch = max(1, int(round(fw * scale))), max(1, int(round(fh * scale)))
    size = _label_size(ch)
    grid = np.empty((rows * ch + (rows + 1) * gap, cols * cw + (cols + 1) * gap, 3), dtype=np.uint8)
    grid[:] = GRID_BACKGROUND
    tiles = []
    for i, frame in enumerate(frames):
        text = str(i + 1)
        w, h, _, _ = measure(text, size)
        label: Rect = (0, 0, w, h)
        fs = scale * (fw / frame.width) if frame.width else scale
        tile = render_frame(frame, cues, mode, privacy, fs, reserved=[label], **options)
        tiles.append((i, text, label, _fit(tile, cw, ch) if tile.shape[:2] != (ch, cw) else tile))
    for i, _text, _label, tile in tiles:
        r, c = divmod(i, cols)
        y, x = gap + r * (ch + gap), gap + c * (cw + gap)
        grid[y : y + ch, x : x + cw] = tile
    canvas = Canvas.from_array(grid)
    for i, text, label, _ in tiles:
        r, c = divmod(i, cols)
        y, x = gap + r * (ch + gap), gap + c * (cw + gap)
        draw_tag(canvas, (x, y, x + label[2], y + label[3]), text, size, BLACK)
    caption = f"frames 1-{n} tiled {rows}x{cols} in reading order · {mode}"
    return ImagePart(image=canvas.to_array(), caption=caption)


def render_views(
    clip: Clip,
    cues: Cues,
    mode: str = "sovtp",
    layout: str = "frames",
    privacy: str = "none",
    max_side: int | None = None,
    *,
    focus_region: str = "face",
    crop_scale: float = 1.0,
) -> list[ImagePart]:
    """The images for one clip: one per sampled frame (``layout="frames"``) or one
    tiled grid with frame numbers (``"grid"``). ``max_side`` bounds each image's longer
    side (frames are shrunk before marks are drawn, never enlarged)."""
    get_mode(mode)
    check_layout(layout)
    check_privacy(privacy)
    if focus_region not in ("face", "person"):
        raise ValueError(f"unknown focus region {focus_region!r}; use 'face' or 'person'")
    if not clip.frames:
        return []
    options = {"focus_region": focus_region, "crop_scale": crop_scale}
    if layout == "grid" and len(clip.frames) > 1:
        return [render_grid(clip, cues, mode, privacy, max_side, **options)]
    n = len(clip.frames)
    parts = []
    for frame in clip.frames:
        scale = min(1.0, max_side / max(frame.width, frame.height)) if max_side else 1.0
        image = render_frame(frame, cues, mode, privacy, scale, **options)
        if max_side and max(image.shape[:2]) > max_side:  # a crop enlarged past the bound
            image = _resize(image, max_side / max(image.shape[:2]))
        parts.append(ImagePart(image=image, caption=_caption(frame, n, mode, clip.is_image, clip.frame_count)))
    return parts
