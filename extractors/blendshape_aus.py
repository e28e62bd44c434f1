"""Learned AUs from MediaPipe's face landmarker blendshapes: provider
``"mediapipe-blendshapes"``, for users who have Google's ``face_landmarker.task``.

Why a third AU provider: py-feat's learned models need hub weights and torch; the
geometric estimator is hand-built. MediaPipe's face landmarker bundle (3.7 MB,
Apache-2.0, ``face_landmarker/float16/1``) carries a small learned model that scores the
52 ARKit blendshapes from the face mesh (with the landmarker's own detector and mesh,
about 8 ms a face on a 2-core CPU), and needs nothing beyond the mediapipe sovtp already
pins. The 0.10.21 wheel does not ship the bundle, so it is a file the user downloads
once::

    https://storage.googleapis.com/mediapipe-models/face_landmarker/face_landmarker/float16/1/face_landmarker.task

and names with ``--face-landmarker PATH``, which runs ``blendshapes`` in place of ``aus``
(Python API: list ``"blendshapes"`` in ``extractors`` and pass ``extractor_params=
{"blendshapes": {"model": PATH}}``). A missing or foreign file is said in one sentence
before the run starts (``preflight``), and the run goes on without these AUs.

How a face is scored: the landmarker runs on a square crop around each tracked face box
in each sampled frame (like the mesh: its own detector is short-range, so a whole group
frame would lose the small faces), and the face whose landmarks centre nearest the box
is kept; a result centred outside the box belongs to a neighbour and is dropped.

Blendshapes are not FACS action units. :data:`BLENDSHAPE_AUS` maps each AU to the
blendshapes that describe the same movement (after Apple's ARKit blendshape definitions
and the usual ARKit-to-FACS correspondence); a two-sided AU takes the stronger side,
because FACS scores a one-sided action as present, except AU43 (eyes closed), which
takes the weaker: one shut eye is a wink. The cue text names the provider, so
the prompt says these are a learned model's blendshape scores, not coded AUs. AU25 (lips
part) has no blendshape of its own and is left out rather than guessed. The clip summary
is the 90th percentile over the frames, as for the other providers.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from sovtp.extractors._mp import crop, square_crop_box

from sovtp.extract import ExtractorUnavailable
from sovtp.types import AU, FACS_AU_NAMES, Box, Clip, Cues, FaceAUs

PROVIDER = "mediapipe-blendshapes"
MODEL_URL = "https://storage.googleapis.com/mediapipe-models/face_landmarker/face_landmarker/float16/1/face_landmarker.task"

# AU -> the blendshapes of that movement ("max": the stronger side; "min": both sides).
BLENDSHAPE_AUS: dict[int, tuple[str, tuple[str, ...]]] = {
    1: ("max", ("browInnerUp",)),
    2: ("max", ("browOuterUpLeft", "browOuterUpRight")),
    4: ("max", ("browDownLeft", "browDownRight")),
    5: ("max", ("eyeWideLeft", "eyeWideRight")),
    6: ("max", ("cheekSquintLeft", "cheekSquintRight")),
    7: ("max", ("eyeSquintLeft", "eyeSquintRight")),
    9: ("max", ("noseSneerLeft", "noseSneerRight")),
    10: ("max", ("mouthUpperUpLeft", "mouthUpperUpRight")),
    12: ("max", ("mouthSmileLeft", "mouthSmileRight")),
    14: ("max", ("mouthDimpleLeft", "mouthDimpleRight")),
    15: ("max", ("mouthFrownLeft", "mouthFrownRight")),
    16: ("max", ("mouthLowerDownLeft", "mouthLowerDownRight")),
    17: ("max", ("mouthShrugLower",)),
    18: ("max", ("mouthPucker",)),
    20: ("max", ("mouthStretchLeft", "mouthStretchRight")),
    22: ("max", ("mouthFunnel",)),
    24: ("max", ("mouthPressLeft", "mouthPressRight")),
    26: ("max", ("jawOpen",)),
    28: ("max", ("mouthRollLower", "mouthRollUpper")),
    # Eyes closed is both eyes; one closed eye (or a squint scored as a partial blink on
    # one side) is not AU43.
    43: ("min", ("eyeBlinkLeft", "eyeBlinkRight")),
}


def blendshapes_to_aus(scores: Mapping[str, float]) -> dict[int, float]:
    """AU intensities (0..1) from one face's blendshape scores; an AU whose blendshapes
    are all missing is left out."""
    out: dict[int, float] = {}
    for number, (how, names) in BLENDSHAPE_AUS.items():
        values = [float(scores[n]) for n in names if n in scores]
        if values:
            value = max(values) if how == "max" else min(values)
            out[number] = round(float(np.clip(value, 0.0, 1.0)), 4)
    return out


class BlendshapeAUs:
    """AUs of every tracked face in every sampled frame from MediaPipe's blendshape model."""

    name: ClassVar[str] = "blendshapes"
    version: ClassVar[str] = "1"
    provides: ClassVar[tuple[str, ...]] = ("aus",)
    requires: ClassVar[tuple[str, ...]] = ("faces",)
    file_params: ClassVar[tuple[str, ...]] = ("model",)  # run keys hold the model's content, not its path

    def __init__(self, model: str | None = None, crop_scale: float = 1.6, min_confidence: float = 0.5, percentile: float = 90.0) -> None:
        self.model = str(Path(model).expanduser()) if model else None
        self.crop_scale = float(crop_scale)
        self.min_confidence = float(min_confidence)
        self.percentile = float(percentile)
        self._bundle: tuple[bytes, str] | None = None  # the model file's bytes and SHA-256, read once
        self._landmarker: Any = None

    def _read_bundle(self) -> tuple[bytes, str] | None:
        """The bundle's bytes and SHA-256, read once per instance (None while there is no
        such file). The cache key and the model both come from these bytes: a file
        replaced or rewritten during a run can neither put the old model's AUs under the
        new file's key nor pull pages from under a memory-mapped model."""
        if self._bundle is None and self.model and Path(self.model).is_file():
            try:
                data = Path(self.model).read_bytes()
            except OSError:
                return None
            self._bundle = (data, hashlib.sha256(data).hexdigest())
        return self._bundle

    @property
    def params(self) -> Mapping[str, Any]:
        bundle = self._read_bundle()
        return {
            # the model's content, not its path: a copy elsewhere keys the same, another
            # bundle saved under the same name does not
            "model_sha256": bundle[1] if bundle else None,
            "crop_scale": self.crop_scale,
            "min_confidence": self.min_confidence,
            "percentile": self.percentile,
        }

    def preflight(self) -> None:
        """Load the model before a run starts (the runner calls this once), so a missing
        or foreign file is said once, at the start, not only in every record."""
        self._load()

    def _load(self) -> Any:
        if self._landmarker is not None:
            return self._landmarker
        bundle = self._read_bundle()
        if bundle is None:
            where = f"at {self.model!r}" if self.model else "(no file given)"
            raise ExtractorUnavailable(
                f"MediaPipe's face_landmarker.task was not found {where}; download it from {MODEL_URL} "
                "and pass --face-landmarker PATH, or use the geometric 'aus' extractor"
            )
        try:
            from mediapipe.tasks.python import BaseOptions, vision  # noqa: PLC0415
        except Exception as exc:
            raise ExtractorUnavailable(
                f"mediapipe's tasks API could not be imported ({type(exc).__name__}); install it with `pip install mediapipe==0.10.21` (needs numpy<2, protobuf<5)"
            ) from None
        options = vision.FaceLandmarkerOptions(
            base_options=BaseOptions(model_asset_buffer=bundle[0]),
            running_mode=vision.RunningMode.IMAGE,
            # Two at most: a neighbour can enter the crop; the one nearest the box is kept.
            num_faces=2,
            min_face_detection_confidence=self.min_confidence,
            output_face_blendshapes=True,
        )
        try:
            self._landmarker = vision.FaceLandmarker.create_from_options(options)
        except Exception as exc:
            raise ExtractorUnavailable(
                f"{self.model} is not a MediaPipe face landmarker bundle with blendshapes ({type(exc).__name__}); "
                f"download face_landmarker.task again from {MODEL_URL}, or use the geometric 'aus' extractor"
            ) from None
        return self._landmarker

    def scores(self, image: np.ndarray, box: Box) -> dict[str, float] | None:
        """Blendshape scores of the face in ``box`` of the RGB frame ``image`` (None when
        the landmarker finds no face there)."""
        import mediapipe as mp  # noqa: PLC0415

        height, width = image.shape[:2]
        region = square_crop_box(box, self.crop_scale, width, height)
        pixels, ox, oy = crop(image, region)
        if pixels.shape[0] < 8 or pixels.shape[1] < 8:
            return None
        result = self._load().detect(mp.Image(image_format=mp.ImageFormat.SRGB, data=pixels))
        ch, cw = pixels.shape[:2]
        cx, cy = box.center
        best: tuple[float, int, float, float] | None = None
        for index, (marks, shapes) in enumerate(zip(result.face_landmarks, result.face_blendshapes, strict=False)):
            if not marks or not shapes:
                continue
            mx = float(np.mean([p.x for p in marks])) * cw + ox
            my = float(np.mean([p.y for p in marks])) * ch + oy
            dist = (mx - cx) ** 2 + (my - cy) ** 2
            if best is None or dist < best[0]:
                best = (dist, index, mx, my)
        if best is None:
            return None
        _, index, mx, my = best
        if not (box.x1 <= mx <= box.x2 and box.y1 <= my <= box.y2):
            return None  # centred on someone else
        return {c.category_name: float(c.score) for c in result.face_blendshapes[index]}

    def extract(self, clip: Clip, cues: Cues) -> Cues:
        self._load()
        frames = {f.position: f for f in clip.frames}
        out: dict[int, FaceAUs] = {}
        for track in cues.faces:
            per_frame: dict[int, dict[int, float]] = {}
            for obs in track.observations:
                frame = frames.get(obs.position)
                shapes = self.scores(frame.image, obs.box) if frame is not None else None
                if shapes:
                    per_frame[obs.position] = blendshapes_to_aus(shapes)
            if not per_frame:
                continue  # no landmarker face: the face keeps whatever AUs it had
            summary = []
            for number in sorted({n for values in per_frame.values() for n in values}):
                series = [values[number] for values in per_frame.values() if number in values]
                peak = float(np.percentile(series, self.percentile)) if len(series) > 1 else series[0]
                summary.append(AU(number=number, name=FACS_AU_NAMES[number], intensity=round(peak, 4), provider=PROVIDER))
            out[track.id] = FaceAUs(face_id=track.id, summary=summary, per_frame=per_frame)
        return Cues(aus=out)
