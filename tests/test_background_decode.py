"""Decoding in the background while the face detector works: ``read_clip(background=True)``
returns at the first frame and hands out the rest as they decode. The frames must be the
very ones a plain read gives, errors must reach whoever reads the frames, and a decode
that changes course mid-way must never leave cues computed from other frames."""

from __future__ import annotations

import pickle
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

import sovtp.video as video
from sovtp.inputs import InputItem
from sovtp.pipeline import Preparer, RunConfig
from sovtp.types import Clip, Cues, Frame, SceneStats
from sovtp.video import FrameFeed, FramesChanged, MediaError, read_clip


@pytest.mark.parametrize("name, n", [("single_face.mp4", 8), ("WolfgangLanger_Pexels.mp4", 6)])
def test_background_read_gives_the_same_clip_as_a_plain_read(media: Path, name: str, n: int):
    plain = read_clip(media / name, num_frames=n)
    live = read_clip(media / name, num_frames=n, background=True)
    assert isinstance(live.frames, FrameFeed) and isinstance(plain.frames, tuple)
    assert (live.width, live.height, live.fps, live.duration, live.frame_count) == (
        plain.width,
        plain.height,
        plain.fps,
        plain.duration,
        plain.frame_count,
    )
    seen = list(live.frames)  # in order, each as soon as it is decoded
    assert [(f.position, f.index, f.timestamp) for f in seen] == [(f.position, f.index, f.timestamp) for f in plain.frames]
    assert all(np.array_equal(a.image, b.image) for a, b in zip(seen, plain.frames, strict=True))
    # complete now: indexing, slicing and pickling behave as the tuple it holds
    assert live.frames[-1].index == plain.frames[-1].index and len(live.frames[1:3]) == 2
    assert isinstance(pickle.loads(pickle.dumps(live.frames)), tuple)


def _frame(position: int, index: int, value: int = 0) -> Frame:
    return Frame(position=position, index=index, timestamp=index / 25, image=np.full((4, 4, 3), value, np.uint8))


def test_a_reader_waits_for_the_frame_it_asks_for():
    feed = FrameFeed()
    feed.expect(3, source_frames=30)
    got: list[int] = []
    reader = threading.Thread(target=lambda: got.extend(f.index for f in feed))
    reader.start()
    for i in range(3):
        time.sleep(0.02)
        assert len(got) == i  # not ahead of the decoder
        feed.publish(_frame(i, 10 * i))
    feed.finish([_frame(i, 10 * i) for i in range(3)])
    reader.join(5)
    assert got == [0, 10, 20] and feed.source_frames == 30


def test_a_decode_error_after_the_first_frame_reaches_the_reader():
    feed = FrameFeed()
    feed.expect(2, source_frames=2)
    feed.publish(_frame(0, 0))
    feed.fail(MediaError("clip.mp4: decoding failed (invalid data); the file is probably truncated or corrupt"))
    with pytest.raises(MediaError, match="decoding failed"):
        list(feed)


def test_frames_that_change_mid_way_void_what_was_read():
    same = FrameFeed()
    same.expect(2, source_frames=9)
    same.publish(_frame(0, 2))
    same.finish([_frame(0, 2), _frame(1, 6)])  # a fallback that lands on the same frames: fine
    assert [f.index for f in same] == [2, 6]

    other = FrameFeed()
    other.expect(2, source_frames=9)
    other.publish(_frame(0, 2))
    other.finish([_frame(0, 2, value=7), _frame(1, 6)])  # same index, other pixels
    with pytest.raises(FramesChanged):
        other[1]


class MeanBrightness:
    """A test extractor (named as such): reads every frame in order, as the face
    detector does, and records each frame's mean value as its 'scene' lighting."""

    name: ClassVar[str] = "test_brightness"
    version: ClassVar[str] = "1"
    provides: ClassVar[tuple[str, ...]] = ("scene",)
    requires: ClassVar[tuple[str, ...]] = ()
    params: Mapping[str, Any] = {}

    def extract(self, clip: Clip, cues: Cues) -> Cues:
        values = [float(f.image.mean()) / 255 for f in clip.frames]
        return Cues(scene=SceneStats(brightness=round(sum(values) / len(values), 6)))


def test_runner_decodes_again_when_the_background_decode_changed_course(media: Path, monkeypatch: pytest.MonkeyPatch):
    """The packet index proves wrong after a frame was handed out (simulated: a black
    first frame, then the plain path): the extractors must run again on the real frames."""
    clip_path = media / "single_face.mp4"
    config = RunConfig(num_frames=4, cache_dir=None)
    expected = Preparer(config, extractors=[MeanBrightness()]).clip_and_cues(clip_path, "h", {})[1].scene

    real = video._sample_indexed
    calls: list[bool] = []

    def wrong_then_plain(container, stream, n, tw, th, feed=None):
        calls.append(feed is not None and feed._live)
        if feed is not None and feed._live:
            feed.expect(n, source_frames=0)
            feed.publish(Frame(position=0, index=0, timestamp=0.0, image=np.zeros((th, tw, 3), np.uint8)))
            return None  # the caller falls back to a plain decode of other pixels
        return real(container, stream, n, tw, th, feed)

    monkeypatch.setattr(video, "_sample_indexed", wrong_then_plain)
    preparer = Preparer(config, extractors=[MeanBrightness()])
    decode_seconds: list[float] = []
    decode = preparer.decode

    def timed_decode(*args, **kwargs):
        decoded = decode(*args, **kwargs)
        decode_seconds.append(decoded.seconds)
        return decoded

    monkeypatch.setattr(preparer, "decode", timed_decode)
    timings: dict[str, float] = {}
    clip, cues = preparer.clip_and_cues(clip_path, "h", timings)
    assert calls == [True, False]  # background first, then the plain re-decode
    assert cues.scene == expected and isinstance(clip.frames, tuple) and clip.frames[0].image.any()
    assert len(decode_seconds) == 2 and timings["decode"] == pytest.approx(sum(decode_seconds))  # the re-decode counts


def test_a_clip_that_breaks_mid_decode_becomes_that_items_error(media: Path, monkeypatch: pytest.MonkeyPatch):
    import av

    def first_frame_then_corrupt(container, stream, n, tw, th, feed=None):
        if feed is not None:
            feed.expect(n, source_frames=100)
            feed.publish(Frame(position=0, index=0, timestamp=0.0, image=np.zeros((th, tw, 3), np.uint8)))
        raise av.error.InvalidDataError(1094995529, "Invalid data found when processing input")

    monkeypatch.setattr(video, "_sample_indexed", first_frame_then_corrupt)
    preparer = Preparer(RunConfig(num_frames=4, cache_dir=None), extractors=[MeanBrightness()])
    p = preparer.prepare(InputItem(path=media / "single_face.mp4"), "key", "h")
    assert p.error_kind == "input" and p.error is not None
    assert p.error.startswith("single_face.mp4: decoding failed") and "corrupt" in p.error


def _damaged_mpeg4(path: Path, dropped: tuple[int, ...]) -> Path:
    """A 100-frame MPEG-4 Part 2 MP4 (frame i a flat grey of level 20 + 2i) whose packets
    for the frames ``dropped`` keep their start code and lose the rest, as in a damaged
    download: the decoder drops those frames, so the packet-index plan misses a wanted
    frame and the plain path that takes over counts the frames differently."""
    import av

    with av.open(str(path), "w") as out:
        stream = out.add_stream("mpeg4", rate=25)
        stream.width, stream.height, stream.pix_fmt = 160, 120, "yuv420p"
        stream.options = {"g": "1000", "bf": "0"}
        for i in range(100):
            frame = av.VideoFrame.from_ndarray(np.full((120, 160, 3), 20 + 2 * i, np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    with av.open(str(path)) as container:
        where = sorted((int(p.pts), p.pos, p.size) for p in container.demux(video=0) if p.size)
    data = bytearray(path.read_bytes())
    for i in dropped:
        _, pos, size = where[i]
        data[pos + 4 : pos + size] = bytes(size - 4)
    path.write_bytes(bytes(data))
    return path


def test_a_background_read_that_changes_course_before_its_first_frame_gives_the_plain_frames(tmp_path: Path):
    """The first wanted frame (12 of 100 for 4 frames) is damaged: the plan hands the later
    ones to the feed, then the plain path takes over with other frames. Nothing had been
    handed out yet, so read_clip must return the plain frames, not raise FramesChanged
    (which the runner only expects from the extractors, and reported as an internal error)."""
    path = _damaged_mpeg4(tmp_path / "damaged.mp4", dropped=(12,))
    plain = read_clip(path, num_frames=4)
    live = read_clip(path, num_frames=4, background=True)
    assert [(f.position, f.index, f.timestamp) for f in live.frames] == [(f.position, f.index, f.timestamp) for f in plain.frames]
    assert all(np.array_equal(a.image, b.image) for a, b in zip(live.frames, plain.frames, strict=True))
    _, cues = Preparer(RunConfig(num_frames=4, cache_dir=None), extractors=[MeanBrightness()]).clip_and_cues(path, "h", {})
    assert cues.scene == MeanBrightness().extract(plain, Cues()).scene


class FirstFrameBrightness(MeanBrightness):
    """A test extractor that reads only the first frame (a thumbnail-style plugin)."""

    name: ClassVar[str] = "test_first_frame"

    def extract(self, clip: Clip, cues: Cues) -> Cues:
        return Cues(scene=SceneStats(brightness=round(float(clip.frames[0].image.mean()) / 255, 6)))


def test_cues_from_frames_a_fallback_voided_never_reach_the_cache(tmp_path: Path):
    """Frames 5 and 37 are damaged: the plan hands out frame 12 as decoded after the
    damage, the plain path's first frame is another picture (FramesChanged). An extractor
    that read only that first frame finished before the change was known; its cue must not
    be cached, or the runner's re-decode (and every later run) would take it from there."""
    path = _damaged_mpeg4(tmp_path / "damaged.mp4", dropped=(5, 37))
    with pytest.raises(FramesChanged):
        list(read_clip(path, num_frames=4, background=True).frames)
    expected = round(float(read_clip(path, num_frames=4).frames[0].image.mean()) / 255, 6)
    config = RunConfig(num_frames=4, cache_dir=tmp_path / "cache")
    for _ in range(2):  # computed, then from the cache
        _, cues = Preparer(config, extractors=[FirstFrameBrightness()]).clip_and_cues(path, "h", {})
        assert cues.scene is not None and cues.scene.brightness == expected


def test_the_runner_decodes_one_clip_at_a_time(media: Path):
    """Preparer.decode returns at the first frame; the runner's decode thread then takes
    the next clip of its lookahead (up to the batch size: 256 with vLLM) straight away.
    Each would decode at once, every one with FFmpeg's own threads, against the face
    detector: the next clip must start only once the previous one has decoded."""
    preparer = Preparer(RunConfig(num_frames=16, cache_dir=None), extractors=[])
    first = preparer.decode(media / "WolfgangLanger_Pexels.mp4", "a")
    second = preparer.decode(media / "single_face.mp4", "b")
    assert isinstance(first.clip, Clip) and isinstance(second.clip, Clip)
    assert "complete" in repr(first.clip.frames)  # decoded to the end before the second began
    assert len(list(second.clip.frames)) == 16
