"""Learned AUs and emotions from py-feat (its ``Detector`` AU and emotion models), used
when py-feat and its weights are present: provider ``"py-feat"``.

py-feat downloads its weights from a model hub on first use; where that is unreachable
(or py-feat is not installed) the extractor raises ``ExtractorUnavailable`` with one
sentence naming the fix, and the run goes on with the offline geometric AUs.

The conversion of py-feat's output table (a ``Fex`` DataFrame, one row per face per
frame) into cues is the pure function :func:`fex_to_cues`, tested on py-feat's own
detector output ``Feat_Test.csv``.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from sovtp.extract import ExtractorUnavailable
from sovtp.tracking import Detection, track_faces
from sovtp.types import AU, FACS_AU_NAMES, Box, Clip, Cues, ExpressionEstimate, FaceAUs, FaceTrack

# py-feat emotion columns -> DFEW-7 vocabulary.
EMOTIONS = {
    "anger": "angry",
    "disgust": "disgust",
    "fear": "fear",
    "happiness": "happy",
    "sadness": "sad",
    "surprise": "surprise",
    "neutral": "neutral",
}
_AU_COLUMN = re.compile(r"^AU(\d+)$")
NOT_INSTALLED = "py-feat is not installed; install it with `pip install 'sovtp[pyfeat]'` or use the offline geometric 'aus' extractor"


def _f(value: Any) -> float | None:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return None if np.isnan(out) else out


def _rows(fex: Any) -> list[Mapping[str, Any]]:
    """Rows of a Fex/DataFrame (``to_dict('records')``) or any iterable of mappings."""
    if hasattr(fex, "to_dict"):
        return list(fex.to_dict("records"))
    return list(fex)


def fex_to_cues(
    fex: Any,
    faces: Sequence[FaceTrack] | None = None,
    positions: Mapping[int, int] | None = None,
    min_iou: float = 0.3,
    percentile: float = 90.0,
) -> Cues:
    """Cues from a py-feat result table.

    ``fex``: a Fex/DataFrame or an iterable of row mappings (e.g. ``csv.DictReader``).
    ``positions`` maps py-feat's ``frame`` value to our sampled-frame position (identity
    when None). With ``faces`` (our tracks), each row is matched to the track whose box at
    that position overlaps it most (IoU >= ``min_iou``; unmatched rows are dropped); without
    them, tracks are built from py-feat's own boxes and returned in ``Cues.faces``.
    AUs become ``AU(number, name, intensity, provider="py-feat")``; emotions an
    ``ExpressionEstimate`` (mean probabilities over frames, DFEW-7 labels).
    """
    rows = _rows(fex)
    parsed: list[tuple[int, Box, float, dict[int, float], dict[str, float]]] = []
    for row in rows:
        frame = int(_f(row.get("frame")) or 0)
        position = positions.get(frame, frame) if positions else frame
        x, y, w, h = (_f(row.get(k)) for k in ("FaceRectX", "FaceRectY", "FaceRectWidth", "FaceRectHeight"))
        if None in (x, y, w, h):
            continue
        box = Box(x1=x, y1=y, x2=x + w, y2=y + h)
        score = _f(row.get("FaceScore")) or 1.0
        aus: dict[int, float] = {}
        emotions: dict[str, float] = {}
        for key, value in row.items():
            m = _AU_COLUMN.match(str(key))
            v = _f(value)
            if m and v is not None:
                aus[int(m.group(1))] = float(np.clip(v, 0.0, 1.0))
            elif key in EMOTIONS and v is not None:
                emotions[EMOTIONS[key]] = v
        parsed.append((position, box, score, aus, emotions))

    out_faces: list[FaceTrack] = []
    if faces is None:
        per_frame: dict[int, list[Detection]] = {}
        for position, box, score, _, _ in parsed:
            per_frame.setdefault(position, []).append(Detection(box=box, score=score))
        out_faces = track_faces(per_frame)
        faces = out_faces

    by_face: dict[int, list[tuple[int, dict[int, float], dict[str, float]]]] = {}
    for position, box, _, aus, emotions in parsed:
        best, best_iou = None, min_iou
        for track in faces:
            obs = track.at(position)
            if obs is not None and obs.box.iou(box) >= best_iou:
                best, best_iou = track.id, obs.box.iou(box)
        if best is not None:
            by_face.setdefault(best, []).append((position, aus, emotions))

    cue_aus: dict[int, FaceAUs] = {}
    expressions: dict[int, ExpressionEstimate] = {}
    for fid, items in sorted(by_face.items()):
        per = {pos: {a: round(v, 4) for a, v in aus.items()} for pos, aus, _ in items}
        numbers = sorted({a for _, aus, _ in items for a in aus})
        summary = []
        for a in numbers:
            values = [aus[a] for _, aus, _ in items if a in aus]
            peak = float(np.percentile(values, percentile)) if len(values) > 1 else values[0]
            summary.append(AU(number=a, name=FACS_AU_NAMES.get(a, f"AU{a}"), intensity=round(peak, 4), provider="py-feat"))
        cue_aus[fid] = FaceAUs(face_id=fid, summary=summary, per_frame=per)
        emo = [e for _, _, e in items if e]
        if emo:
            labels = sorted({k for e in emo for k in e})
            scores = {k: round(float(np.mean([e.get(k, 0.0) for e in emo])), 4) for k in labels}
            label = max(scores, key=lambda k: scores[k])
            expressions[fid] = ExpressionEstimate(face_id=fid, label=label, scores=scores, provider="py-feat")
    return Cues(faces=out_faces, aus=cue_aus, expressions=expressions)


class PyFeatAUs:
    """py-feat's AU and emotion models on every sampled frame, matched to our face IDs."""

    name: ClassVar[str] = "pyfeat"
    version: ClassVar[str] = "1"
    provides: ClassVar[tuple[str, ...]] = ("aus", "expressions")
    requires: ClassVar[tuple[str, ...]] = ("faces",)

    def __init__(self, au_model: str = "xgb", emotion_model: str = "resmasknet", device: str = "cpu") -> None:
        self.au_model = au_model
        self.emotion_model = emotion_model
        self.device = device
        self._detector: Any = None
        self._failed: str | None = None  # why loading failed, said again without retrying

    @property
    def params(self) -> Mapping[str, Any]:
        # the device is in the key as documented: CPU and CUDA kernels round differently
        return {"au_model": self.au_model, "emotion_model": self.emotion_model, "device": self.device}

    def preflight(self) -> None:
        """Before a run starts: is py-feat installed? Only that. Its models are loaded where
        they are used (each worker), not in a parent that would hold them for nothing;
        missing hub weights are found by the first item and then not tried again."""
        import importlib.util  # noqa: PLC0415

        if importlib.util.find_spec("feat") is None:
            raise ExtractorUnavailable(NOT_INSTALLED)

    def _load(self) -> Any:
        if self._detector is not None:
            return self._detector
        if self._failed is not None:  # a hub timeout costs seconds: once per process is enough
            raise ExtractorUnavailable(self._failed)
        try:
            from feat import Detector  # noqa: PLC0415
        except Exception:
            self._failed = NOT_INSTALLED
            raise ExtractorUnavailable(NOT_INSTALLED) from None
        try:
            self._detector = Detector(au_model=self.au_model, emotion_model=self.emotion_model, device=self.device)
        except Exception as exc:
            self._failed = (
                f"py-feat could not load its model weights ({type(exc).__name__}); run it once with internet access "
                "(or copy the weights into py-feat's resources folder) to pre-download them, or use the geometric 'aus' extractor"
            )
            raise ExtractorUnavailable(self._failed) from None
        return self._detector

    def extract(self, clip: Clip, cues: Cues) -> Cues:
        detector = self._load()
        from PIL import Image  # noqa: PLC0415

        with tempfile.TemporaryDirectory(prefix="sovtp-pyfeat-") as tmp:
            paths: list[str] = []
            positions: dict[int, int] = {}
            for i, frame in enumerate(clip.frames):
                path = Path(tmp) / f"{i:05d}.png"
                Image.fromarray(frame.image).save(path)
                paths.append(str(path))
                positions[i] = frame.position
            detect = getattr(detector, "detect_image", None) or detector.detect
            fex = detect(paths)
        patch = fex_to_cues(_with_frames(fex, len(paths)), faces=cues.faces, positions=positions)
        return Cues(aus=patch.aus, expressions=patch.expressions)


def _with_frames(fex: Any, count: int) -> Iterable[Mapping[str, Any]]:
    """py-feat numbers rows by input image in ``frame``; older versions leave it out and
    name the file in ``input`` instead: recover the index from our file names."""
    rows = _rows(fex)
    for row in rows:
        if _f(row.get("frame")) is None and "input" in row:
            row = {**row, "frame": int(Path(str(row["input"])).stem)}
        yield row
