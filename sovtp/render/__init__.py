"""Visual prompts: frames + cues -> annotated images (see ``core.render_views``).

Submodules: ``view`` (the per-frame face type every annotator reads), ``draw``
(canvas, fonts, collision-free tags), ``annotators`` (boxes, ID tags, landmarks, AU
tags, red ellipse, Set-of-Mark), ``focus`` (reverse blur/grey, crop), ``privacy``
(face de-identification), ``regions`` (person regions), ``modes`` (named recipes),
``core`` (frames and grid layouts). Heavy imports (cv2) happen inside functions.
"""

from sovtp.render.core import render_frame, render_views
from sovtp.render.modes import LAYOUTS, MODES, VISUAL_MODES, VisualMode, get_mode
from sovtp.render.privacy import PRIVACY_MODES, deidentify

__all__ = ["LAYOUTS", "MODES", "PRIVACY_MODES", "VISUAL_MODES", "VisualMode", "deidentify", "get_mode", "render_frame", "render_views"]
