"""The py-feat and ultralytics adapters' conversions, on real outputs where they exist here."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from sovtp.extractors.pyfeat_adapter import fex_to_cues
from sovtp.extractors.yolo_pose import COCO_TO_BLAZE, results_to_arrays, yolo_arrays_to_poses

from sovtp.tracking import Detection, track_faces
from sovtp.types import Box


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
    results = pytest.importorskip(
        "ultralytics.engine.results",
        reason="ultralytics is not installed here: it needs torchvision (a CUDA build on the registry that does not import beside this CPU torch) and opencv-python, which would clobber mediapipe's opencv-contrib",
    )
    import torch

    boxes, kps = _people([(100, 100)])
    data = torch.tensor(np.concatenate([boxes, np.array([[0.9, 0.0]])], axis=1), dtype=torch.float32)
    res = results.Results(
        np.zeros((480, 640, 3), np.uint8), path="x.jpg", names={0: "person"}, boxes=data, keypoints=torch.tensor(kps, dtype=torch.float32)
    )
    b, k = results_to_arrays(res)
    faces = track_faces({0: [Detection(Box(x1=80, y1=80, x2=120, y2=120))]})
    poses = yolo_arrays_to_poses({0: (b, k)}, faces)
    assert poses[1].keypoints[0][0][:2] == (100.0, 100.0)
