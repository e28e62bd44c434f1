"""The py-feat and ultralytics adapters' conversions, on real outputs where they exist here."""

from __future__ import annotations

import csv
import os
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from sovtp.extractors.pyfeat_adapter import PyFeatAUs, fex_to_cues
from sovtp.extractors.yolo_pose import COCO_TO_BLAZE, YoloPose, results_to_arrays, to_blaze, yolo_arrays_to_poses

from sovtp.extract import ExtractorUnavailable
from sovtp.tracking import Detection, track_faces
from sovtp.types import Box, Cues
from sovtp.video import read_clip

NO_ULTRALYTICS = (
    "ultralytics is not installed here (optional, AGPL-3.0): .ci/run installs it with --no-deps, "
    "because its opencv-python requirement would clobber mediapipe's opencv-contrib-python cv2"
)


def import_ultralytics(module: str = "ultralytics") -> ModuleType:
    """``module`` from ultralytics, or skip; the torchvision shim first, as the adapter does
    (ultralytics imports torchvision, whose registry build cannot load its ops beside a CPU torch)."""
    pytest.importorskip("torch", reason="ultralytics needs torch")
    from sovtp.backends._torchvision_shim import ensure_torchvision

    ensure_torchvision()
    os.environ.setdefault("YOLO_OFFLINE", "true")  # as the adapter does: no DNS probes or downloads
    return pytest.importorskip(module, reason=NO_ULTRALYTICS)


def feat_rows(media: Path) -> list[dict[str, str]]:
    with open(media / "Feat_Test.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def test_fex_to_cues_on_pyfeats_own_detector_output(media: Path) -> None:
    rows = feat_rows(media)
    cues = fex_to_cues(rows)
    assert len(cues.faces) == 1
    box = cues.faces[0].observations[0].box
    r = rows[0]
    assert box.x1 == pytest.approx(float(r["FaceRectX"])) and box.width == pytest.approx(float(r["FaceRectWidth"]))
    aus = {a.number: a for a in cues.aus[1].summary}
    assert {1, 2, 4, 6, 12, 25, 26, 43} <= set(aus)
    assert aus[12].intensity == pytest.approx(float(r["AU12"]), abs=1e-4)
    assert aus[12].name == "lip corner puller" and aus[12].provider == "py-feat"
    assert cues.aus[1].per_frame[0][12] == pytest.approx(float(r["AU12"]), abs=1e-4)
    expr = cues.expressions[1]
    assert expr.provider == "py-feat" and expr.label == "happy"  # single_face.jpg: a broad smile
    assert set(expr.scores) == {"angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"}


def test_fex_rows_match_our_tracks_by_overlap(media: Path) -> None:
    rows = feat_rows(media)
    r = rows[0]
    x, y, w, h = (float(r[k]) for k in ("FaceRectX", "FaceRectY", "FaceRectWidth", "FaceRectHeight"))
    ours = track_faces({0: [Detection(Box(x1=10, y1=10, x2=60, y2=60)), Detection(Box(x1=x + 5, y1=y + 5, x2=x + w, y2=y + h))]})
    cues = fex_to_cues(rows, faces=ours)
    matched = next(t.id for t in ours if t.observations[0].box.x1 > 100)
    assert set(cues.aus) == {matched} and cues.faces == []


def _people(face_centres: list[tuple[float, float]]) -> tuple[np.ndarray, np.ndarray]:
    boxes, kps = [], []
    for cx, cy in face_centres:
        boxes.append([cx - 80, cy - 60, cx + 80, cy + 300])
        k = np.zeros((17, 3))
        k[:, 2] = 0.9
        k[0, :2] = (cx, cy)  # nose
        k[1, :2], k[2, :2] = (cx + 10, cy - 10), (cx - 10, cy - 10)  # eyes (person's left on image right)
        k[3, :2], k[4, :2] = (cx + 25, cy), (cx - 25, cy)
        k[5, :2], k[6, :2] = (cx + 60, cy + 80), (cx - 60, cy + 80)  # shoulders
        k[9, :2], k[10, :2] = (cx + 15, cy + 5), (cx - 70, cy + 250)  # left wrist at the face
        k[11, :2], k[12, :2] = (cx + 40, cy + 250), (cx - 40, cy + 250)
        boxes[-1] = np.array(boxes[-1])
        kps.append(k)
    return np.array(boxes), np.array(kps)


def test_yolo_arrays_map_people_to_face_ids_and_blazepose_layout() -> None:
    faces = track_faces({0: [Detection(Box(x1=80, y1=80, x2=120, y2=120)), Detection(Box(x1=380, y1=80, x2=420, y2=120))]})
    boxes, kps = _people([(400, 100), (100, 100)])  # listed right-to-left: matching is by position, not order
    poses = yolo_arrays_to_poses({0: (boxes, kps)}, faces)
    assert set(poses) == {1, 2}
    left = poses[1].keypoints[0]
    assert len(left) == 33 and left[0][:2] == (100.0, 100.0)
    assert left[COCO_TO_BLAZE[5]][:2] == (160.0, 180.0)  # left shoulder at BlazePose index 11
    assert left[1][2] == 0.0  # BlazePose points YOLO lacks are invisible
    assert "hand at the face" in poses[1].posture
    assert poses[1].provider == "yolo-pose"


def test_yolo_conversion_of_a_real_ultralytics_results_object() -> None:
    results = import_ultralytics("ultralytics.engine.results")
    import torch

    boxes, kps = _people([(100, 100)])
    data = torch.tensor(np.concatenate([boxes, np.array([[0.9, 0.0]])], axis=1), dtype=torch.float32)
    res = results.Results(
        np.zeros((480, 640, 3), np.uint8), path="x.jpg", names={0: "person"}, boxes=data, keypoints=torch.tensor(kps, dtype=torch.float32)
    )
    b, k = results_to_arrays(res)
    assert b.shape == (1, 4) and k.shape == (1, 17, 3)
    np.testing.assert_allclose(b, boxes, atol=1e-4)
    np.testing.assert_allclose(k, kps, atol=1e-4)
    faces = track_faces({0: [Detection(Box(x1=80, y1=80, x2=120, y2=120))]})
    poses = yolo_arrays_to_poses({0: (b, k)}, faces)
    assert poses[1].keypoints[0][0][:2] == (100.0, 100.0)
    assert poses[1].keypoints[0][COCO_TO_BLAZE[5]][:2] == (160.0, 180.0)
    assert "hand at the face" in poses[1].posture


@pytest.fixture(scope="module")
def yolo_random_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A YOLO11n-pose checkpoint built from ultralytics' own yaml with random weights (no hub):
    one class (person) and 17x3 keypoints, like the released yolo11n-pose.pt."""
    ultralytics = import_ultralytics()
    import torch

    folder = tmp_path_factory.mktemp("yolo-pose")
    src = Path(ultralytics.__file__).parent / "cfg" / "models" / "11" / "yolo11-pose.yaml"
    cfg = folder / "yolo11n-pose.yaml"  # the "n" picks the nano scale
    cfg.write_text(src.read_text().replace("nc: 80", "nc: 1"))
    torch.manual_seed(0)
    model = ultralytics.YOLO(str(cfg))
    model.model.kpt_shape = model.model.yaml["kpt_shape"]  # what ultralytics' pose trainer sets from its dataset
    model.model.names = {0: "person"}
    weights = folder / "yolo11n-pose-random.pt"
    model.save(weights)
    return weights


def test_yolo_pose_adapter_runs_a_model_built_from_its_yaml(media: Path, yolo_random_weights: Path) -> None:
    """The whole path on a real photo: load, predict (ultralytics' NMS calls torchvision.ops.nms),
    Results -> arrays -> poses matched to a face."""
    clip = read_clip(media / "multi_face.jpg")
    adapter = YoloPose(weights=str(yolo_random_weights), conf=1e-3, imgsz=320)  # random weights score low
    image = np.ascontiguousarray(clip.frames[0].image[:, :, ::-1])
    result = adapter._load().predict(image, conf=adapter.conf, imgsz=adapter.imgsz, verbose=False)[0]
    boxes, kps = results_to_arrays(result)
    n = len(result.boxes)
    assert n > 0 and boxes.shape == (n, 4) and kps.shape == (n, 17, 3)
    np.testing.assert_array_equal(boxes, result.boxes.xyxy.numpy())
    np.testing.assert_array_equal(kps, result.keypoints.data.numpy())

    # A face where one person's head keypoints are (their mean, as the matcher reads it).
    heads = [k[:5][k[:5, 2] > 0.3][:, :2].mean(axis=0) if (k[:5, 2] > 0.3).any() else None for k in kps]
    rows = [r for r, h in enumerate(heads) if h is not None and boxes[r][0] <= h[0] <= boxes[r][2] and boxes[r][1] <= h[1] <= boxes[r][3]]
    assert rows, "no detection with its head inside its box"
    row = max(rows, key=lambda r: min((np.hypot(*(heads[r] - h)) for q, h in enumerate(heads) if q != r and h is not None), default=1e9))
    cx, cy = (float(v) for v in heads[row])
    faces = track_faces({0: [Detection(Box(x1=cx - 20, y1=cy - 20, x2=cx + 20, y2=cy + 20))]})
    out = adapter.extract(clip, Cues(faces=faces))
    assert set(out.poses) == {faces[0].id}
    pose = out.poses[faces[0].id]
    assert pose.provider == "yolo-pose" and set(pose.keypoints) == {0}
    assert pose.keypoints[0] == to_blaze(kps[row])
    assert all(pose.keypoints[0][i][2] == 0.0 for i in set(range(33)) - set(COCO_TO_BLAZE))


def test_yolo_pose_adapter_with_no_detections(media: Path, yolo_random_weights: Path) -> None:
    clip = read_clip(media / "WolfgangLanger_Pexels.mp4", num_frames=2)
    adapter = YoloPose(weights=str(yolo_random_weights), conf=0.99, imgsz=320)
    result = adapter._load().predict(np.ascontiguousarray(clip.frames[0].image[:, :, ::-1]), conf=0.99, imgsz=320, verbose=False)[0]
    boxes, kps = results_to_arrays(result)
    assert boxes.shape == (0, 4) and kps.shape == (0, 17, 3)
    faces = track_faces({f.position: [Detection(Box(x1=100, y1=100, x2=160, y2=160))] for f in clip.frames})
    assert adapter.extract(clip, Cues(faces=faces)).poses == {}


def test_yolo_pose_missing_weights_fail_in_one_sentence_before_ultralytics(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ultralytics", None)  # importing it (or a hub download) would fail differently
    for weights in (None, str(tmp_path / "yolo11n-pose.pt"), str(tmp_path)):
        with pytest.raises(ExtractorUnavailable) as err:
            YoloPose(weights=weights)._load()
        msg = str(err.value)
        assert msg.startswith("YOLO-pose weights not found at") and "--pose-weights PATH" in msg and "\n" not in msg
    (tmp_path / "yolo11n-pose.pt").write_bytes(b"")
    with pytest.raises(ExtractorUnavailable, match=r"ultralytics is not installed; install it with .*sovtp\[ultralytics\]"):
        YoloPose(weights=str(tmp_path / "yolo11n-pose.pt"))._load()


def test_a_damaged_weights_file_is_named_as_such(tmp_path: Path) -> None:
    """An empty or truncated .pt got "check that torchvision imports beside torch", a fix
    that does nothing; the file itself needs replacing."""
    import_ultralytics()
    empty = tmp_path / "yolo11n-pose.pt"
    empty.write_bytes(b"")
    with pytest.raises(ExtractorUnavailable, match=r"the file is damaged or not YOLO-pose weights; download it again"):
        YoloPose(weights=str(empty))._load()


def test_extractor_params_for_an_extractor_not_in_the_run_are_refused(media: Path) -> None:
    """A misspelt name (`face` for `faces`) silently changed nothing."""
    import sovtp
    from sovtp.errors import UserError

    with pytest.raises(UserError, match=r"extractor_params names 'face', which the run does not use"):
        sovtp.extract_cues(media / "single_face.jpg", extractor_params={"face": {"overlap_eps": 0.3}}, cache_dir=None)


def test_pyfeat_preflight_loads_no_model_and_a_failed_load_is_not_retried(tmp_path, monkeypatch) -> None:
    """The runner's check before the first item only asks whether py-feat is installed (a
    parent process would hold its models for nothing); a load that fails (hub weights
    unreachable, seconds each) is not tried again for every item."""
    import sys

    package = tmp_path / "feat"
    package.mkdir()
    (package / "__init__.py").write_text(
        "CALLS = []\nclass Detector:\n    def __init__(self, **kw):\n        CALLS.append(kw)\n        raise OSError('hub unreachable')\n"
    )  # a stand-in for py-feat (not installable here), named as such
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "feat", raising=False)
    import feat

    extractor = PyFeatAUs()
    extractor.preflight()
    assert feat.CALLS == []
    for _ in range(3):
        with pytest.raises(ExtractorUnavailable, match="could not load its model weights"):
            extractor._load()
    assert len(feat.CALLS) == 1
