"""Face bookkeeping across the sampled frames of a clip: the SoVTP overlap rule, a small
IoU + centre-distance tracker, and the choice of the target face.

Why our own tracker: the sampled frames of a clip are few and far apart (8-16 frames over
a few seconds), so motion models (Kalman, SORT) have nothing to learn from; what works is
matching each detection to the track whose last box overlaps it most or whose centre is
nearest relative to the face size, and letting a track survive a few frames in which the
detector missed the face (profile view, hand over the face). Plain numpy, deterministic.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from sovtp.types import Box, Cues, FaceObservation, FaceTrack


@dataclass(frozen=True)
class Detection:
    """One detected face in one sampled frame, before tracking."""

    box: Box
    score: float = 1.0


def apply_overlap_rule(detections: Sequence[Detection], eps: float = 0.5) -> list[Detection]:
    """The SoVTP overlap rule: visit faces from largest to smallest and drop a face whose
    intersection over the *smaller* box's area exceeds ``eps`` with a face already kept.

    Why intersection over the smaller area (not IoU): a detector's duplicate of a face is
    often a much smaller box inside the real one, which IoU would keep as a second person
    and the prompt would then number twice.
    """
    kept: list[Detection] = []
    for det in sorted(detections, key=lambda d: (-d.box.area, d.box.x1, d.box.y1)):
        if all(det.box.overlap_of_smaller(k.box) <= eps for k in kept):
            kept.append(det)
    return kept


@dataclass
class _Track:
    observations: list[FaceObservation] = field(default_factory=list)
    missed: int = 0

    @property
    def last(self) -> Box:
        return self.observations[-1].box


def _match_score(track_box: Box, box: Box, iou_min: float, max_center_dist: float) -> float | None:
    """How well ``box`` continues a track ending in ``track_box``; None when it cannot.

    Either enough overlap, or a centre within ``max_center_dist`` face sizes (faces move
    between sparse samples, so overlap alone loses them) with a similar size (a factor of
    2 at most, so a neighbour's face in the background is not taken over)."""
    iou = track_box.iou(box)
    size = max(1.0, math.sqrt(max(track_box.area, 1.0)))
    (ax, ay), (bx, by) = track_box.center, box.center
    dist = math.hypot(ax - bx, ay - by) / size
    ratio = max(track_box.area, 1.0) / max(box.area, 1.0)
    similar = 0.5 <= ratio <= 2.0
    if iou < iou_min and not (dist <= max_center_dist and similar):
        return None
    return iou + max(0.0, 1.0 - dist / max(max_center_dist, 1e-6))


class FaceTracker:
    """The tracker frame by frame: :meth:`update` links one sampled frame's detections
    and says which track each continues (a key: the track's creation order), so work
    that follows a person (the pose graphs) can start before the clip's last frame;
    :meth:`tracks` gives the final, renumbered tracks.

    Greedy matching, best pair first, frame by frame in temporal order; a track not
    matched for more than ``max_missed`` consecutive sampled frames ends."""

    def __init__(self, iou_min: float = 0.3, max_center_dist: float = 0.75, max_missed: int = 3) -> None:
        self.iou_min, self.max_center_dist, self.max_missed = iou_min, max_center_dist, max_missed
        self._active: list[tuple[int, _Track]] = []
        self._created = 0  # tracks started so far: the next track's key
        self._finished: list[_Track] = []  # in the order they ended (IDs tie-break as track_faces did)

    def update(self, position: int, detections: Sequence[Detection]) -> list[tuple[int, FaceObservation]]:
        """Link the detections of the frame at ``position`` (frames in temporal order);
        returns ``(track key, observation)`` for each, in detection order."""
        dets = list(detections)
        pairs: list[tuple[float, int, int]] = []
        for ti, (_, tr) in enumerate(self._active):
            for di, det in enumerate(dets):
                score = _match_score(tr.last, det.box, self.iou_min, self.max_center_dist)
                if score is not None:
                    pairs.append((score, ti, di))
        pairs.sort(key=lambda p: (-p[0], p[1], p[2]))
        used_t: set[int] = set()
        keyed: dict[int, tuple[int, FaceObservation]] = {}
        for _, ti, di in pairs:
            if ti in used_t or di in keyed:
                continue
            used_t.add(ti)
            key, track = self._active[ti]
            obs = FaceObservation(position=position, box=dets[di].box, score=dets[di].score)
            track.observations.append(obs)
            track.missed = 0
            keyed[di] = (key, obs)
        still: list[tuple[int, _Track]] = []
        for ti, (key, tr) in enumerate(self._active):
            if ti not in used_t:
                tr.missed += 1
            if tr.missed <= self.max_missed:
                still.append((key, tr))
            else:
                self._finished.append(tr)
        self._active = still
        for di, det in enumerate(dets):
            if di not in keyed:
                obs = FaceObservation(position=position, box=det.box, score=det.score)
                self._active.append((self._created, _Track([obs])))
                keyed[di] = (self._created, obs)
                self._created += 1
        return [keyed[di] for di in range(len(dets))]

    def tracks(self, keep: Callable[[FaceTrack], bool] | None = None) -> list[FaceTrack]:
        """IDs numbered 1..K by first appearance, then left to right, so they are the
        same on every run; ``keep`` drops tracks before they are numbered."""
        order = sorted(
            [t for t in self._finished + [t for _, t in self._active] if keep is None or keep(t)],
            key=lambda t: (t.observations[0].position, t.observations[0].box.center[0], t.observations[0].box.center[1]),
        )
        return [FaceTrack(id=i + 1, observations=list(t.observations)) for i, t in enumerate(order)]


def track_faces(
    detections: Mapping[int, Sequence[Detection]],
    iou_min: float = 0.3,
    max_center_dist: float = 0.75,
    max_missed: int = 3,
) -> list[FaceTrack]:
    """Link per-frame detections (``{frame position: detections}``) into tracks (see
    :class:`FaceTracker`)."""
    tracker = FaceTracker(iou_min=iou_min, max_center_dist=max_center_dist, max_missed=max_missed)
    for position in sorted(detections):
        tracker.update(position, detections[position])
    return tracker.tracks()


def largest_face(faces: Sequence[FaceTrack], num_frames: int | None = None) -> int | None:
    """The face with the largest summed area over the sampled frames.

    Summed (not mean) area: a large face seen in one frame only loses to the person the
    camera stays on, which is who a clip's label is about."""
    if not faces:
        return None
    best = max(faces, key=lambda f: (sum(o.box.area for o in f.observations), -f.id))
    return best.id


def center_face(faces: Sequence[FaceTrack], width: int, height: int) -> int | None:
    """The face whose mean centre is nearest the frame centre (ties: the larger face)."""
    if not faces:
        return None
    cx, cy = width / 2.0, height / 2.0

    def key(f: FaceTrack) -> tuple[float, float, int]:
        xs = [o.box.center[0] for o in f.observations]
        ys = [o.box.center[1] for o in f.observations]
        d = math.hypot(sum(xs) / len(xs) - cx, sum(ys) / len(ys) - cy)
        return (d, -f.mean_area, f.id)

    return min(faces, key=key).id


def target_rule(rule: str) -> str | int:
    """``"largest"``, ``"center"`` or a face ID from a --target value; ValueError for
    anything else (checked before a run starts, and again per clip)."""
    text = str(rule).strip().lower()
    if text in ("largest", "center", "centre"):
        return "center" if text == "centre" else text
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"unknown target rule {text!r}; use 'largest', 'center' or a face ID number such as '2'") from None


def choose_target(cues: Cues, rule: str, width: int, height: int) -> int | None:
    """The target face ID under ``rule``: ``"largest"`` (summed area over the clip),
    ``"center"`` (nearest the frame centre) or an integer ID as a string.

    None when the clip has no face. An ID that is not in the clip is a user error."""
    wanted = target_rule(rule)
    if wanted == "largest":
        return largest_face(cues.faces)
    if wanted == "center":
        return center_face(cues.faces, width, height)
    if not cues.faces:
        return None
    ids = [f.id for f in cues.faces]
    if wanted not in ids:
        raise ValueError(
            f"face ID {wanted} is not in this clip (its IDs are {', '.join(map(str, ids))}); pick one of them or use 'largest'"
        )
    return wanted
