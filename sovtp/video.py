"""Video and image ingestion: a file becomes a :class:`~sovtp.types.Clip` of sampled frames.

Decoding is streamed with PyAV: only the chosen frames are ever held, so memory does
not grow with the length of the video. Short clips are decoded in one sequential pass
(cheapest for the few hundred frames of DFEW-style clips); long ones seek to each
sample point. Timestamps come from the stream's presentation times, so variable frame
rate clips get true times, not ``index / fps`` guesses.

Every way a file can be unusable becomes a :class:`MediaError` whose message is one
sentence naming the problem and the fix; the runner turns it into an error record and
goes on with the other files.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from sovtp.types import Clip, Frame, file_sha256

VIDEO_EXTENSIONS = frozenset({".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".3gp", ".ts"})
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif"})
MEDIA_EXTENSIONS = VIDEO_EXTENSIONS | IMAGE_EXTENSIONS

# Seeking costs a keyframe decode per sample; below this duration one sequential pass is cheaper.
SEEK_ABOVE_SECONDS = 30.0
# A 8000x8000 photo is 192 MB as RGB; cap the decoded side so one input can't exhaust memory.
DEFAULT_MAX_SIDE = 1280


class MediaError(Exception):
    """A file that cannot be turned into frames; ``str(err)`` is the user-facing sentence."""


def is_media_path(path: Path) -> bool:
    return path.suffix.lower() in MEDIA_EXTENSIONS


def uniform_positions(total: int, n: int) -> list[int]:
    """Indices of ``n`` frames spread evenly over ``total`` (centre of each segment),
    the usual protocol for DFEW/FERV39k-style clip sampling. Fewer frames than ``n``
    gives every frame once."""
    if total <= 0:
        return []
    if total <= n:
        return list(range(total))
    return sorted({min(total - 1, int((i + 0.5) * total / n)) for i in range(n)})


def _target_size(width: int, height: int, max_side: int | None) -> tuple[int, int]:
    if not max_side or max(width, height) <= max_side:
        return width, height
    scale = max_side / max(width, height)
    # even sizes keep every pixel format swscale may pick happy
    return max(2, int(round(width * scale / 2)) * 2), max(2, int(round(height * scale / 2)) * 2)


def _check_readable(path: Path) -> None:
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise MediaError(f"{path.name}: the file does not exist (was it moved or deleted?)") from None
    except OSError as exc:
        raise MediaError(f"{path.name}: cannot be read ({exc.strerror}); check the path") from None
    if size == 0:
        raise MediaError(f"{path.name}: the file is empty (0 bytes); re-copy or re-export it")
    if not os.access(path, os.R_OK):
        raise MediaError(f"{path.name}: permission denied; make the file readable (chmod +r) or run as its owner")


def read_clip(
    path: Path | str,
    num_frames: int = 8,
    max_side: int | None = DEFAULT_MAX_SIDE,
    content_hash: str | None = None,
) -> Clip:
    """Decode ``path`` into a clip of ``num_frames`` uniformly sampled RGB frames.

    Still images become one-frame clips. ``max_side`` downscales frames whose longer
    side exceeds it (None keeps the original size).
    """
    path = Path(path)
    _check_readable(path)
    if num_frames < 1:
        raise ValueError("num_frames must be at least 1")
    digest = content_hash or file_sha256(path)
    if path.suffix.lower() in IMAGE_EXTENSIONS:
        return _read_image(path, digest, max_side)
    return _read_video(path, digest, num_frames, max_side)


def _read_image(path: Path, digest: str, max_side: int | None) -> Clip:
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            tw, th = _target_size(*im.size, max_side)
            if (tw, th) != im.size:
                # JPEG: decode at reduced scale (an 8000x8000 photo: ~60 MB instead of ~800 MB
                # peak). Before exif_transpose, which loads (copies) the full-size pixels.
                im.draft("RGB", (tw, th))
            im = ImageOps.exif_transpose(im)
            width, height = im.size
            tw, th = _target_size(width, height, max_side)
            im = im.convert("RGB")
            if (tw, th) != (width, height):
                im = im.resize((tw, th), Image.Resampling.BILINEAR)
            arr = np.asarray(im, dtype=np.uint8).copy()
    except UnidentifiedImageError:
        raise MediaError(f"{path.name}: not a readable image (unknown or corrupt format); re-export it as JPEG or PNG") from None
    except Image.DecompressionBombError:
        raise MediaError(f"{path.name}: image is too large to decode safely; downscale it first") from None
    except OSError as exc:
        raise MediaError(f"{path.name}: image data is truncated or corrupt ({exc}); re-export it") from None
    return Clip.still(path, arr, digest)


def _open(path: Path):
    import av

    try:
        container = av.open(str(path), metadata_errors="ignore")
    except av.error.InvalidDataError:
        raise MediaError(
            f"{path.name}: not a valid video (invalid data when reading the header); check that it is a complete, uncorrupted file"
        ) from None
    except av.error.FFmpegError as exc:
        raise MediaError(
            f"{path.name}: cannot be opened as a video ({exc.strerror or exc}); check that it is a complete, uncorrupted file"
        ) from None
    if not container.streams.video:
        container.close()
        raise MediaError(f"{path.name}: has no video stream (audio-only or not a video); remove it from the folder")
    return container


def _read_video(path: Path, digest: str, num_frames: int, max_side: int | None) -> Clip:
    import av

    container = _open(path)
    try:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        width, height = stream.codec_context.width, stream.codec_context.height
        fps = float(stream.average_rate) if stream.average_rate else None
        duration = None
        if stream.duration is not None and stream.time_base is not None:
            duration = float(stream.duration * stream.time_base)
        elif container.duration is not None:
            duration = container.duration / 1_000_000
        if not width or not height:
            raise MediaError(f"{path.name}: the video stream has no frame size (corrupt header); re-encode the file")
        tw, th = _target_size(width, height, max_side)
        try:
            if duration and duration > SEEK_ABOVE_SECONDS:
                frames = _sample_by_seeking(container, stream, duration, fps, num_frames, tw, th)
            else:
                frames = _sample_sequential(path, container, stream, num_frames, tw, th)
        except av.error.FFmpegError as exc:
            raise MediaError(f"{path.name}: decoding failed ({exc.strerror or exc}); the file is probably truncated or corrupt") from None
        if not frames:
            raise MediaError(f"{path.name}: no frame could be decoded (truncated or corrupt video); re-encode or replace the file")
        count = stream.frames or None
        return Clip(
            path=path,
            content_hash=digest,
            frames=tuple(frames),
            fps=fps,
            duration=duration,
            width=tw,
            height=th,
            frame_count=count,
            is_image=False,
        )
    finally:
        container.close()


def _to_rgb(frame, tw: int, th: int) -> np.ndarray:
    return frame.to_ndarray(width=tw, height=th, format="rgb24")


def _sample_sequential(path: Path, container, stream, n: int, tw: int, th: int) -> list[Frame]:
    """One pass when the frame count is known; otherwise a counting pass first (no
    pixels kept), then the sampling pass. Memory holds at most ``n`` frames."""
    total = stream.frames or 0
    if total <= 0:
        total = sum(1 for _ in container.decode(stream))
        container.seek(0)
    wanted = uniform_positions(total, n)
    return _collect(container, stream, wanted, tw, th, path)


def _collect(container, stream, wanted: Sequence[int], tw: int, th: int, path: Path) -> list[Frame]:
    wanted_set = set(wanted)
    last = max(wanted) if wanted else -1
    frames: list[Frame] = []
    import av

    idx = -1
    try:
        for idx, frame in enumerate(container.decode(stream)):
            if idx in wanted_set:
                ts = float(frame.time) if frame.time is not None else 0.0
                frames.append(Frame(position=len(frames), index=idx, timestamp=ts, image=_to_rgb(frame, tw, th)))
            if idx >= last:
                break
    except av.error.FFmpegError:
        if not frames:
            raise
        # Truncated tail: keep what decoded; the frame list records the true indices.
    if frames and len(frames) < len(wanted) and idx + 1 < (max(wanted) + 1):
        # The header promised more frames than exist (truncated file): sample again, evenly
        # over the idx + 1 frames that do decode, instead of keeping only the first few.
        if idx + 1 > len(frames):
            try:
                container.seek(0)
                again = _collect(container, stream, uniform_positions(idx + 1, len(wanted)), tw, th, path)
                if len(again) > len(frames):
                    return again
            except av.error.FFmpegError:
                pass
        return _resample(frames, len(wanted))
    return frames


def _resample(frames: list[Frame], n: int) -> list[Frame]:
    picks = uniform_positions(len(frames), n)
    return [Frame(position=i, index=frames[p].index, timestamp=frames[p].timestamp, image=frames[p].image) for i, p in enumerate(picks)]


def _sample_by_seeking(container, stream, duration: float, fps: float | None, n: int, tw: int, th: int) -> list[Frame]:
    """Seek to the centre of each of ``n`` equal segments and take the first frame at or
    after it. Cost is n keyframe seeks, independent of the video's length."""
    frames: list[Frame] = []
    start = float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0
    for i in range(n):
        t = start + (i + 0.5) * duration / n
        container.seek(int(t / stream.time_base), stream=stream, backward=True, any_frame=False)
        for frame in container.decode(stream):
            ft = float(frame.time) if frame.time is not None else t
            if ft + 1e-6 >= t:
                index = int(math.floor((ft - start) * fps + 0.5)) if fps else i
                frames.append(Frame(position=len(frames), index=index, timestamp=ft, image=_to_rgb(frame, tw, th)))
                break
    return frames
