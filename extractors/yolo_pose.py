"""Multi-person body pose in one pass with an ultralytics YOLO-pose model, for users who
have its weights (``weights`` = path to e.g. ``yolo11n-pose.pt``).

Licence: ultralytics and its YOLO weights are AGPL-3.0 (or an Enterprise licence);
using this adapter makes your deployment subject to those terms. It is optional and not
installed by default (``pip install 'sovtp[ultralytics]'``). A torchvision wheel whose
compiled ops do not load beside your torch is made to work by
``sovtp.backends._torchvision_shim`` (it gives ``torchvision::nms`` a pure-torch CPU kernel).
The weights path is checked first, so ultralytics never tries to download missing weights.

YOLO gives 17 COCO keypoints; they are stored at their BlazePose (33-point) indices, the
unused ones with visibility 0, so posture rules and renderers read one layout.
Conversion is the pure function :func:`yolo_arrays_to_poses` (arrays in, poses out).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from sovtp.extractors.posture import posture_phrases

from sovtp.extract import ExtractorUnavailable
from sovtp.types import Clip, Cues, FaceTrack, Pose

# COCO-17 index -> BlazePose-33 index.
COCO_TO_BLAZE = (0, 2, 5, 7, 8, 11, 12, 13, 14, 15, 16, 23, 24, 25, 26, 27, 28)


def to_blaze(kp17: np.ndarray) -> list[tuple[float, float, float]]:
    """17 COCO keypoints (x, y, conf) as a 33-point BlazePose list (others invisible)."""
    out = [(0.0, 0.0, 0.0)] * 33
    for coco, blaze in enumerate(COCO_TO_BLAZE):
        x, y, c = (float(v) for v in kp17[coco][:3])
        out[blaze] = (round(x, 2), round(y, 2), round(c, 3))
    return out


def match_people(person_boxes: np.ndarray, keypoints: np.ndarray, faces: Sequence[FaceTrack], position: int) -> dict[int, int]:
    """Face ID -> person row, for the faces seen at ``position``: a person matches a face
    when the face box's centre lies in the person box and near the person's head
    keypoints (nose/eyes/ears); greedy, closest head first."""
    pairs: list[tuple[float, int, int]] = []
    for track in faces:
        obs = track.at(position)
        if obs is None:
            continue
        cx, cy = obs.box.center
        size = max(obs.box.width, obs.box.height, 1.0)
        for row in range(len(person_boxes)):
            x1, y1, x2, y2 = person_boxes[row][:4]
            if not (x1 <= cx <= x2 and y1 <= cy <= y2):
                continue
            head = keypoints[row][:5]
            vis = head[head[:, 2] > 0.3]
            ref = vis[:, :2].mean(axis=0) if len(vis) else np.array([(x1 + x2) / 2, y1 + 0.1 * (y2 - y1)])
            dist = float(np.hypot(ref[0] - cx, ref[1] - cy)) / size
            if dist < 1.5:
                pairs.append((dist, track.id, row))
    pairs.sort()
    taken_f: set[int] = set()
    taken_r: set[int] = set()
    out: dict[int, int] = {}
    for _, fid, row in pairs:
        if fid not in taken_f and row not in taken_r:
            out[fid] = row
            taken_f.add(fid)
            taken_r.add(row)
    return out


def yolo_arrays_to_poses(frames: Mapping[int, tuple[np.ndarray, np.ndarray]], faces: Sequence[FaceTrack]) -> dict[int, Pose]:
    """Poses by face ID from per-frame YOLO arrays ``{position: (boxes Nx4+, keypoints Nx17x3)}``."""
    series: dict[int, dict[int, list[tuple[float, float, float]]]] = {}
    for position, (boxes, kps) in sorted(frames.items()):
        boxes, kps = np.asarray(boxes, dtype=np.float64), np.asarray(kps, dtype=np.float64)
        if kps.ndim != 3 or len(kps) == 0:
            continue
        for fid, row in match_people(boxes, kps, faces, position).items():
            series.setdefault(fid, {})[position] = to_blaze(kps[row])
    return {fid: Pose(person_id=fid, provider="yolo-pose", keypoints=s, posture=posture_phrases(s)) for fid, s in sorted(series.items())}


def results_to_arrays(result: Any) -> tuple[np.ndarray, np.ndarray]:
    """(boxes Nx4, keypoints Nx17x3) from one ultralytics ``Results``."""
    if result.keypoints is None or result.boxes is None:
        return np.zeros((0, 4)), np.zeros((0, 17, 3))
    boxes = result.boxes.xyxy
    kps = result.keypoints.data
    boxes = boxes.cpu().numpy() if hasattr(boxes, "cpu") else np.asarray(boxes)
    kps = kps.cpu().numpy() if hasattr(kps, "cpu") else np.asarray(kps)
    if kps.shape[-1] == 2:  # no confidences: treat every point as visible
        kps = np.concatenate([kps, np.ones(kps.shape[:-1] + (1,))], axis=-1)
    return boxes, kps


class YoloPose:
    """Multi-person pose with ultralytics YOLO-pose weights (AGPL-3.0, see module docstring)."""

    name: ClassVar[str] = "yolo_pose"
    version: ClassVar[str] = "1"
    provides: ClassVar[tuple[str, ...]] = ("pose",)
    requires: ClassVar[tuple[str, ...]] = ("faces",)

    def __init__(self, weights: str | None = None, conf: float = 0.25, imgsz: int = 640) -> None:
        self.weights = weights
        self.conf = float(conf)
        self.imgsz = int(imgsz)
        self._model: Any = None

    @property
    def params(self) -> Mapping[str, Any]:
        return {"weights": str(self.weights), "conf": self.conf, "imgsz": self.imgsz}

    def _load(self) -> Any:
        if self._model is not None:
            return self._model
        if not self.weights or not Path(self.weights).is_file():
            raise ExtractorUnavailable(
                f"YOLO-pose weights not found at {self.weights!r}; pass an existing file with --pose-weights PATH, such as yolo11n-pose.pt, or use the mediapipe 'pose' extractor"
            )
        try:
            # Before ultralytics imports torchvision: a CUDA-built torchvision beside a CPU
            # torch then imports, and torchvision::nms (run after every prediction) gets a
            # pure-torch CPU kernel.
            from sovtp.backends._torchvision_shim import ensure_torchvision  # noqa: PLC0415

            ensure_torchvision()
            # No network from ultralytics (DNS probes, downloads, usage events) unless the user
            # asks for it; read once, when ultralytics is first imported.
            os.environ.setdefault("YOLO_OFFLINE", "true")
            from ultralytics import YOLO  # noqa: PLC0415

            self._model = YOLO(self.weights)
        except ImportError as exc:
            missing = (exc.name or "ultralytics").split(".")[0]
            if missing == "ultralytics":
                raise ExtractorUnavailable(
                    "ultralytics is not installed; install it with `pip install 'sovtp[ultralytics]'` (AGPL-3.0) or use the mediapipe 'pose' extractor"
                ) from None
            raise ExtractorUnavailable(
                f"ultralytics cannot import its dependency {missing!r}; install it beside ultralytics or use the mediapipe 'pose' extractor"
            ) from None
        except Exception as exc:
            damaged = (
                isinstance(exc, (EOFError, ValueError, KeyError)) or "pickle" in type(exc).__name__.lower() or "zip" in str(exc).lower()
            )
            if damaged:  # an empty, truncated or foreign file, not an environment problem
                raise ExtractorUnavailable(
                    f"ultralytics could not read {self.weights} ({type(exc).__name__}): the file is damaged or not YOLO-pose weights; download it again, or use the mediapipe 'pose' extractor"
                ) from None
            raise ExtractorUnavailable(
                f"ultralytics could not load {self.weights} ({type(exc).__name__}); check that torchvision imports beside torch, or use the mediapipe 'pose' extractor"
            ) from None
        return self._model

    def extract(self, clip: Clip, cues: Cues) -> Cues:
        model = self._load()
        arrays: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        for frame in clip.frames:
            result = model.predict(np.ascontiguousarray(frame.image[:, :, ::-1]), conf=self.conf, imgsz=self.imgsz, verbose=False)[0]
            arrays[frame.position] = results_to_arrays(result)
        return Cues(poses=yolo_arrays_to_poses(arrays, cues.faces))
