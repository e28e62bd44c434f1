"""The overlap rule, the IoU/centre tracker and the target rules, on plain boxes."""

from __future__ import annotations

import pytest

from sovtp.tracking import Detection, apply_overlap_rule, choose_target, track_faces
from sovtp.types import Box, Cues


def det(x: float, y: float, s: float = 100.0, score: float = 0.9) -> Detection:
    return Detection(box=Box(x1=x, y1=y, x2=x + s, y2=y + s), score=score)


def test_overlap_rule_drops_smaller_face_inside_larger() -> None:
    big, inner, other = det(0, 0, 100), det(10, 10, 40), det(300, 0, 60)
    kept = apply_overlap_rule([inner, big, other], eps=0.5)
    assert [d.box for d in kept] == [big.box, other.box]
    # eps=1.0 keeps everything (nothing overlaps more than its whole area)
    assert len(apply_overlap_rule([inner, big, other], eps=1.0)) == 3


def test_ids_stable_and_numbered_by_first_appearance_then_x() -> None:
    frames = {p: [det(400 + 5 * p, 50), det(100 + 5 * p, 60)] for p in range(5)}
    tracks = track_faces(frames)
    assert [t.id for t in tracks] == [1, 2]
    assert tracks[0].observations[0].box.x1 == 100  # left face gets ID 1
    assert all(len(t.observations) == 5 for t in tracks)
    for t in tracks:
        xs = [o.box.x1 for o in t.observations]
        assert xs == sorted(xs)  # each ID follows one face


def test_track_survives_missed_frames_and_sparse_motion() -> None:
    frames = {0: [det(100, 100)], 1: [], 2: [det(160, 110)], 3: [det(200, 120)]}  # gap, then a 60 px jump
    tracks = track_faces(frames, max_missed=3)
    assert len(tracks) == 1 and [o.position for o in tracks[0].observations] == [0, 2, 3]
    assert len(track_faces(frames, max_missed=0)) == 2  # no survival allowed -> a new ID


def test_choose_target_rules() -> None:
    tracks = track_faces({0: [det(0, 0, 200), det(270, 170, 60)], 1: [det(0, 0, 200), det(270, 170, 60)]})
    cues = Cues(faces=tracks)
    assert choose_target(cues, "largest", 600, 400) == 1
    assert choose_target(cues, "center", 600, 400) == 2
    assert choose_target(cues, "2", 600, 400) == 2
    assert choose_target(Cues(), "largest", 600, 400) is None
    with pytest.raises(ValueError, match="not in this clip"):
        choose_target(cues, "7", 600, 400)
    with pytest.raises(ValueError, match="unknown target rule"):
        choose_target(cues, "loudest", 600, 400)


def test_tracks_starting_together_at_one_place_keep_the_ids_they_always_had():
    """Tie-break of the frame-by-frame tracker: two faces starting in the same frame with
    the same centre (nested boxes: py-feat rows, or overlap_eps >= 1) are numbered as the
    batch tracker did, the one that ended first taking the lower ID, so cached cues and
    results from before the tracker went frame by frame keep their IDs."""
    big = Detection(Box(x1=60, y1=60, x2=140, y2=140))
    small = Detection(Box(x1=90, y1=90, x2=110, y2=110))
    tracks = track_faces({0: [small, big], **{p: [small] for p in range(1, 6)}})
    assert [(t.id, t.observations[0].box.width, len(t.observations)) for t in tracks] == [(1, 80, 1), (2, 20, 6)]
