"""The 478-point mediapipe face mesh (468 points + 10 iris points), computed per face crop.

Why per crop: the mesh graph run on a whole frame returns one face (its own detector is
short-range and it stops at ``max_num_faces``); run on a square crop around each tracked
face box it meshes every face, small ones included, and the IDs come from our tracker.
Coordinates are mapped back to full-frame pixels; z is scaled like x (the mesh's own
relative depth, in the same units as the crop width).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
from sovtp.extractors._mp import crop, import_mediapipe_solutions, landmark_array, square_crop_box

from sovtp.types import Box, Clip, Cues, FaceObservation, FaceTrack


class MediapipeMesh:
    """Fills ``FaceObservation.landmarks`` for every tracked face in every sampled frame
    (None where the mesh found no face in the crop, e.g. a profile or a covered face)."""

    name: ClassVar[str] = "landmarks"
    version: ClassVar[str] = "1"
    provides: ClassVar[tuple[str, ...]] = ("landmarks",)
    requires: ClassVar[tuple[str, ...]] = ("faces",)

    def __init__(self, crop_scale: float = 1.6, min_confidence: float = 0.5, refine: bool = True) -> None:
        self.crop_scale = float(crop_scale)
        self.min_confidence = float(min_confidence)
        self.refine = bool(refine)
        self._mesh: Any = None

    @property
    def params(self) -> Mapping[str, Any]:
        return {"crop_scale": self.crop_scale, "min_confidence": self.min_confidence, "refine": self.refine}

    def _graph(self) -> Any:
        if self._mesh is None:
            solutions = import_mediapipe_solutions()
            # Two faces at most: a neighbour's face can enter the crop; we keep the mesh
            # whose centre lies nearest the tracked box, never the neighbour's.
            self._mesh = solutions.face_mesh.FaceMesh(
                static_image_mode=True, max_num_faces=2, refine_landmarks=self.refine, min_detection_confidence=self.min_confidence
            )
        return self._mesh

    def mesh(self, image: np.ndarray, box: Box) -> list[tuple[float, float, float]] | None:
        """The mesh of the face in ``box`` of the RGB frame ``image``, full-frame pixels."""
        height, width = image.shape[:2]
        region = square_crop_box(box, self.crop_scale, width, height)
        pixels, ox, oy = crop(image, region)
        if pixels.shape[0] < 8 or pixels.shape[1] < 8:
            return None
        result = self._graph().process(pixels)
        if not result.multi_face_landmarks:
            return None
        ch, cw = pixels.shape[:2]
        cx, cy = box.center
        best: np.ndarray | None = None
        best_dist = float("inf")
        for face in result.multi_face_landmarks:
            pts = landmark_array(face)
            pts[:, 0] = pts[:, 0] * cw + ox
            pts[:, 1] = pts[:, 1] * ch + oy
            pts[:, 2] = pts[:, 2] * cw
            mx, my = pts[:, 0].mean(), pts[:, 1].mean()
            dist = (mx - cx) ** 2 + (my - cy) ** 2
            if dist < best_dist:
                best, best_dist = pts, dist
        assert best is not None
        # A mesh centred outside the tracked box belongs to someone else.
        mx, my = best[:, 0].mean(), best[:, 1].mean()
        if not (box.x1 <= mx <= box.x2 and box.y1 <= my <= box.y2):
            return None
        return [tuple(p) for p in np.round(best, 2).tolist()]

    def extract(self, clip: Clip, cues: Cues) -> Cues:
        frames = {f.position: f for f in clip.frames}
        tracks: list[FaceTrack] = []
        for track in cues.faces:
            observations: list[FaceObservation] = []
            for obs in track.observations:
                frame = frames.get(obs.position)
                marks = self.mesh(frame.image, obs.box) if frame is not None else None
                observations.append(obs.model_copy(update={"landmarks": marks}))
            tracks.append(track.model_copy(update={"observations": observations}))
        # Cues.merged replaces faces wholesale, so every track is returned, meshed or not.
        return Cues(faces=tracks)
