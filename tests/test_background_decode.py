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
    clip, cues = Preparer(config, extractors=[MeanBrightness()]).clip_and_cues(clip_path, "h", {})
    assert calls == [True, False]  # background first, then the plain re-decode
    assert cues.scene == expected and isinstance(clip.frames, tuple) and clip.frames[0].image.any()


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
