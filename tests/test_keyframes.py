"""AU-peak key frames: selection order and the re-indexing of every per-frame series."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sovtp.keyframes import select_au_peak
from sovtp.types import Box, Clip, Cues, FaceAUs, FaceObservation, FaceTrack, Frame, Pose


def make(num: int, activation: list[float]) -> tuple[Clip, Cues]:
    frames = tuple(Frame(position=p, index=10 * p, timestamp=p / 2, image=np.full((4, 4, 3), p, np.uint8)) for p in range(num))
    clip = Clip(path=Path("x.mp4"), content_hash="h", frames=frames, fps=20.0, duration=num / 2, width=4, height=4, frame_count=10 * num)
    box = Box(x1=0, y1=0, x2=2, y2=2)
    track = FaceTrack(id=1, observations=[FaceObservation(position=p, box=box) for p in range(num)])
    aus = FaceAUs(face_id=1, per_frame={p: {12: a, 25: round(1.0 - a, 3)} for p, a in enumerate(activation)})
    pose = Pose(person_id=1, provider="t", keypoints={p: [(float(p), 0.0, 1.0)] for p in range(num)})
    return clip, Cues(faces=[track], target_id=1, aus={1: aus}, poses={1: pose})


def test_picks_peaks_keeps_order_and_renumbers() -> None:
    clip, cues = make(6, [0.1, 0.9, 0.2, 0.8, 0.8, 0.0])
    new_clip, new_cues = select_au_peak(clip, cues, 3)
    assert [f.index for f in new_clip.frames] == [10, 30, 40]  # peaks 1, 3, 4 in temporal order
    assert [f.position for f in new_clip.frames] == [0, 1, 2]
    assert [o.position for o in new_cues.faces[0].observations] == [0, 1, 2]
    assert new_cues.aus[1].per_frame == {0: {12: 0.9, 25: 0.1}, 1: {12: 0.8, 25: 0.2}, 2: {12: 0.8, 25: 0.2}}
    assert sorted(new_cues.poses[1].keypoints) == [0, 1, 2]
    assert new_cues.poses[1].keypoints[0][0][0] == 1.0  # the pose of old frame 1
    assert new_cues.target_id == 1


def test_ties_keep_earlier_frames_and_short_clips_pass_through() -> None:
    clip, cues = make(4, [0.5, 0.5, 0.5, 0.5])
    new_clip, _ = select_au_peak(clip, cues, 2)
    assert [f.index for f in new_clip.frames] == [0, 10]
    same, _ = select_au_peak(clip, cues, 10)
    assert len(same.frames) == 4


def test_without_the_targets_aus_the_frames_spread_over_the_clip_as_uniform_sampling_would() -> None:
    """No face (or no AU cue): every candidate scores -1. Before, the earliest four of the
    sixteen candidates were kept, the clip's first quarter; now they spread like uniform
    sampling. Frames that do score come first, the rest fill evenly."""
    clip, cues = make(16, [0.0] * 16)
    no_face = cues.model_copy(update={"faces": [], "aus": {}, "target_id": None})
    new_clip, _ = select_au_peak(clip, no_face, 4)
    assert [f.index for f in new_clip.frames] == [20, 60, 100, 140]  # candidates 2, 6, 10, 14 of 16
    only_two = cues.model_copy(update={"aus": {1: FaceAUs(face_id=1, per_frame={3: {12: 0.9}, 9: {12: 0.4}})}})
    new_clip, _ = select_au_peak(clip, only_two, 4)
    assert [f.index for f in new_clip.frames] == [30, 40, 90, 120]  # 3 and 9 scored; 4 and 12 spread over the rest


def test_people_are_counted_in_the_frames_kept() -> None:
    """A person seen only in candidates that were not kept is not in the prompt's count
    (before: "5 people detected" for one sent frame in which face 5 is absent)."""
    from sovtp.types import SceneStats

    clip, cues = make(4, [0.1, 0.9, 0.2, 0.3])
    passer_by = FaceTrack(id=2, observations=[FaceObservation(position=0, box=Box(x1=2, y1=2, x2=4, y2=4))])
    scene = SceneStats(num_people=2, motion_energy=0.1, person_motion={1: 0.2, 2: 0.5})
    _, kept = select_au_peak(clip, cues.model_copy(update={"faces": [*cues.faces, passer_by], "scene": scene}), 1)
    assert [f.id for f in kept.faces] == [1]
    assert kept.scene.num_people == 1 and kept.scene.person_motion == {1: 0.2} and kept.scene.motion_energy == 0.1
