"""The named visual modes: each is a short recipe over the same frame and cues.

A mode is (optional pixel operation) + (annotators, in order). Adding a mode is one
entry in :data:`MODES`; the prompt text describing what the marks mean lives beside it
(``note``), so a template always describes the marks that were actually drawn.
"""

from __future__ import annotations

from dataclasses import dataclass

from sovtp.render.annotators import Annotator, AUTags, Boxes, IdTags, Landmarks, RedEllipse, SoMMarks


@dataclass(frozen=True)
class VisualMode:
    name: str
    annotators: tuple[Annotator, ...] = ()
    focus: str | None = None  # "blur" | "gray": everything outside the target changed
    crop: bool = False  # the target's face region alone
    shows_ids: bool = False  # face ID numbers are visible in the image
    note: str = ""  # one sentence for the prompt: what the marks mean


MODES: dict[str, VisualMode] = {
    m.name: m
    for m in (
        VisualMode("none", note=""),
        VisualMode("box", (Boxes(),), note="Each detected face is outlined by a coloured box."),
        VisualMode(
            "numbered", (Boxes(), IdTags()), shows_ids=True, note="Each detected face is outlined by a coloured box holding its ID number."
        ),
        VisualMode(
            "landmarks",
            (Boxes(), Landmarks(), IdTags()),
            shows_ids=True,
            note="Each detected face is outlined by a coloured box holding its ID number, and dots mark its facial landmarks (brows, eyes, nose, lips, jaw).",
        ),
        VisualMode(
            "sovtp",
            (Boxes(), Landmarks(), IdTags(), AUTags()),
            shows_ids=True,
            note=(
                "Each detected face is outlined by a coloured box holding its ID number, dots mark its facial landmarks "
                "(brows, eyes, nose, lips, jaw), and the tag beside it lists its most active facial action units (AUs)."
            ),
        ),
        VisualMode("red_circle", (RedEllipse(),), note="A red ellipse marks the person to judge."),
        VisualMode("blur_reverse", focus="blur", note="Everything except the face of the person to judge is blurred."),
        VisualMode("gray_reverse", focus="gray", note="Everything except the face of the person to judge is shown in grey."),
        VisualMode("crop", crop=True, note="The image shows only the face of the person to judge."),
        VisualMode("som", (SoMMarks(),), shows_ids=True, note="Each person carries a numeric mark (their ID) placed on their body."),
    )
}

VISUAL_MODES: tuple[str, ...] = tuple(MODES)
LAYOUTS: tuple[str, ...] = ("frames", "grid")


def get_mode(name: str) -> VisualMode:
    try:
        return MODES[name]
    except KeyError:
        raise ValueError(f"unknown visual mode {name!r}; use one of {', '.join(VISUAL_MODES)}") from None


def check_layout(layout: str) -> str:
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; use 'frames' (one image per sampled frame) or 'grid' (one tiled image)")
    return layout
