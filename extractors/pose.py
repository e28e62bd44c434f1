"""Body pose per person: mediapipe Pose (the bundled complexity-1 model) on a crop around
each tracked face, 33 keypoints per person per frame in full-frame pixels, plus posture
phrases (``sovtp.extractors.posture``).

Why crops: mediapipe Pose is single-person; a crop derived from each face box (widened,
extended downwards over the torso) gives one person per run and ties the pose to the face
ID. Why tracking mode (``static_image_mode=False``) with one graph per person slot: on a
face-anchored crop the body sits at about the same place from frame to frame, so the
graph reuses the previous frame's body region and skips its own person detector (about
25 ms instead of 40 ms per person and frame here). At the start of every clip each graph
is cleared by showing it a blank image (no body: its tracking state is dropped and the
next frame runs the detector), so a clip's output never depends on the clip before it.
This costs ~15 ms, where ``reset()`` costs ~150 ms (it re-initialises the graph).
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
from sovtp.extractors._mp import crop, import_mediapipe_solutions
from sovtp.extractors.posture import posture_phrases

from sovtp.types import Box, Clip, Cues, Pose

if TYPE_CHECKING:
    from sovtp.extract import FaceFeed


def person_box(face: Box, width: int, height: int, widen: float = 4.0, down: float = 7.0) -> Box:
    """The body region of the person whose face is ``face``: ``widen`` face widths wide,
    from half a face height above the face to ``down`` face heights below its top."""
    cx = face.center[0]
    half = face.width * widen / 2
    return Box(x1=cx - half, y1=face.y1 - 0.5 * face.height, x2=cx + half, y2=face.y1 + down * face.height).clipped(width, height)


Keypoints = list[tuple[float, float, float]]
# One person's prefetched graph run: the (position, crop) it was shown, in order, from a
# cleared graph, and the keypoints it gave per position.
# one crop: (frame position, crop region, the other faces' boxes in that frame)
_Crop = tuple[int, Box, tuple[Box, ...]]
_PrefetchedRun = tuple[list[_Crop], dict[int, Keypoints]]
HEAD_SLACK = 0.5  # the pose's nose may lie this many face sizes outside the face box

_BLANK = np.zeros((64, 64, 3), dtype=np.uint8)


def _near(point: tuple[float, float, float], face: Box) -> bool:
    """Whether a pose keypoint lies on (or within ``HEAD_SLACK`` face sizes of) ``face``."""
    x, y = point[0], point[1]
    dx, dy = HEAD_SLACK * face.width, HEAD_SLACK * face.height
    return face.x1 - dx <= x <= face.x2 + dx and face.y1 - dy <= y <= face.y2 + dy


def _blank_faces(pixels: np.ndarray, ox: int, oy: int, others: Sequence[Box], face: Box | None) -> np.ndarray:
    """A copy of the crop with the other faces filled with the crop's mean colour (the
    person's own face box kept intact where they overlap)."""
    out = pixels.copy()
    h, w = out.shape[:2]
    fill = pixels.reshape(-1, pixels.shape[-1]).mean(axis=0).astype(pixels.dtype)

    def region(b: Box) -> tuple[slice, slice]:  # the box in crop coordinates
        x1, y1, x2, y2 = Box(x1=b.x1 - ox, y1=b.y1 - oy, x2=b.x2 - ox, y2=b.y2 - oy).clipped(w, h).as_int()
        return slice(y1, y2), slice(x1, x2)

    for b in others:
        out[region(b)] = fill
    if face is not None:
        out[region(face)] = pixels[region(face)]
    return out


def _clear(graph: Any) -> None:
    """Drop the graph's tracking state (see module docstring)."""
    if graph.process(_BLANK).pose_landmarks is not None:  # never seen; be safe regardless
        graph.reset()


class MediapipePose:
    """33 keypoints per person (face ID) per sampled frame, and posture phrases."""

    name: ClassVar[str] = "pose"
    version: ClassVar[str] = "2"  # 2: the other faces blanked in each crop; a skeleton off its face dropped
    provides: ClassVar[tuple[str, ...]] = ("pose",)
    requires: ClassVar[tuple[str, ...]] = ("faces",)

    def __init__(self, widen: float = 4.0, down: float = 7.0, min_confidence: float = 0.5, max_people: int = 8) -> None:
        self.widen = float(widen)
        self.down = float(down)
        self.min_confidence = float(min_confidence)
        self.max_people = int(max_people)
        self._graphs: list[Any] = []
        # What prefetch() ran for the clip being extracted: (that clip, weakly, so a clip
        # whose pose never ran keeps no frames alive; [(crops, keypoints)])
        self._prefetched: tuple[weakref.ref[Clip], list[_PrefetchedRun]] | None = None

    @property
    def params(self) -> Mapping[str, Any]:
        return {"widen": self.widen, "down": self.down, "min_confidence": self.min_confidence, "max_people": self.max_people}

    def _graph(self, slot: int) -> Any:
        while len(self._graphs) <= slot:
            solutions = import_mediapipe_solutions()
            self._graphs.append(
                solutions.pose.Pose(
                    static_image_mode=False,
                    model_complexity=1,
                    smooth_landmarks=False,
                    enable_segmentation=False,
                    min_detection_confidence=self.min_confidence,
                    min_tracking_confidence=self.min_confidence,
                )
            )
        return self._graphs[slot]

    def keypoints(
        self, graph: Any, image: np.ndarray, region: Box, face: Box | None = None, others: Sequence[Box] = ()
    ) -> list[tuple[float, float, float]] | None:
        """One person's 33 keypoints in the crop ``region`` of ``image``, full-frame pixels.

        The crop around a person in a group holds the neighbours too, and the pose model
        takes whichever body it finds first: a person got a neighbour's skeleton (and its
        posture). So the other faces in the crop are blanked before the graph runs (the
        pose detector starts from a face), and a skeleton whose nose lies away from
        ``face`` is someone else's and dropped."""
        pixels, ox, oy = crop(image, region)
        if pixels.shape[0] < 16 or pixels.shape[1] < 16:
            return None
        if others:
            pixels = _blank_faces(pixels, ox, oy, others, face)
        result = graph.process(pixels)
        if result.pose_landmarks is None:
            # In tracking mode a lost track yields nothing for this frame and detection
            # only on the next call: ask again, so this frame gets the detector's answer.
            result = graph.process(pixels)
        if result.pose_landmarks is None:
            return None
        ch, cw = pixels.shape[:2]
        points = [(round(p.x * cw + ox, 2), round(p.y * ch + oy, 2), round(float(p.visibility), 3)) for p in result.pose_landmarks.landmark]
        if face is not None and not _near(points[0], face):
            _clear(graph)  # latched onto someone else: detect afresh on the next frame
            return None
        return points

    def prefetch(self, clip: Clip, feed: FaceFeed) -> None:
        """Run each person's graph as the faces are found (see :class:`~sovtp.extract.FaceFeed`):
        on a long clip decoded in the background the face detector waits for frames, and
        the pose, the costliest cue, fills that wait. :meth:`extract` reuses a track's
        keypoints only when the track's crops are exactly those run here, from a cleared
        graph, in the same order: the same output as without the prefetch."""
        frames = clip.frames
        runs: dict[int, _PrefetchedRun] = {}
        for position, observations in feed:
            frame = frames[position] if position < len(frames) else None
            if frame is None or frame.position != position:
                return  # not a clip in position order: extract does it all
            for key, obs in observations:
                if key >= self.max_people:
                    continue  # a crowd: extract picks the largest faces and runs those
                graph = self._graph(key)
                if key not in runs:
                    _clear(graph)
                    runs[key] = ([], {})
                region = person_box(obs.box, frame.width, frame.height, self.widen, self.down)
                others = tuple(o.box for k, o in observations if k != key)
                kp = self.keypoints(graph, frame.image, region, obs.box, others)
                runs[key][0].append((position, region, others))
                if kp is not None:
                    runs[key][1][position] = kp
        if feed.complete:
            self._prefetched = (weakref.ref(clip), list(runs.values()))

    def _take_prefetched(self, clip: Clip) -> list[_PrefetchedRun]:
        """What prefetch() ran for ``clip`` (nothing for any other clip), used once."""
        taken, self._prefetched = self._prefetched, None
        return taken[1] if taken is not None and taken[0]() is clip else []

    def extract(self, clip: Clip, cues: Cues) -> Cues:
        frames = {f.position: f for f in clip.frames}
        prefetched = self._take_prefetched(clip)
        # The largest faces get a pose when a crowd exceeds max_people (cost is per person).
        tracks = sorted(cues.faces, key=lambda t: -t.mean_area)[: self.max_people]
        poses: dict[int, Pose] = {}
        boxes_at: dict[int, list[tuple[int, Box]]] = {}  # frame position -> (face id, box) of every face there
        for t in cues.faces:
            for o in t.observations:
                boxes_at.setdefault(o.position, []).append((t.id, o.box))
        for slot, track in enumerate(sorted(tracks, key=lambda t: t.id)):
            faces = {obs.position: obs.box for obs in track.observations if obs.position in frames}
            crops: list[_Crop] = [
                (
                    position,
                    person_box(box, frames[position].width, frames[position].height, self.widen, self.down),
                    tuple(b for fid, b in boxes_at.get(position, []) if fid != track.id),
                )
                for position, box in faces.items()
            ]
            series = next((dict(done) for ran, done in prefetched if ran == crops), None)
            if series is None:
                graph = self._graph(slot)
                _clear(graph)
                series = {}
                for position, region, others in crops:
                    kp = self.keypoints(graph, frames[position].image, region, faces[position], others)
                    if kp is not None:
                        series[position] = kp
            if series:
                poses[track.id] = Pose(person_id=track.id, provider="mediapipe-pose", keypoints=series, posture=posture_phrases(series))
        return Cues(poses=poses)
