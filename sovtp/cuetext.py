"""Cues -> the variables a prompt template sees.

Every variable is a plain dict, list, string, number, bool or None — never a model
object — so templates stay simple and the Jinja sandbox has nothing dangerous to
reach. Every key is always present (empty when a cue is missing or left out), so a
template can write ``{% if target.aus %}`` under StrictUndefined without guards, and
``skipped`` says why a cue is absent.

Numbers are reported as measurements with their scale ("motion energy 0.031 (mean
absolute difference between sampled frames, 0..1)"), estimates are labelled as
estimates, and nothing is interpreted here: interpretation is the model's job.

:data:`VARIABLES` documents every variable; ``write_variables_reference`` turns it
into ``prompts/VARIABLES.md`` (a test keeps the file and the code in step).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from sovtp.labels import LabelSet
from sovtp.tracking import largest_face
from sovtp.types import AU, Box, Clip, Cues, FaceAUs, FaceTrack, Frame

CUE_KINDS: tuple[str, ...] = ("faces", "landmarks", "aus", "pose", "scene", "expressions")

# Where an AU reading came from, as the prompt should say it.
PROVIDER_NOTES: dict[str, str] = {
    "geometric": "geometric estimates from facial landmarks",
    "py-feat": "predictions of py-feat's learned AU model",
    "pyfeat": "predictions of py-feat's learned AU model",
    "mediapipe-blendshapes": "blendshape scores of MediaPipe's learned face model, read as AUs",
}
EXPRESSION_NOTE = "an automatic estimate, not ground truth"
AU_THRESHOLD = 0.2  # weaker readings are left out of the text (noise for geometric estimates)
AU_TOP = 5

# Which extractor names feed which cue kind (to explain a missing cue by its extractor).
EXTRACTORS_OF: dict[str, tuple[str, ...]] = {
    "faces": ("faces",),
    "landmarks": ("landmarks",),
    "aus": ("aus", "pyfeat", "blendshapes"),
    "pose": ("pose", "yolo_pose"),
    "scene": ("scene",),
    "expressions": ("expressions",),
}

VISUAL_NOTES_FALLBACK = ""
NO_FACE_NOTE = "No face was detected, so nothing is marked on the images."
PRIVACY_NOTES: dict[str, str] = {
    "none": "",
    "blur-others": "For privacy, the faces of the other people are blurred.",
    "blur-all": "For privacy, every face is blurred; rely on the drawn marks and the measurements given here.",
}


def intensity_word(x: float) -> str:
    """FACS-style intensity words for a 0..1 reading (A trace .. E maximum)."""
    if x < 0.2:
        return "trace"
    if x < 0.4:
        return "slight"
    if x < 0.6:
        return "moderate"
    if x < 0.8:
        return "marked"
    return "maximal"


def _fmt(x: float | None, digits: int = 2) -> str:
    return "" if x is None else f"{x:.{digits}f}"


def _mean_box(track: FaceTrack) -> Box:
    obs = track.observations
    n = max(1, len(obs))
    return Box(
        x1=sum(o.box.x1 for o in obs) / n,
        y1=sum(o.box.y1 for o in obs) / n,
        x2=sum(o.box.x2 for o in obs) / n,
        y2=sum(o.box.y2 for o in obs) / n,
    )


def position_words(box: Box, width: int, height: int) -> str:
    """Where a face is, in words a reader uses: "left", "centre", "right", with "upper"
    / "lower" when clearly off the middle band."""
    cx, cy = box.center
    horiz = "left" if cx < width / 3 else ("right" if cx > 2 * width / 3 else "centre")
    vert = "upper " if cy < height / 4 else ("lower " if cy > 3 * height / 4 else "")
    return f"{vert}{horiz}"


def _au_dicts(fa: FaceAUs | None) -> list[dict[str, Any]]:
    if fa is None:
        return []
    ranked: list[AU] = sorted((a for a in fa.summary if a.intensity >= AU_THRESHOLD), key=lambda a: (-a.intensity, a.number))[:AU_TOP]
    return [
        {
            "code": f"AU{a.number}",
            "number": a.number,
            "name": a.name,
            "intensity": round(a.intensity, 2),
            "level": intensity_word(a.intensity),
            "provider": a.provider,
        }
        for a in ranked
    ]


def _au_text(aus: list[dict[str, Any]]) -> str:
    return "; ".join(f"{a['code']} ({a['name']}) {a['intensity']:.2f}, {a['level']}" for a in aus)


def _provider_note(aus: list[dict[str, Any]]) -> str:
    providers = sorted({a["provider"] for a in aus})
    return "; ".join(PROVIDER_NOTES.get(p, f"{p} readings") for p in providers)


def _face_dict(track: FaceTrack, cues: Cues, clip: Clip, include: set[str], num_frames: int) -> dict[str, Any]:
    box = _mean_box(track)
    show_face = "faces" in include
    aus = _au_dicts(cues.aus.get(track.id)) if "aus" in include else []
    pose = cues.poses.get(track.id) if "pose" in include else None
    posture = list(pose.posture) if pose is not None else []
    expr = cues.expressions.get(track.id) if "expressions" in include else None
    landmarks = 0
    if "landmarks" in include:
        landmarks = max((len(o.landmarks or []) for o in track.observations), default=0)
    motion = cues.scene.person_motion.get(track.id) if ("scene" in include and cues.scene is not None) else None
    return {
        "id": track.id,
        "is_target": track.id == cues.target_id,
        "position": position_words(box, clip.width, clip.height) if show_face else "",
        "box": [int(round(v)) for v in (box.x1, box.y1, box.x2, box.y2)] if show_face else [],
        "size": round(box.height / clip.height, 2) if show_face and clip.height else None,
        "frames_seen": len(track.observations) if show_face else None,
        "num_frames": num_frames,
        "landmarks": landmarks,
        "aus": aus,
        "au_text": _au_text(aus),
        # a clip's AU reading is a robust peak over its frames (the 90th percentile), not a mean
        "au_provider": _provider_note(aus) + ("; each AU's peak over the sampled frames" if aus and num_frames > 1 else ""),
        "has_pose": pose is not None,
        "posture": posture,
        "posture_text": "; ".join(posture),
        "motion": None if motion is None else round(motion, 3),
        "expression": (
            {
                "label": expr.label,
                "score": round(max(expr.scores.values(), default=0.0), 2),
                "provider": expr.provider,
                "note": EXPRESSION_NOTE,
            }
            if expr is not None
            else None
        ),
    }


def _frame_dict(frame: Frame, frame_count: int | None) -> dict[str, Any]:
    """A sampled frame for templates. Without a timestamp (a frame folder read without a
    frame rate) ``time`` names the frame, so "sampled ... at {times}" still reads true."""
    if frame.timestamp is None:
        of = f" of {frame_count}" if frame_count else ""
        return {"number": frame.position + 1, "index": frame.index, "timestamp": None, "time": f"frame {frame.index + 1}{of}"}
    return {"number": frame.position + 1, "index": frame.index, "timestamp": round(frame.timestamp, 2), "time": f"{frame.timestamp:.2f} s"}


def _scene_dict(cues: Cues) -> dict[str, Any] | None:
    s = cues.scene
    if s is None:
        return None
    bits = [f"{s.num_people} {'person' if s.num_people == 1 else 'people'} detected"]
    if s.motion_energy is not None:
        bits.append(f"motion energy {s.motion_energy:.3f} (mean absolute difference between sampled frames, 0..1)")
    if s.brightness is not None:
        bits.append(f"brightness {s.brightness:.2f} (mean luma, 0..1)")
    if s.contrast is not None:
        bits.append(f"contrast {s.contrast:.2f} (luma standard deviation, 0..1)")
    return {
        "num_people": s.num_people,
        "motion_energy": None if s.motion_energy is None else round(s.motion_energy, 3),
        "brightness": None if s.brightness is None else round(s.brightness, 2),
        "contrast": None if s.contrast is None else round(s.contrast, 2),
        "text": "; ".join(bits),
    }


def _skipped(cues: Cues, include: set[str], available: dict[str, bool]) -> list[dict[str, str]]:
    """Missing cue kinds, each with one reason: left out by settings, extractor skipped
    (its own sentence), extractor not run, or run but found nothing."""
    out: list[dict[str, str]] = []
    for kind in CUE_KINDS:
        if available[kind]:
            continue
        if kind not in include:
            out.append({"cue": kind, "reason": "left out of this prompt"})
            continue
        if kind == "expressions" and "faces" not in include:
            out.append({"cue": kind, "reason": "they are told per face, and the faces cue is left out of this prompt"})
            continue
        names = EXTRACTORS_OF.get(kind, (kind,))
        reasons = [cues.skipped[n] for n in names if n in cues.skipped]
        ran = any(n in cues.ran for n in names)
        if reasons:
            out.append({"cue": kind, "reason": reasons[0]})
        elif kind == "expressions" and len(cues.faces) < 2 and ran:  # ran, and there was nobody else
            out.append({"cue": kind, "reason": "there is no other person to estimate"})
        elif ran:
            found = "no face was found in any sampled frame" if kind == "faces" else f"the {kind} extractor ran but found nothing"
            out.append({"cue": kind, "reason": found})
        else:
            out.append({"cue": kind, "reason": "no extractor for this cue was run"})
    return out


def answer_format(labels: Iterable[str], stages: list[str], answer: str, per_face_ids: list[int] | None) -> str:
    """The answer skeleton the template shows the model; mirrors sovtp.parse.answer_schema
    (stages first, then per-face labels, then ``label``)."""
    choice = " | ".join(labels)
    if answer == "label":
        return f"one word from: {', '.join(labels)}"
    obj: dict[str, Any] = {s: "..." for s in stages}
    if per_face_ids:
        obj["faces"] = {str(i): f"<{choice}>" for i in per_face_ids}
    obj["label"] = f"<{choice}>"
    return json.dumps(obj, ensure_ascii=False)


ORDINALS = ("", "", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth", "tenth")


def target_reference(target_id: int | None, visual: str, shows_ids: bool, cues: Cues | None = None) -> str:
    """How the prompt names the person to judge, given what the image shows.

    Where the images neither number nor single out the faces (``none``, ``box``), the
    largest face is "the most prominent person"; any other target (``--target center``
    or an ID) is named by its size rank (templates add its place), or the model would judge the largest
    face while the record scores the answer as the chosen one's."""
    if target_id is None:
        return "the most prominent person"
    if shows_ids:
        return f"the person marked {target_id}"
    marked = {
        "red_circle": "the person circled in red",
        "blur_reverse": "the person whose face is in focus",
        "gray_reverse": "the person whose face is in colour",
        "crop": "the person whose face is shown",
    }.get(visual)
    if marked is not None:
        return marked
    faces = list(cues.faces) if cues is not None else []
    if len(faces) < 2 or largest_face(faces) == target_id:
        return "the most prominent person"
    by_size = sorted(faces, key=lambda f: (-sum(o.box.area for o in f.observations), f.id))
    rank = next(i for i, f in enumerate(by_size, 1) if f.id == target_id)
    if rank == len(faces):
        return f"the person with the smallest of the {len(faces)} faces"
    which = f"{ORDINALS[rank]}-largest" if rank < len(ORDINALS) else f"{rank}th-largest"
    return f"the person with the {which} of the {len(faces)} faces"


def template_variables(
    clip: Clip,
    cues: Cues,
    labels: LabelSet,
    include_cues: set[str] | frozenset[str] | None = None,
    per_face: bool = False,
    *,
    visual: str = "none",
    layout: str = "frames",
    num_images: int | None = None,
    sent_frames: list[int] | None = None,
    stages: list[str] | None = None,
    answer: str = "label",
    privacy: str = "none",
) -> dict[str, Any]:
    """Everything a template may use, as plain data (see :data:`VARIABLES`)."""
    from sovtp.render.modes import MODES

    include = set(CUE_KINDS) if include_cues is None else set(include_cues)
    unknown = include - set(CUE_KINDS)
    if unknown:
        raise ValueError(f"unknown cue kind(s) {sorted(unknown)}; use a subset of {', '.join(CUE_KINDS)}")
    num_frames = len(clip.frames)
    target_track = cues.target
    faces = [_face_dict(t, cues, clip, include, num_frames) for t in sorted(cues.faces, key=lambda t: t.id)]
    target = next((f for f in faces if f["is_target"]), None)
    available = {
        "faces": "faces" in include and bool(cues.faces),
        "landmarks": "landmarks" in include and any(o.landmarks for t in cues.faces for o in t.observations),
        "aus": "aus" in include and any(f["aus"] for f in faces),
        # Keypoints found with no posture rule firing is a measurement ("nothing marked"), not a missing cue.
        "pose": "pose" in include and any(f["has_pose"] for f in faces),
        "scene": "scene" in include and cues.scene is not None,
        # listed per other face: without the faces cue the prompt has nowhere to say them
        "expressions": {"expressions", "faces"} <= include and any(f["expression"] for f in faces if not f["is_target"]),
    }
    mode = MODES.get(visual)
    shows_ids = bool(mode and mode.shows_ids)
    grid = layout == "grid" and num_frames > 1
    face_ids = [f.id for f in sorted(cues.faces, key=lambda t: t.id)]
    label_list = list(labels.labels)
    stage_list = list(stages or [])
    return {
        "labels": label_list,
        "labels_text": ", ".join(label_list),
        "label_set": labels.name,
        "num_frames": num_frames,
        "frames": [_frame_dict(clip.frames[i], clip.frame_count) for i in (sent_frames or range(len(clip.frames)))],
        "is_image": clip.is_image,
        "duration": None if clip.duration is None else round(clip.duration, 2),
        "fps": None if clip.fps is None else round(clip.fps, 2),
        "visual": visual,
        "visual_note": (NO_FACE_NOTE if mode and mode.note else "") if not cues.faces else (mode.note if mode else VISUAL_NOTES_FALLBACK),
        "privacy": privacy,
        "privacy_note": PRIVACY_NOTES.get(privacy, "") if cues.faces else "",
        "layout": "grid" if grid else "frames",
        "layout_note": (
            f"The {num_frames} frames are tiled into one image in reading order, each numbered in its top-left corner." if grid else ""
        ),
        "num_images": num_frames if num_images is None else num_images,
        "target_id": None if target_track is None else target_track.id,
        "target_ref": target_reference(None if target_track is None else target_track.id, visual, shows_ids, cues),
        "target": target,
        "faces": faces if "faces" in include else [],
        "others": [f for f in faces if not f["is_target"]] if "faces" in include else [],
        "num_faces": len(faces) if "faces" in include else None,
        "face_ids": face_ids,
        "per_face": bool(per_face and face_ids),
        "scene": _scene_dict(cues) if "scene" in include else None,
        "cues": available,
        "skipped": _skipped(cues, include, available),
        "stages": stage_list,
        "answer": answer,
        "answer_format": answer_format(label_list, stage_list, answer, face_ids if per_face else None),
    }


# --------------------------------------------------------------------------- reference

# name -> (type, meaning). Nested keys of a face use the "face." prefix.
VARIABLES: dict[str, tuple[str, str]] = {
    "labels": ("list[str]", "the label set, in order"),
    "labels_text": ("str", "the labels joined by ', '"),
    "label_set": ("str", "the label set's name (dfew, mafw, ferv39k, custom)"),
    "num_frames": ("int", "number of sampled frames (1 for a still image)"),
    "frames": (
        "list[dict]",
        "one per sampled frame whose image is sent (every sampled frame unless the template's images: N sends fewer): number (1-based, as drawn on grids), index (frame in the video), timestamp (s; None for a frame folder without --frame-rate), time ('1.20 s', or 'frame 13 of 40' without a timestamp)",
    ),
    "is_image": ("bool", "the input is a still image"),
    "duration": ("float | None", "clip length in seconds (None for a frame folder without --frame-rate)"),
    "fps": ("float | None", "frames per second of the video (a frame folder's --frame-rate)"),
    "visual": (
        "str",
        "the visual mode of the images (none, box, numbered, landmarks, sovtp, red_circle, blur_reverse, gray_reverse, crop, som)",
    ),
    "visual_note": ("str", "one sentence saying what the drawn marks mean ('' for none)"),
    "privacy": ("str", "the privacy mode of the images: none, blur-others, blur-all"),
    "privacy_note": ("str", "one sentence telling the model which faces are blurred ('' for none)"),
    "layout": ("str", "'frames' (one image per frame) or 'grid' (one tiled image)"),
    "layout_note": ("str", "one sentence describing a grid ('' for frames)"),
    "num_images": ("int", "number of images sent with the prompt"),
    "target_id": ("int | None", "ID of the face to classify (None: no face found); present even when text cues are left out"),
    "target_ref": ("str", "how to name the person to classify given the visual mode, e.g. 'the person marked 1'"),
    "target": ("face | None", "the target face (see face.* below)"),
    "faces": ("list[face]", "every face, by ID ([] when the faces cue is left out)"),
    "others": ("list[face]", "every face but the target"),
    "num_faces": ("int | None", "number of faces (None when the faces cue is left out)"),
    "face_ids": ("list[int]", "IDs of all faces (for per-face answers)"),
    "per_face": ("bool", "a label per face is asked for"),
    "scene": ("dict | None", "num_people, motion_energy (0..1), brightness (0..1), contrast (0..1), text (the measurements in words)"),
    "cues": ("dict[str, bool]", "which cue kinds are present: faces, landmarks, aus, pose, scene, expressions"),
    "skipped": ("list[dict]", "missing cue kinds: cue, reason (one sentence)"),
    "stages": ("list[str]", "reasoning stage names declared by the template"),
    "answer": ("str", "the template's answer kind: 'stages' or 'label'"),
    "answer_format": ("str", "the answer skeleton to show the model (JSON for 'stages')"),
    "images": ("marker", "place all images here (default: before the text)"),
    "image(n)": ("marker", "place the n-th image (1-based) here"),
    "face.id": ("int", "face ID, as drawn on the frame"),
    "face.is_target": ("bool", "this is the face to classify"),
    "face.position": ("str", "'left', 'centre', 'right', optionally 'upper '/'lower ' ('' when faces are left out)"),
    "face.box": ("list[int]", "mean box [x1, y1, x2, y2] in frame pixels"),
    "face.size": ("float | None", "face height / frame height"),
    "face.frames_seen": ("int | None", "sampled frames in which the face was detected"),
    "face.num_frames": ("int", "number of sampled frames"),
    "face.landmarks": ("int", "landmark points per frame (0: none)"),
    "face.aus": ("list[dict]", "strongest AUs (>= 0.2, top 5): code, number, name, intensity (0..1), level, provider"),
    "face.au_text": ("str", "the AUs in words, e.g. 'AU12 (lip corner puller) 0.62, marked'"),
    "face.au_provider": ("str", "where the AUs come from, e.g. 'geometric estimates from facial landmarks'"),
    "face.has_pose": ("bool", "body keypoints were found for this person (posture may still be empty: nothing marked)"),
    "face.posture": ("list[str]", "posture phrases from body pose, e.g. 'head tilted left'"),
    "face.posture_text": ("str", "the posture phrases joined by '; '"),
    "face.motion": ("float | None", "this person's motion energy (0..1)"),
    "face.expression": ("dict | None", "expression estimate: label, score, provider, note ('an automatic estimate, not ground truth')"),
}


def sample_clip_and_cues() -> tuple[Clip, Cues]:
    """Small fixed cues with every kind present: what ``check_template`` renders a
    template against before a run, and the source of the reference's examples."""
    import numpy as np

    from sovtp.types import AU, ExpressionEstimate, FaceObservation, Frame, Pose, SceneStats

    frames = tuple(Frame(position=i, index=i * 10, timestamp=i * 0.4, image=np.zeros((240, 320, 3), dtype=np.uint8)) for i in range(3))
    clip = Clip(
        path=Path("sample.mp4"), content_hash="0" * 64, frames=frames, fps=25.0, duration=1.2, width=320, height=240, frame_count=30
    )
    lm = [(100.0 + (i % 20), 80.0 + (i // 20), 0.0) for i in range(478)]
    t1 = FaceTrack(id=1, observations=[FaceObservation(position=i, box=Box(x1=90, y1=60, x2=150, y2=130), landmarks=lm) for i in range(3)])
    t2 = FaceTrack(id=2, observations=[FaceObservation(position=i, box=Box(x1=220, y1=70, x2=270, y2=125)) for i in range(3)])
    cues = Cues(
        faces=[t1, t2],
        target_id=1,
        aus={
            1: FaceAUs(
                face_id=1,
                summary=[
                    AU(number=12, name="lip corner puller", intensity=0.62, provider="geometric"),
                    AU(number=6, name="cheek raiser", intensity=0.41, provider="geometric"),
                ],
            )
        },
        poses={1: Pose(person_id=1, provider="mediapipe", posture=["head tilted left", "shoulders level"])},
        scene=SceneStats(num_people=2, motion_energy=0.031, person_motion={1: 0.02, 2: 0.04}, brightness=0.45, contrast=0.21),
        expressions={2: ExpressionEstimate(face_id=2, label="neutral", scores={"neutral": 0.7, "happy": 0.2}, provider="prototype")},
        ran={"faces": "1", "landmarks": "1", "aus": "1", "pose": "1", "scene": "1", "expressions": "1"},
    )
    return clip, cues


def variables_reference() -> str:
    """The markdown of prompts/VARIABLES.md, generated from :data:`VARIABLES`."""
    from sovtp.labels import DFEW

    clip, cues = sample_clip_and_cues()
    example = template_variables(clip, cues, DFEW, visual="sovtp", stages=["scene_context", "final_check"], answer="stages")
    lines = [
        "# Template variables",
        "",
        "Generated by `python -m sovtp.cuetext` from `sovtp/cuetext.py` (do not edit by hand; a test checks it is current).",
        "",
        "Templates are Jinja files rendered in a sandbox with undefined variables as errors. Every variable below is",
        "always defined; a missing or left-out cue shows as an empty list, '' or None, and `skipped` says why.",
        "Front matter (a `{#--- ... ---#}` comment at the top) declares `needs`, `visual`, `layout`, `images`, `answer`, `stages`.",
        "",
        "| variable | type | meaning |",
        "|---|---|---|",
    ]
    for name, (typ, meaning) in VARIABLES.items():
        lines.append(f"| `{name}` | {typ} | {meaning} |")
    lines += ["", "## Example values (from the sample cues `check_template` uses)", "", "```json"]
    shown = {k: example[k] for k in ("target_id", "target_ref", "target", "scene", "cues", "skipped", "answer_format")}
    lines += json.dumps(shown, indent=2, ensure_ascii=False).splitlines()
    lines += ["```", ""]
    return "\n".join(lines)


def reference_path() -> Path:
    """prompts/VARIABLES.md as packaged (the checkout's prompts/ in an editable install)."""
    from importlib.resources import files

    return Path(str(files("sovtp.prompts").joinpath("VARIABLES.md")))


def write_variables_reference(path: Path | None = None) -> Path:
    """Write the reference (default: prompts/VARIABLES.md of this checkout)."""
    path = Path(path) if path is not None else reference_path()
    path.write_text(variables_reference(), encoding="utf-8")
    return path


if __name__ == "__main__":  # python -m sovtp.cuetext
    print(write_variables_reference())


# What --cues / the ablation "cues" axis accept: the cue kinds, plus the names people use.
CUE_ALIASES = {
    "au": "aus",
    "aus": "aus",
    "pose": "pose",
    "faces": "faces",
    "landmarks": "landmarks",
    "scene": "scene",
    "expressions": "expressions",
    "others": "expressions",
}


def parse_cue_selection(spec: str | None) -> frozenset[str] | None:
    """``all``/None -> None (every text cue), ``none`` -> nothing, ``au+pose`` (or
    ``au,pose``, ``au&pose``) -> {aus, pose}. Raises ValueError naming the valid kinds."""
    v = (spec or "all").strip().lower()
    if v == "all":
        return None
    if v == "none":
        return frozenset()
    parts = [c.strip() for c in re.split(r"[+,&]", v) if c.strip()]
    unknown = [c for c in parts if c not in CUE_ALIASES]
    if unknown:
        raise ValueError(
            f"unknown cue kind(s) {', '.join(unknown)}; use all, none, or a '+'-joined subset of {', '.join(sorted(set(CUE_ALIASES.values())))}"
        )
    return frozenset(CUE_ALIASES[c] for c in parts)
