"""Video and image ingestion: a file becomes a :class:`~sovtp.types.Clip` of sampled frames.

Decoding is streamed with PyAV: only the chosen frames are ever held, so memory does
not grow with the length of the video. A demux pass (packets only, no decoding) gives
the stream's packet index; from it the frames to keep are named exactly and decoded as
cheaply as the codec allows: a seek to the keyframe before a wanted frame where that
skips decoding, and ``skip_frame=NONREF`` for the frames nobody asked for (no other
frame is predicted from them, so skipping them changes no pixel). Streams without
usable timestamps are decoded plainly: one sequential pass for short clips, a seek per
sample point for long ones. Timestamps come from the stream's presentation times, so
variable frame rate clips get true times, not ``index / fps`` guesses.

Why it matters: decoding is the largest cost of the cue pipeline that is not a model
call (issue 3's overhead bar). Measured here (benchmarks/bench_extractors.py, decode
column, per sampled frame, incl. hashing and opening): 16 frames of a 2.4-s clip about
3.9 ms plainly, 2.6 ms planned; 16 frames spread over a 20-s clip 22-26 ms and 13-17 ms.
The runner also hides part of it: ``background=True`` returns at the first frame and the
face detector, which reads the frames in order, runs while the rest decode.

Every way a file can be unusable becomes a :class:`MediaError` whose message is one
sentence naming the problem and the fix; the runner turns it into an error record and
goes on with the other files.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sovtp.cpus import decode_threads
from sovtp.types import Clip, Frame, file_sha256

VIDEO_EXTENSIONS = frozenset({".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".3gp", ".ts"})
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif"})
MEDIA_EXTENSIONS = VIDEO_EXTENSIONS | IMAGE_EXTENSIONS

# Fallback without a packet index: seeking costs a keyframe decode per sample; below this
# duration one sequential pass is cheaper.
SEEK_ABOVE_SECONDS = 30.0
# Part of every cue-cache key: bump it when the frames read_clip returns for the same file
# and settings change (2: frames named by the packet index, display rotation applied; 3:
# deep greyscale images scaled to 8 bits, frame times from the stream's start), so cached
# cues never describe other frames than the ones they are drawn on.
DECODER_VERSION = 3
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
    background: bool = False,
    threads: int | None = None,
    frame_rate: float | None = None,
) -> Clip:
    """Decode ``path`` into a clip of ``num_frames`` uniformly sampled RGB frames.

    Still images become one-frame clips; a folder is a frame folder
    (:mod:`sovtp.frame_folder`; ``frame_rate`` gives its frames their times).
    ``max_side`` downscales frames whose longer side exceeds it (None keeps the
    original size).

    ``background=True`` returns as soon as the first frame is decoded; the others keep
    decoding in a background thread and ``clip.frames`` is a :class:`FrameFeed` that
    hands each one out as it arrives. A face detector iterating the frames in order then
    runs while the video is still decoding (the runner uses this). Errors after the
    first frame are raised where the frames are read.

    ``threads``: FFmpeg decoding threads (None: :func:`sovtp.cpus.decode_threads`, one
    fewer than this process's cores; the runner passes one fewer than its share).
    """
    path = Path(path)
    if num_frames < 1:
        raise ValueError("num_frames must be at least 1")
    if path.is_dir():
        from sovtp.frame_folder import read_frame_folder

        return read_frame_folder(path, content_hash or content_sha256(path), num_frames, max_side, frame_rate)
    _check_readable(path)
    digest = content_hash or file_sha256(path)
    if path.suffix.lower() in IMAGE_EXTENSIONS:
        return Clip.still(path, load_image(path, max_side), digest)
    return _read_video(path, digest, num_frames, max_side, background, threads)


class FramesChanged(RuntimeError):
    """A background decode had to start over on a plain path (the packet index proved
    wrong mid-way) and its frames differ from those already handed out: whatever was
    computed from them is void. Decode again with ``background=False``."""


class FrameFeed(Sequence[Frame]):
    """A clip's sampled frames while a background thread is still decoding them.

    Indexing or iterating waits for the frames it needs, so code written for a tuple of
    frames works unchanged and the frames' consumer overlaps the decoder. Once complete
    it behaves as the tuple it then holds (and pickles as one)."""

    def __init__(self, live: bool = True) -> None:
        self._live = live  # False: a synchronous decode; nothing is handed out before finish
        self._ready = threading.Condition()
        self._slots: list[Frame | None] = []
        self._expected: int | None = None
        self._complete: tuple[Frame, ...] | None = None
        self._error: BaseException | None = None
        self.source_frames: int | None = None  # the video's frame count, once the packet index names it

    # producer side ------------------------------------------------------------------
    def expect(self, count: int, source_frames: int) -> None:
        with self._ready:
            if self._expected is None:
                self._expected = count
                self._slots = [None] * count
                self.source_frames = source_frames

    def publish(self, frame: Frame) -> None:
        if not self._live:
            return
        with self._ready:
            if self._expected is not None and frame.position < self._expected:
                self._slots[frame.position] = frame
                self._ready.notify_all()

    def finish(self, frames: Sequence[Frame]) -> None:
        """The decode's final frames. If they are not the ones already handed out, every
        reader from now on gets :class:`FramesChanged` (none can have finished: the feed
        was not complete)."""
        frames = tuple(frames)
        with self._ready:
            shown = [f for f in self._slots if f is not None]
            if shown and (
                len(frames) != self._expected
                or any(f.index != frames[f.position].index or not np.array_equal(f.image, frames[f.position].image) for f in shown)
            ):
                self._error = FramesChanged("the video's frames changed while decoding in the background; decode it again")
            else:
                self._complete, self._expected = frames, len(frames)
            self._ready.notify_all()

    def fail(self, error: BaseException) -> None:
        with self._ready:
            self._error = error
            self._ready.notify_all()

    # consumer side ------------------------------------------------------------------
    def _wait(self, ready) -> None:
        with self._ready:
            while self._error is None and self._complete is None and not ready():
                self._ready.wait()
            if self._error is not None:
                raise self._error

    def join(self) -> None:
        """Wait until the decode has ended, complete or not (its errors are its readers')."""
        with self._ready:
            while self._error is None and self._complete is None:
                self._ready.wait()

    def wait(self) -> tuple[Frame, ...]:
        """All frames, once decoded."""
        self._wait(lambda: False)
        assert self._complete is not None
        return self._complete

    def __len__(self) -> int:
        self._wait(lambda: self._expected is not None)
        assert self._expected is not None
        return self._expected

    def __getitem__(self, i):  # type: ignore[override]
        if isinstance(i, slice):
            return self.wait()[i]
        n = len(self)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError("frame position out of range")
        with self._ready:  # read under the lock: a concurrent finish() may be voiding it
            while self._error is None and self._complete is None and self._slots[i] is None:
                self._ready.wait()
            if self._error is not None:
                raise self._error
            frame = self._complete[i] if self._complete is not None else self._slots[i]
        assert frame is not None
        return frame

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]

    def __reduce__(self):
        return tuple, (self.wait(),)

    def __repr__(self) -> str:
        state = "complete" if self._complete is not None else "decoding"
        return f"FrameFeed({state}, {self._expected} frames)"


def content_sha256(path: Path) -> str:
    """The content hash caches and resume key on: a file's sha256, or a frame folder's
    (its frames' names and bytes, :func:`sovtp.frame_folder.frame_folder_sha256`)."""
    if path.is_dir():
        from sovtp.frame_folder import frame_folder_sha256

        return frame_folder_sha256(path)
    return file_sha256(path)


def _eight_bit(im):
    """A 16-bit or 32-bit greyscale image (PIL modes I;16*, I, F: medical and thermal
    cameras, lab exports) scaled to 8 bits. ``convert("RGB")`` clips such values at 255,
    which turns a 16-bit photo almost white."""
    from PIL import Image

    if not (im.mode.startswith("I;16") or im.mode in ("I", "F")):
        return im
    a = np.asarray(im, dtype=np.float64)
    top = float(a.max()) if a.size else 0.0
    if im.mode == "F" and top <= 1.0:
        a = a * 255.0  # a float image in 0..1
    elif im.mode.startswith("I;16") or top > 255:
        # the sensor's bit depth, from the largest value: 10- and 12-bit data stored in
        # 16-bit files (scientific and thermal cameras) would otherwise come out near black
        full = next((2.0**bits - 1 for bits in (10, 12, 14, 16) if top <= 2.0**bits - 1), top)
        a = a * (255.0 / full)
    return Image.fromarray(np.clip(np.rint(a), 0, 255).astype(np.uint8), "L")


def load_image(path: Path, max_side: int | None) -> np.ndarray:
    """One image file as upright RGB uint8, downscaled to ``max_side``."""
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
            im = _eight_bit(im).convert("RGB")
            if (tw, th) != (width, height):
                im = im.resize((tw, th), Image.Resampling.BILINEAR)
            arr = np.asarray(im, dtype=np.uint8).copy()
    except UnidentifiedImageError:
        raise MediaError(f"{path.name}: not a readable image (unknown or corrupt format); re-export it as JPEG or PNG") from None
    except Image.DecompressionBombError:
        raise MediaError(f"{path.name}: image is too large to decode safely; downscale it first") from None
    except OSError as exc:
        raise MediaError(f"{path.name}: image data is truncated or corrupt ({exc}); re-export it") from None
    return arr


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


def _read_video(
    path: Path, digest: str, num_frames: int, max_side: int | None, background: bool = False, threads: int | None = None
) -> Clip:
    container = _open(path)
    handed_over = False
    try:
        stream = container.streams.video[0]
        threads = threads or decode_threads()
        stream.codec_context.thread_count = threads
        stream.thread_type = "AUTO" if threads > 1 else "SLICE"
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
        header_frames = stream.frames or None  # read now: the decoding thread closes the container
        feed = FrameFeed(live=background)

        def decode() -> None:
            try:
                feed.finish(_sample_frames(path, container, stream, num_frames, tw, th, duration, fps, feed))
            except BaseException as exc:  # handed to whoever reads the frames
                feed.fail(exc)
            finally:
                container.close()

        if background:
            threading.Thread(target=decode, name=f"sovtp-decode-{path.name}", daemon=True).start()
            handed_over = True
            try:
                first = feed[0]  # raises what the decode raised before its first frame
            except FramesChanged:
                # The plan gave the feed later frames, then fell back to other frames before
                # frame 0 (a damaged file): nothing was handed out, so nothing is void.
                return _read_video(path, digest, num_frames, max_side, threads=threads)
            frames: Sequence[Frame] = feed
        else:
            handed_over = True
            decode()
            frames = feed.wait()
            first = frames[0]
        th, tw = first.image.shape[:2]  # after any display rotation (portrait phone video)
        found = feed.source_frames
        note = None
        if found and header_frames and fps and found < 0.9 * header_frames:
            # a truncated file: the header promises more than its packets hold, and the
            # frames were sampled over what is there; the prompt must not call 1 s of
            # video "19.68 s long", and the user should hear of it (a download cut short)
            promised = duration if duration else header_frames / fps
            duration = found / fps
            note = (
                f"{path.name}: only {duration:.2f} s of the {promised:.2f} s its header promises decode (the file is cut short), "
                "so its frames were sampled from that part; download or export it again"
            )
        return Clip(
            path=path,
            content_hash=digest,
            frames=frames,
            fps=fps,
            duration=duration,
            width=tw,
            height=th,
            frame_count=feed.source_frames or header_frames,
            is_image=False,
            note=note,
        )
    finally:
        if not handed_over:
            container.close()


def _sample_frames(
    path: Path, container, stream, n: int, tw: int, th: int, duration: float | None, fps: float | None, feed: FrameFeed
) -> list[Frame]:
    """The sampled frames; the indexed path hands each one to ``feed`` as soon as it is
    decoded (and names the video's frame count there)."""
    import av

    try:
        indexed = _sample_indexed(container, stream, n, tw, th, feed)
        if indexed is not None:
            frames = indexed
        else:  # no usable packet index: the plain paths, which need none
            container.seek(0)
            stream.codec_context.flush_buffers()
            if duration and duration > SEEK_ABOVE_SECONDS:
                frames = _sample_by_seeking(container, stream, duration, fps, n, tw, th)
            else:
                frames = _sample_sequential(path, container, stream, n, tw, th)
    except av.error.FFmpegError as exc:
        raise MediaError(f"{path.name}: decoding failed ({exc.strerror or exc}); the file is probably truncated or corrupt") from None
    if not frames:
        raise MediaError(f"{path.name}: no frame could be decoded (truncated or corrupt video); re-encode or replace the file")
    return frames


@dataclass(frozen=True)
class PacketIndex:
    """A video stream's packets in decode order, from one demux pass (no decoding: about
    10 microseconds a packet). It turns "frame *i* in display order" into "the packet
    that carries it and the keyframe it must be decoded from"."""

    pts: tuple[int, ...]
    keyframe: tuple[bool, ...]
    # display-order index of each packet's frame; -1 for a packet the container marks
    # discarded (an edit list's pre-roll: decoded, as others predict from it, never shown)
    display: tuple[int, ...]

    @property
    def total(self) -> int:
        """Frames shown (what a plain decode outputs)."""
        return sum(1 for d in self.display if d >= 0)

    def decode_position(self) -> dict[int, int]:
        """display index -> decode position."""
        return {d: q for q, d in enumerate(self.display) if d >= 0}

    def shown_pts(self) -> list[int]:
        """Presentation times of the shown frames, in display order."""
        return sorted(p for p, d in zip(self.pts, self.display, strict=True) if d >= 0)


def packet_index(container, stream) -> PacketIndex | None:
    """The stream's packet index, or None when the container's timestamps cannot name
    frames in display order: a missing or repeated presentation time (raw streams), or
    times that merely count packets in decode order while the codec reorders frames
    (AVI stores no presentation times; FFmpeg numbers its packets)."""
    if "avi" in (container.format.name or "").split(","):
        return None
    pts: list[int] = []
    key: list[bool] = []
    discard: list[bool] = []
    for packet in container.demux(stream):
        if packet.size == 0:  # the demuxer's end-of-stream marker
            continue
        if packet.pts is None:
            return None
        pts.append(int(packet.pts))
        key.append(bool(packet.is_keyframe))
        discard.append(bool(getattr(packet, "is_discard", False)))
    if not pts or len(set(pts)) != len(pts) or not key[0] or all(discard):
        return None
    if stream.codec_context.has_b_frames and len(pts) > 2 and all(a < b for a, b in zip(pts, pts[1:], strict=False)):
        return None  # a reordering codec whose times never go back: they are decode-order numbers
    shown = sorted(p for p, d in zip(pts, discard, strict=True) if not d)
    rank = {p: i for i, p in enumerate(shown)}
    return PacketIndex(tuple(pts), tuple(key), tuple(-1 if d else rank[p] for p, d in zip(pts, discard, strict=True)))


# Decoding through a seek costs a decoder flush; jump only when it skips more packets.
SEEK_SAVES_AT_LEAST = 4


def decode_plan(index: PacketIndex, wanted: Sequence[int]) -> list[tuple[int, int]]:
    """Runs ``(start, end)`` of decode positions that cover every wanted display index:
    each run starts at a keyframe; a new run (a seek) begins where jumping to the wanted
    frame's own keyframe skips at least ``SEEK_SAVES_AT_LEAST`` packets that continuing
    would decode. A keyframe is a valid start only for frames at or after it in display
    order (open-GOP leading pictures may reference the previous group), so a run that
    takes in a leading picture starts at that picture's keyframe, merging with the runs
    before it where they then overlap."""
    where = index.decode_position()
    keys = [q for q, k in enumerate(index.keyframe) if k]
    runs: list[tuple[int, int]] = []
    for d in sorted(where[i] for i in wanted):
        shown = index.display[d]
        start = max((k for k in keys if k <= d and index.display[k] <= shown), default=0)
        if runs and start <= runs[-1][1] + SEEK_SAVES_AT_LEAST:
            first, last = min(runs[-1][0], start), max(runs[-1][1], d)
            runs.pop()
            while runs and first <= runs[-1][1] + SEEK_SAVES_AT_LEAST:
                first, last = min(runs[-1][0], first), max(runs[-1][1], last)
                runs.pop()
            runs.append((first, last))
        else:
            runs.append((start, d))
    return runs


def _sample_indexed(container, stream, n: int, tw: int, th: int, feed: FrameFeed | None = None) -> list[Frame] | None:
    """Uniform sampling that decodes as little as the codec allows, with pixel-identical
    frames: seek to the keyframe before a wanted frame when that skips decoding (long
    groups of pictures), and tell the decoder to skip non-reference frames nobody asked
    for (``skip_frame=NONREF``: frames no other frame is predicted from, about half of an
    H.264 stream with B-frames, so skipping them changes no other frame).

    None when the stream has no usable index or the plan did not deliver every wanted
    frame; the caller then decodes plainly."""
    import av

    index = packet_index(container, stream)
    if index is None:
        return None
    origin = stream_origin(stream)
    wanted = uniform_positions(index.total, n)
    shown = index.shown_pts()
    wanted_pts = {shown[i]: i for i in wanted}
    position = {i: p for p, i in enumerate(wanted)}
    if feed is not None:
        feed.expect(len(wanted), index.total)
    decode_pos = {p: q for q, p in enumerate(index.pts)}
    ctx = stream.codec_context
    skipping = "DEFAULT"
    got: dict[int, Frame] = {}

    def take(decoded) -> None:
        for frame in decoded:
            i = wanted_pts.get(frame.pts)
            if i is not None and i not in got:
                # from pts: a frame drained with decode(None) carries no time base of its own
                ts = float(frame.pts * stream.time_base) - origin if stream.time_base is not None else 0.0
                got[i] = Frame(position=position[i], index=i, timestamp=ts, image=_to_rgb(frame, tw, th))
                if feed is not None:
                    feed.publish(got[i])

    try:
        for start, end in decode_plan(index, wanted):
            # By presentation time: FFmpeg's demuxers land on the last keyframe at or before it.
            container.seek(index.pts[start], stream=stream, backward=True, any_frame=False)
            ctx.flush_buffers()
            first = True
            for packet in container.demux(stream):
                if packet.size == 0 or packet.pts is None:
                    break
                q = decode_pos.get(int(packet.pts))
                if q is None or (first and (q > start or not index.keyframe[q])):
                    return None  # the seek landed somewhere the plan cannot account for
                first = False
                skip = "DEFAULT" if int(packet.pts) in wanted_pts else "NONREF"
                if skip != skipping:  # the setter is not free; most packets keep the setting
                    ctx.skip_frame = skipping = skip
                take(ctx.decode(packet))
                if q >= end:
                    break
            ctx.skip_frame = skipping = "DEFAULT"
            take(ctx.decode(None))  # drain the frames the decoder still holds back (B-frame reordering)
    except av.error.FFmpegError:
        return None
    finally:
        ctx.skip_frame = "DEFAULT"
    if len(got) != len(wanted):
        return None
    return [got[i] for i in wanted]


# AVColorSpace values OpenCV's I420 converter matches: unspecified, BT470BG, SMPTE170M.
BT601_COLORSPACES = frozenset({2, 5, 6})


def _to_rgb(frame, tw: int, th: int) -> np.ndarray:
    """RGB pixels of a decoded frame at ``tw`` x ``th``.

    The common case (limited-range 4:2:0 at its own size: nearly every H.264 file) goes
    through OpenCV's I420 converter, about 3x faster than swscale on a freshly decoded
    frame here (0.3 against 0.7-1.1 ms at 640x360). OpenCV always applies the BT.601
    limited-range matrix, so only frames tagged BT.601 or untagged (swscale's default
    then is BT.601 too) take it; they differ from swscale by rounding, a few levels at
    most. Anything else (BT.709-tagged HD and phone video, full range, other chroma
    layouts, odd sizes, downscaling) is swscale's job, which follows the tag."""
    if (
        frame.format.name == "yuv420p"
        and frame.color_range != 2  # not full range
        and frame.colorspace in BT601_COLORSPACES
        and (tw, th) == (frame.width, frame.height)
        and tw % 2 == th % 2 == 0
    ):
        import cv2  # noqa: PLC0415  (lazy: `import sovtp` stays light)

        rgb = cv2.cvtColor(frame.to_ndarray(), cv2.COLOR_YUV2RGB_I420)
    else:
        rgb = frame.to_ndarray(width=tw, height=th, format="rgb24")
    return _upright(rgb, frame)


# The eight display matrices of 90-degree turns and mirrors (a, b, c, d signs of the
# 2x2 part, FFmpeg's 16.16 layout) -> (np.rot90 turns, then mirror left-right). Checked
# against FFmpeg's own autorotate rules (fftools: transpose / hflip / vflip) and
# PyAV's set_display_rotation(degrees, hflip, vflip) for all 16 combinations.
_DISPLAY_OPS: dict[tuple[int, int, int, int], tuple[int, bool]] = {
    (1, 0, 0, 1): (0, False),
    (0, -1, 1, 0): (1, False),
    (-1, 0, 0, -1): (2, False),
    (0, 1, -1, 0): (3, False),
    (-1, 0, 0, 1): (0, True),
    (0, -1, -1, 0): (1, True),
    (1, 0, 0, -1): (2, True),
    (0, 1, 1, 0): (3, True),
}


def _display_op(frame) -> tuple[int, bool]:
    """(turns, mirror) that show ``frame`` as players do, from its display matrix."""
    for data in frame.side_data or ():
        if getattr(data.type, "name", "") == "DISPLAYMATRIX":
            m = np.frombuffer(bytes(data), dtype="<i4")
            if m.size >= 5:
                signs = tuple(int(np.sign(round(int(v) / 65536))) for v in (m[0], m[1], m[3], m[4]))
                return _DISPLAY_OPS.get(signs, (0, False))  # an arbitrary angle: left as stored
    return 0, False


def _upright(rgb: np.ndarray, frame) -> np.ndarray:
    """The frame as players show it. Phones store portrait video as landscape pixels
    plus a display matrix (a turn, sometimes a mirror: front cameras); without applying
    it every face lies on its side in the prompt, posture rules read a lying person and
    the vision LLM sees the scene turned."""
    try:
        turns, mirror = _display_op(frame)
    except (AttributeError, TypeError, ValueError):
        return rgb
    if not turns and not mirror:
        return rgb
    out = np.rot90(rgb, turns)
    return np.ascontiguousarray(out[:, ::-1] if mirror else out)


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
    origin = stream_origin(stream)
    import av

    idx = -1
    try:
        for idx, frame in enumerate(container.decode(stream)):
            if idx in wanted_set:
                ts = float(frame.time) - origin if frame.time is not None else 0.0
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


def stream_origin(stream) -> float:
    """Seconds to subtract from a frame's presentation time so that the clip starts at 0:
    the stream's start time when it is later than 0. MPEG-TS captures start at 1.4 s or
    (cut from a broadcast) hours in; the prompt said "at 10.30 s" for a clip's first
    frame. A negative start (an MP4 edit list's priming) is left alone: its first
    shown frame is already at 0."""
    start, base = stream.start_time, stream.time_base
    if start is None or base is None or start <= 0:
        return 0.0
    return float(start * base)


def _resample(frames: list[Frame], n: int) -> list[Frame]:
    picks = uniform_positions(len(frames), n)
    return [Frame(position=i, index=frames[p].index, timestamp=frames[p].timestamp, image=frames[p].image) for i, p in enumerate(picks)]


def _sample_by_seeking(container, stream, duration: float, fps: float | None, n: int, tw: int, th: int) -> list[Frame]:
    """Seek to the centre of each of ``n`` equal segments and take the first frame at or
    after it. Cost is n keyframe seeks, independent of the video's length."""
    frames: list[Frame] = []
    start = float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0
    origin = stream_origin(stream)
    for i in range(n):
        t = start + (i + 0.5) * duration / n
        container.seek(int(t / stream.time_base), stream=stream, backward=True, any_frame=False)
        for frame in container.decode(stream):
            ft = float(frame.time) if frame.time is not None else t
            if ft + 1e-6 >= t:
                index = int(math.floor((ft - start) * fps + 0.5)) if fps else i
                frames.append(Frame(position=len(frames), index=index, timestamp=ft - origin, image=_to_rgb(frame, tw, th)))
                break
    return frames
