"""Posture phrases from 33 BlazePose-topology keypoints (mediapipe pose; YOLO's 17 COCO
keypoints are mapped onto the same indices), shared by both pose extractors.

Each phrase is a geometric rule on visible keypoints only (visibility >= ``MIN_VIS``);
a phrase is emitted when it holds in at least half of the frames where it could be
measured, so a single noisy frame never becomes a cue. Left/right are the *person's*.

Rules (indices: 0 nose, 2/5 left/right eye, 7/8 ears, 11/12 shoulders, 15/16 wrists,
23/24 hips; S = shoulder width):
- head tilted: eye line (2-5) more than 12 degrees from horizontal.
- head lowered: nose less than 0.25 S above the shoulder midpoint.
- shoulders raised: ears less than 0.3 S above their shoulders (both sides).
- arms crossed: each wrist past the body's midline on the other side, between shoulder
  and hip height.
- hand at the face: a wrist within 0.6 S of the nose.
- leaning: shoulder midpoint more than 15 degrees off vertical from the hip midpoint.
- arms open / held close: wrists more than 2 S apart / less than 0.6 S apart below the
  shoulders.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

MIN_VIS = 0.5

Keypoints = Sequence[tuple[float, float, float]]


def _vis(kp: Keypoints, *idx: int) -> bool:
    return all(i < len(kp) and kp[i][2] >= MIN_VIS for i in idx)


def frame_posture(kp: Keypoints) -> dict[str, bool]:
    """Each rule's verdict for one frame; a rule whose keypoints are hidden is absent."""
    out: dict[str, bool] = {}
    if not _vis(kp, 11, 12):
        if _vis(kp, 2, 5):
            out.update(_tilt(kp))
        return out
    (lsx, lsy), (rsx, rsy) = kp[11][:2], kp[12][:2]
    s = math.hypot(lsx - rsx, lsy - rsy)
    if s < 1e-6:
        return out
    mx, my = (lsx + rsx) / 2, (lsy + rsy) / 2
    if _vis(kp, 2, 5):
        out.update(_tilt(kp))
    if _vis(kp, 0):
        out["head lowered"] = (my - kp[0][1]) < 0.25 * s
    if _vis(kp, 7, 8):
        out["shoulders raised"] = (lsy - kp[7][1]) < 0.3 * s and (rsy - kp[8][1]) < 0.3 * s
    hips = _vis(kp, 23, 24)
    hy = (kp[23][1] + kp[24][1]) / 2 if hips else my + 1.5 * s
    if _vis(kp, 15, 16):
        lw, rw = kp[15], kp[16]
        # The person's left shoulder is on the image side where kp[11] lies.
        side = 1.0 if lsx > rsx else -1.0
        chest = lambda w: my - 0.2 * s <= w[1] <= hy  # noqa: E731
        out["arms crossed"] = chest(lw) and chest(rw) and (lw[0] - mx) * side < 0 and (rw[0] - mx) * side > 0
        spread = math.hypot(lw[0] - rw[0], lw[1] - rw[1])
        below = lw[1] > my and rw[1] > my
        out["arms open"] = spread > 2.0 * s
        out["arms held close to the body"] = below and spread < 0.6 * s and not out["arms crossed"]
    if _vis(kp, 0):
        near = [w for w in (15, 16) if _vis(kp, w) and math.hypot(kp[w][0] - kp[0][0], kp[w][1] - kp[0][1]) < 0.6 * s]
        if _vis(kp, 15) or _vis(kp, 16):
            out["hand at the face"] = bool(near)
    if hips:
        hx = (kp[23][0] + kp[24][0]) / 2
        angle = math.degrees(math.atan2(mx - hx, max(1e-6, hy - my)))
        if abs(angle) > 15:
            # Image right is the person's left when they face the camera (kp[11] on the right).
            person_left = (angle > 0) == (lsx > rsx)
            # both sides vote: a frame leaning one way is a vote against the other, so a
            # clip split between the two (or one stray frame) never reads as both
            out["leaning to their left"] = person_left
            out["leaning to their right"] = not person_left
        else:
            out["leaning to their left"] = False
            out["leaning to their right"] = False
    return out


def _tilt(kp: Keypoints) -> dict[str, bool]:
    (lx, ly), (rx, ry) = kp[2][:2], kp[5][:2]
    angle = math.degrees(math.atan2(ly - ry, abs(lx - rx) + 1e-6))
    # Image y grows downwards: the left eye lower than the right = head tilted to their left.
    return {"head tilted to their left": angle > 12, "head tilted to their right": angle < -12}


def posture_phrases(keypoints: Mapping[int, Keypoints]) -> list[str]:
    """Phrases that hold in at least half the frames where they could be measured."""
    votes: dict[str, list[bool]] = {}
    for position in sorted(keypoints):
        for phrase, value in frame_posture(keypoints[position]).items():
            votes.setdefault(phrase, []).append(value)
    held = [p for p, v in votes.items() if v and sum(v) * 2 >= len(v) and any(v)]
    # a tie (half the frames each way) is no lean, not both
    for pair in (("leaning to their left", "leaning to their right"), ("head tilted to their left", "head tilted to their right")):
        if all(p in held for p in pair):
            held = [p for p in held if p not in pair]
    return held
