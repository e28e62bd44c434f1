"""Scene measurements: motion energy of the whole frame and of each person between the
sampled frames, the number of people, brightness and contrast.

These are *measurements* (named and scaled as such), never interpretations: the prompt
may say "motion energy 0.12", it is the model's job to read agitation into it or not.
Motion is frame differencing on downscaled grey frames (64 px high: robust to noise and
compression, microseconds per frame); optical flow would add cost without a clearer cue.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
from sovtp.extractors.pose import person_box

from sovtp.types import Clip, Cues, SceneStats


def _grey(image: np.ndarray, height: int) -> np.ndarray:
    import cv2  # noqa: PLC0415

    g = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    h, w = g.shape
    if h > height:
        # Box-average by the whole factor first: OpenCV's area filter has a fast path for
        # integer factors and a slow one otherwise (0.17 against 0.62 ms for 640x360).
        f = h // height
        if f > 1:
            g = cv2.resize(g, (max(1, w // f), max(1, h // f)), interpolation=cv2.INTER_AREA)
        g = cv2.resize(g, (max(1, round(w * height / h)), height), interpolation=cv2.INTER_AREA)
    return g.astype(np.float32) / 255.0


class SceneDynamics:
    """``SceneStats``: motion energy (mean absolute grey-level difference between
    consecutive sampled frames, 0..1), per-person motion in each person's body region,
    people count (face tracks), mean luma and its standard deviation."""

    name: ClassVar[str] = "scene"
    version: ClassVar[str] = "3"  # 2: two-step area downscale (values shift in the 3rd decimal); 3: runs without faces
    provides: ClassVar[tuple[str, ...]] = ("scene",)
    requires: ClassVar[tuple[str, ...]] = ()
    # whole-frame measurements need no face; a clip with nobody in it still has motion and light
    uses: ClassVar[tuple[str, ...]] = ("faces",)

    def __init__(self, grey_height: int = 64) -> None:
        self.grey_height = int(grey_height)

    @property
    def params(self) -> Mapping[str, Any]:
        return {"grey_height": self.grey_height}

    def extract(self, clip: Clip, cues: Cues) -> Cues:
        frames = sorted(clip.frames, key=lambda f: f.position)
        greys = [_grey(f.image, self.grey_height) for f in frames]
        brightness = float(np.mean([g.mean() for g in greys])) if greys else None
        contrast = float(np.mean([g.std() for g in greys])) if greys else None
        motion = None
        person: dict[int, float] = {}
        if len(greys) > 1:
            diffs = [np.abs(b - a) for a, b in zip(greys, greys[1:], strict=False)]
            motion = float(np.mean([d.mean() for d in diffs]))
            for track in cues.faces:
                values = []
                for (fa, fb), diff in zip(zip(frames, frames[1:], strict=False), diffs, strict=True):
                    obs = track.at(fb.position) or track.at(fa.position)
                    if obs is None:
                        continue
                    scale = diff.shape[0] / fb.height
                    x1, y1, x2, y2 = person_box(obs.box, fb.width, fb.height).as_int()
                    region = diff[
                        int(y1 * scale) : max(int(y1 * scale) + 1, int(y2 * scale)),
                        int(x1 * scale) : max(int(x1 * scale) + 1, int(x2 * scale)),
                    ]
                    if region.size:
                        values.append(float(region.mean()))
                if values:
                    person[track.id] = round(float(np.mean(values)), 4)
        stats = SceneStats(
            num_people=len(cues.faces),
            motion_energy=None if motion is None else round(motion, 4),
            person_motion=person,
            brightness=None if brightness is None else round(brightness, 4),
            contrast=None if contrast is None else round(contrast, 4),
        )
        return Cues(scene=stats)
