"""The plain data that flows through sovtp, one type per arrow of the pipeline.

video -> :class:`Clip` (sampled :class:`Frame` s) -> :class:`Cues` (per extractor)
-> annotated images + cue text -> :class:`Prompt` -> :class:`Answer` -> :class:`Result`.

Cue types are pydantic models so that the cue cache can store them as JSON (never
pickle) and load them back validated. Pixel data is *not* part of any cue: frames
carry pixels, cues carry measurements in pixel coordinates of the full frame.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

# --------------------------------------------------------------------------- geometry


class Box(BaseModel):
    """An axis-aligned box in pixel coordinates of the full frame (x1, y1) top-left."""

    model_config = ConfigDict(frozen=True)

    x1: float
    y1: float
    x2: float
    y2: float

    @property
    def width(self) -> float:
        return max(0.0, self.x2 - self.x1)

    @property
    def height(self) -> float:
        return max(0.0, self.y2 - self.y1)

    @property
    def area(self) -> float:
        return self.width * self.height

    @property
    def center(self) -> tuple[float, float]:
        return ((self.x1 + self.x2) / 2.0, (self.y1 + self.y2) / 2.0)

    def intersection(self, other: Box) -> float:
        w = min(self.x2, other.x2) - max(self.x1, other.x1)
        h = min(self.y2, other.y2) - max(self.y1, other.y1)
        return max(0.0, w) * max(0.0, h)

    def iou(self, other: Box) -> float:
        inter = self.intersection(other)
        union = self.area + other.area - inter
        return inter / union if union > 0 else 0.0

    def overlap_of_smaller(self, other: Box) -> float:
        """Intersection over the smaller box's area (the SoVTP overlap rule)."""
        smaller = min(self.area, other.area)
        return self.intersection(other) / smaller if smaller > 0 else 0.0

    def scaled(self, factor: float) -> Box:
        """The same centre, sides multiplied by ``factor`` (used for crops with margin)."""
        cx, cy = self.center
        hw, hh = self.width * factor / 2.0, self.height * factor / 2.0
        return Box(x1=cx - hw, y1=cy - hh, x2=cx + hw, y2=cy + hh)

    def clipped(self, width: int, height: int) -> Box:
        return Box(
            x1=min(max(self.x1, 0.0), width),
            y1=min(max(self.y1, 0.0), height),
            x2=min(max(self.x2, 0.0), width),
            y2=min(max(self.y2, 0.0), height),
        )

    def as_int(self) -> tuple[int, int, int, int]:
        return int(round(self.x1)), int(round(self.y1)), int(round(self.x2)), int(round(self.y2))


# --------------------------------------------------------------------------- frames


@dataclass(frozen=True)
class Frame:
    """One sampled frame. ``position`` is its place among the sampled frames (0..N-1),
    ``index`` its frame number in the source video, ``image`` RGB uint8 HxWx3.
    ``timestamp`` (seconds) is None only for a frame folder read without a frame rate."""

    position: int
    index: int
    timestamp: float | None
    image: np.ndarray = field(repr=False, compare=False)

    @property
    def width(self) -> int:
        return int(self.image.shape[1])

    @property
    def height(self) -> int:
        return int(self.image.shape[0])


@dataclass(frozen=True)
class Clip:
    """A decoded input: a video's sampled frames, or a still image as a one-frame clip.

    ``content_hash`` is the sha256 of the file's bytes (of a frame folder's frames). The
    caches key on it, never on the path, so a renamed or copied file reuses its cues and
    answers and an edited one does not. Resume skips a file with a record under its own
    path, or under a path that no longer exists (a rename); a copy beside the original
    gets its own record.
    """

    path: Path
    content_hash: str
    # A tuple, or a :class:`sovtp.video.FrameFeed` still being filled by a background
    # decode (``read_clip(..., background=True)``): iterating it in order yields each
    # frame as soon as it is decoded.
    frames: Sequence[Frame]
    fps: float | None
    duration: float | None
    width: int
    height: int
    frame_count: int | None
    is_image: bool = False
    # One sentence about the input that the run should say while it goes on with it (a
    # video cut short: only part of what its header promises decodes); kept in the record.
    note: str | None = None

    @classmethod
    def still(cls, path: Path, image: np.ndarray, content_hash: str) -> Clip:
        """A photo as a one-frame clip (what every image input becomes)."""
        return cls(
            path=path,
            content_hash=content_hash,
            frames=(Frame(position=0, index=0, timestamp=0.0, image=image),),
            fps=None,
            duration=None,
            width=image.shape[1],
            height=image.shape[0],
            frame_count=1,
            is_image=True,
        )

    @property
    def size(self) -> tuple[int, int]:
        return self.width, self.height


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    """Stream a file through sha256 (constant memory for multi-GB videos)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


# --------------------------------------------------------------------------- cues


class FaceObservation(BaseModel):
    """One face in one sampled frame. ``landmarks`` are (x, y, z) in full-frame pixels
    (z in the mesh's own relative scale), 478 points for the mediapipe mesh."""

    position: int  # sampled frame position
    box: Box
    score: float = 1.0
    landmarks: list[tuple[float, float, float]] | None = None

    def landmark_array(self) -> np.ndarray | None:
        return None if self.landmarks is None else np.asarray(self.landmarks, dtype=np.float32)


class FaceTrack(BaseModel):
    """A face followed across the sampled frames; ``id`` is the number drawn on the frame."""

    id: int
    observations: list[FaceObservation] = Field(default_factory=list)

    def at(self, position: int) -> FaceObservation | None:
        for obs in self.observations:
            if obs.position == position:
                return obs
        return None

    @property
    def mean_area(self) -> float:
        if not self.observations:
            return 0.0
        return float(np.mean([o.box.area for o in self.observations]))


# FACS names of the action units any provider reports (one table: the geometric
# estimator, py-feat and the cue text all name an AU the same way).
FACS_AU_NAMES: dict[int, str] = {
    1: "inner brow raiser",
    2: "outer brow raiser",
    4: "brow lowerer",
    5: "upper lid raiser",
    6: "cheek raiser",
    7: "lid tightener",
    9: "nose wrinkler",
    10: "upper lip raiser",
    11: "nasolabial deepener",
    12: "lip corner puller",
    14: "dimpler",
    15: "lip corner depressor",
    16: "lower lip depressor",
    17: "chin raiser",
    18: "lip pucker",
    20: "lip stretcher",
    22: "lip funneler",
    23: "lip tightener",
    24: "lip pressor",
    25: "lips part",
    26: "jaw drop",
    28: "lip suck",
    43: "eyes closed",
}


class AU(BaseModel):
    """A facial action unit reading. ``intensity`` is in [0, 1]; ``provider`` says where it
    came from (e.g. ``geometric`` estimates vs ``py-feat`` learned predictions)."""

    model_config = ConfigDict(frozen=True)

    number: int
    name: str
    intensity: float
    provider: str


class FaceAUs(BaseModel):
    """AUs of one face: a clip-level summary plus the per-frame series (for AU-peak
    sampling). ``per_frame`` maps sampled-frame position -> {AU number: intensity}."""

    face_id: int
    summary: list[AU] = Field(default_factory=list)
    per_frame: dict[int, dict[int, float]] = Field(default_factory=dict)

    def top(self, k: int = 5, threshold: float = 0.0) -> list[AU]:
        ranked = sorted(self.summary, key=lambda a: a.intensity, reverse=True)
        return [a for a in ranked if a.intensity > threshold][:k]


class Pose(BaseModel):
    """Body keypoints of one person (linked to a face id) over the sampled frames.
    ``keypoints`` maps frame position -> list of (x, y, visibility) in full-frame pixels."""

    person_id: int
    provider: str
    keypoints: dict[int, list[tuple[float, float, float]]] = Field(default_factory=dict)
    posture: list[str] = Field(default_factory=list)  # readable phrases, e.g. "head tilted left"


class SceneStats(BaseModel):
    """Measurements of the scene, named as measurements, not interpretations."""

    num_people: int = 0
    motion_energy: float | None = None  # whole frame, mean abs difference between sampled frames, 0..1
    person_motion: dict[int, float] = Field(default_factory=dict)  # face id -> motion energy
    brightness: float | None = None  # mean luma 0..1
    contrast: float | None = None


class ExpressionEstimate(BaseModel):
    """A per-face expression estimate (for the *other* people in the scene)."""

    face_id: int
    label: str
    scores: dict[str, float] = Field(default_factory=dict)
    provider: str


class Cues(BaseModel):
    """Everything the extractors found for one clip.

    Extractors return a partial ``Cues`` holding only what they provide; the runner
    merges them in dependency order. ``ran`` / ``skipped`` record provenance so the
    prompt and the results can say which cues are real and which are missing.
    """

    faces: list[FaceTrack] = Field(default_factory=list)
    target_id: int | None = None
    aus: dict[int, FaceAUs] = Field(default_factory=dict)  # face id -> AUs
    poses: dict[int, Pose] = Field(default_factory=dict)  # person/face id -> pose
    scene: SceneStats | None = None
    expressions: dict[int, ExpressionEstimate] = Field(default_factory=dict)
    ran: dict[str, str] = Field(default_factory=dict)  # extractor name -> version
    skipped: dict[str, str] = Field(default_factory=dict)  # extractor name -> one-sentence reason

    def face(self, face_id: int | None) -> FaceTrack | None:
        for f in self.faces:
            if f.id == face_id:
                return f
        return None

    @property
    def target(self) -> FaceTrack | None:
        return self.face(self.target_id)

    def merged(self, patch: Cues) -> Cues:
        """A new Cues with ``patch``'s non-empty fields laid over this one's.

        Shallow: the new Cues shares the (already validated) tracks, meshes and poses of
        both sides instead of dumping and re-validating them, which for 478-point meshes
        cost more than the AU arithmetic. Cue objects are never mutated in place (every
        extractor builds new ones with ``model_copy``), so sharing is safe.
        """
        update: dict[str, object] = {}
        for name in type(self).model_fields:
            value = getattr(patch, name)
            if name in ("ran", "skipped", "aus", "poses", "expressions"):
                if value:
                    update[name] = {**getattr(self, name), **value}
            elif name == "target_id":
                if value is not None:
                    update[name] = value
            elif value:  # faces, scene
                update[name] = value
        return self.model_copy(update=update)


CueKind = Literal["faces", "landmarks", "aus", "pose", "scene", "expressions"]


# --------------------------------------------------------------------------- prompt


@dataclass(frozen=True)
class TextPart:
    text: str
    kind: Literal["text"] = "text"


@dataclass(frozen=True)
class ImagePart:
    """An image to send. ``image`` is RGB uint8 HxWx3; ``caption`` is for previews only."""

    image: np.ndarray = field(repr=False, compare=False)
    caption: str = ""
    kind: Literal["image"] = "image"

    @property
    def sha256(self) -> str:
        arr = np.ascontiguousarray(self.image)
        h = hashlib.sha256()
        h.update(repr(arr.shape).encode())
        h.update(arr.tobytes())
        return h.hexdigest()


DecodingMode = Literal["json", "choice", "rank", "free"]


@dataclass(frozen=True)
class Prompt:
    """A backend-neutral prompt: one user turn of text and image parts, in order,
    plus an optional system text, the label set and the answer schema the template
    declared. Backends translate this into their own message format."""

    parts: tuple[TextPart | ImagePart, ...]
    labels: tuple[str, ...]
    template_name: str
    template_hash: str
    system: str | None = None
    answer_schema: dict[str, Any] | None = None
    item_id: str = ""

    @property
    def text(self) -> str:
        return "\n".join(p.text for p in self.parts if isinstance(p, TextPart))

    @property
    def images(self) -> list[ImagePart]:
        return [p for p in self.parts if isinstance(p, ImagePart)]


@dataclass
class Usage:
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


@dataclass
class Answer:
    """What a backend returned for one prompt. ``error`` set means no usable answer
    (after retries). ``label_scores`` holds a probability per label where the backend
    ranked the labels itself (rank classification)."""

    text: str = ""
    mode: DecodingMode = "free"
    parsed: dict[str, Any] | None = None
    label_scores: dict[str, float] | None = None
    usage: Usage = field(default_factory=Usage)
    latency_s: float = 0.0
    retries: int = 0
    cached: bool = False
    error: str | None = None


# --------------------------------------------------------------------------- result

Status = Literal["ok", "invalid", "error"]


class Result(BaseModel):
    """One line of the results file. ``status`` is ``ok`` (label in the set),
    ``invalid`` (the model answered outside the set; ``raw_answer`` kept) or
    ``error`` (nothing usable; ``error`` says why in one sentence)."""

    path: str
    status: Status
    label: str | None = None
    face_labels: dict[str, str] = Field(default_factory=dict)
    label_scores: dict[str, float] | None = None
    raw_answer: str | None = None
    reasoning: dict[str, Any] = Field(default_factory=dict)
    error: str | None = None
    content_hash: str | None = None
    frames: list[dict[str, int | float | None]] = Field(default_factory=list)  # [{"index": int, "timestamp": s or None}]
    face_ids: list[int] = Field(default_factory=list)
    target_id: int | None = None
    cues_ran: dict[str, str] = Field(default_factory=dict)
    cues_skipped: dict[str, str] = Field(default_factory=dict)
    model: str | None = None
    backend: str | None = None
    template: str | None = None
    template_hash: str | None = None
    decoding: str | None = None
    usage: dict[str, int | None] = Field(default_factory=dict)
    retries: int = 0
    cached: bool = False
    privacy: str = "none"
    run_key: str | None = None
    timings: dict[str, float] = Field(default_factory=dict)  # stage -> seconds
    notes: list[str] = Field(default_factory=list)  # what the run said about this input while going on with it (a cut-short video)
    meta: dict[str, Any] = Field(default_factory=dict)
