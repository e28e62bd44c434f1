"""One frame's faces in canvas coordinates: the single type every annotator reads.

Like roboflow supervision's ``Detections``, annotators never look at :class:`Cues`
directly; they get a tuple of :class:`FaceMark` already scaled to the canvas, which
keeps each annotator a few lines long and lets modes compose freely.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sovtp.types import Box, Cues, FaceTrack

# A sparse, readable subset of the 478-point mediapipe face mesh: brows, eye corners and
# lids, irises, nose bridge/tip/wings, lip corners and mid-lips, and every third point of
# the face oval. Dense meshes hide the face they describe; these points are the ones a
# reader (or a model) uses to judge brow raise, eye opening, smile and jaw drop.
MESH_SUBSET: tuple[int, ...] = (
    # brows (right, left)
    70, 63, 105, 66, 107, 336, 296, 334, 293, 300,
    # eyes: corners, upper and lower lids
    33, 160, 158, 133, 153, 144, 362, 385, 387, 263, 373, 380,
    # nose bridge, tip, wings
    168, 6, 1, 98, 327,
    # mouth: corners, outer and inner mid-lips, lip sides
    61, 291, 0, 17, 13, 14, 39, 269, 181, 405,
    # face oval, every third point
    10, 297, 284, 389, 454, 361, 397, 379, 400, 152, 176, 150, 172, 132, 234, 162, 54, 109,
)  # fmt: skip
IRIS_CENTRES: tuple[int, ...] = (468, 473)

AU_TAG_COUNT = 3
AU_TAG_THRESHOLD = 0.25


@dataclass(frozen=True)
class FaceMark:
    """A face as drawn on one canvas. ``observed`` is False when the face was not
    detected in this frame and ``box`` is interpolated from neighbouring frames (or the
    nearest one outside the track's span): such faces are blurred by privacy modes and
    kept in focus by reverse modes, but never marked (a mark shows what was measured)."""

    id: int
    box: Box
    is_target: bool
    observed: bool
    landmarks: np.ndarray | None = None  # (N, 2) canvas pixels, the readable subset
    aus: tuple[str, ...] = ()  # short tags, e.g. ("AU12", "AU6")
    body: Box | None = None  # from pose keypoints, canvas pixels


def _scale_box(box: Box, s: float) -> Box:
    return Box(x1=box.x1 * s, y1=box.y1 * s, x2=box.x2 * s, y2=box.y2 * s)


def _interpolated_box(track: FaceTrack, position: int) -> Box | None:
    """The box at ``position`` linearly interpolated between the nearest observations
    before and after; None outside the track's span (the person may have left)."""
    before = [o for o in track.observations if o.position < position]
    after = [o for o in track.observations if o.position > position]
    if not before or not after:
        return None
    a = max(before, key=lambda o: o.position)
    b = min(after, key=lambda o: o.position)
    t = (position - a.position) / (b.position - a.position)
    return Box(
        x1=a.box.x1 + t * (b.box.x1 - a.box.x1),
        y1=a.box.y1 + t * (b.box.y1 - a.box.y1),
        x2=a.box.x2 + t * (b.box.x2 - a.box.x2),
        y2=a.box.y2 + t * (b.box.y2 - a.box.y2),
    )


def nearest_box(track: FaceTrack, position: int) -> Box | None:
    """The observed box nearest in time (ties: the earlier frame) — for crops and focus,
    which need the target in every frame even where the detector missed it."""
    if not track.observations:
        return None
    return min(track.observations, key=lambda o: (abs(o.position - position), o.position)).box


def landmark_subset(points: np.ndarray) -> np.ndarray:
    """The readable subset of a 468/478-point mesh; other landmark sets are kept whole."""
    if len(points) >= 468:
        idx = list(MESH_SUBSET) + ([i for i in IRIS_CENTRES if i < len(points)])
        return points[idx, :2]
    return points[:, :2]


def au_tags(cues: Cues, face_id: int, position: int, k: int = AU_TAG_COUNT, threshold: float = AU_TAG_THRESHOLD) -> tuple[str, ...]:
    """The face's strongest AUs in this frame (clip summary when no per-frame reading),
    strongest first, ties by AU number, so tags are stable."""
    fa = cues.aus.get(face_id)
    if fa is None:
        return ()
    frame = fa.per_frame.get(position)
    if frame:
        readings = [(int(n), float(v)) for n, v in frame.items()]
    else:
        readings = [(a.number, a.intensity) for a in fa.summary]
    ranked = sorted((r for r in readings if r[1] >= threshold), key=lambda r: (-r[1], r[0]))
    return tuple(f"AU{n}" for n, _ in ranked[:k])


def _body_box(cues: Cues, face_id: int, position: int, s: float) -> Box | None:
    pose = cues.poses.get(face_id)
    if pose is None:
        return None
    pts = [(x, y) for x, y, v in pose.keypoints.get(position, []) if v >= 0.5]
    if len(pts) < 3:
        return None
    arr = np.asarray(pts, dtype=np.float64) * s
    return Box(x1=float(arr[:, 0].min()), y1=float(arr[:, 1].min()), x2=float(arr[:, 0].max()), y2=float(arr[:, 1].max()))


def face_marks(cues: Cues, position: int, scale: float = 1.0) -> tuple[FaceMark, ...]:
    """Every face at sampled-frame ``position``, scaled by ``scale``, sorted by ID."""
    marks: list[FaceMark] = []
    for track in sorted(cues.faces, key=lambda t: t.id):
        obs = track.at(position)
        if obs is not None:
            lm = obs.landmark_array()
            marks.append(
                FaceMark(
                    id=track.id,
                    box=_scale_box(obs.box, scale),
                    is_target=track.id == cues.target_id,
                    observed=True,
                    landmarks=None if lm is None or len(lm) == 0 else landmark_subset(lm) * scale,
                    aus=au_tags(cues, track.id, position),
                    body=_body_box(cues, track.id, position, scale),
                )
            )
            continue
        # Missed here: interpolate inside the track's span, else the nearest observed box
        # (privacy must over-hide rather than let a face the detector missed slip out).
        box = _interpolated_box(track, position) or nearest_box(track, position)
        if box is not None:
            marks.append(FaceMark(id=track.id, box=_scale_box(box, scale), is_target=track.id == cues.target_id, observed=False))
    return tuple(marks)
