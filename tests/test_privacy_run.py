"""Privacy modes end to end (issue 7, bar 5): what actually leaves the machine.

`sovtp run --privacy ...` talks to a capturing local server (FaultServer: a FAKE model
with canned answers behind real HTTP on 127.0.0.1, recording every request body). The
test decodes the images from the captured data URLs and runs mediapipe's face detector
(sovtp's own `faces` extractor, both of its models) on them: in blur-all no face may
be found, while the text cues (AU text, posture text) still reach the model. A control
run with --privacy none proves the detector does find the faces in sent images.
"""

from __future__ import annotations

import base64
import io
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from tests.helpers.hostile import SOVTP, sovtp_env
from tests.helpers.servers import FaultServer

INPUTS = ("multi_face.jpg", "single_face.mp4")


def _sent(requests: list[dict]) -> list[tuple[list[np.ndarray], str]]:
    """(images, text) of each captured chat request."""
    from PIL import Image

    out = []
    for rq in requests:
        images, texts = [], []
        for m in rq["body"]["messages"]:
            content = m["content"] if isinstance(m["content"], list) else [{"type": "text", "text": m["content"]}]
            for part in content:
                if part["type"] == "image_url":
                    data = part["image_url"]["url"].split(",", 1)[1]
                    images.append(np.asarray(Image.open(io.BytesIO(base64.b64decode(data))).convert("RGB")))
                elif part["type"] == "text":
                    texts.append(part["text"])
        out.append((images, "\n".join(texts)))
    return out


def _detect(image: np.ndarray) -> list:
    """Faces that mediapipe still finds: the full-range model, and the short-range one."""
    from sovtp.extractors.faces import MediapipeFaces

    found = []
    for model in ("full", "short"):
        found += MediapipeFaces(model=model, fallback_short=False).detect(image)
    return found


def _run(folder: Path, tmp: Path, privacy: str, *extra: str) -> tuple[list[dict], Path]:
    out = tmp / f"results-{privacy}.jsonl"
    with FaultServer() as server:
        proc = subprocess.run(
            [SOVTP, "run", str(folder), "--backend", "openai", "--base-url", server.base_url, "--out", str(out), "--privacy", privacy, "--frames", "2", "--workers", "1", *extra],
            env=sovtp_env(tmp, OPENAI_API_KEY="sk-local"), capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        requests = list(server.requests)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Notice:" not in proc.stderr  # the server is on this machine: no notice
    return requests, out


@pytest.fixture(scope="module")
def folder(media: Path, tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("privacy") / "in"
    d.mkdir()
    for name in INPUTS:
        shutil.copy(media / name, d / name)
    return d


def test_blur_all_sends_no_detectable_face_but_keeps_the_text_cues(folder: Path, tmp_path: Path):
    requests, out = _run(folder, tmp_path, "blur-all")
    sent = _sent(requests)
    assert len(sent) == len(INPUTS) and all(images for images, _ in sent)
    for images, _ in sent:
        for image in images:
            assert _detect(image) == [], "a face is still detectable in an image that left the machine"
    text = "\n".join(t for _, t in sent)
    assert "AU12 (lip corner puller)" in text and "geometric estimates from facial landmarks" in text  # AU text
    assert "posture:" in text or "Posture from body keypoints" in text  # pose text
    assert "every face is blurred" in text  # the model is told why faces look that way

    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records) == len(INPUTS)
    assert all(r["privacy"] == "blur-all" and r["status"] == "ok" for r in records)
    assert max(len(r["face_ids"]) for r in records) >= 4  # faces were found locally, then hidden
    manifest = json.loads(out.with_name(out.stem + ".manifest.json").read_text())
    assert manifest["config"]["privacy"] == "blur-all"

    # Control: without privacy the same detector finds the faces in what is sent.
    plain, _ = _run(folder, tmp_path, "none")
    assert all(_detect(image) for images, _ in _sent(plain) for image in images)


def test_blur_others_keeps_the_target_face_detectable(media: Path, tmp_path: Path):
    import sovtp

    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(media / "multi_face.jpg", folder / "group.jpg")
    requests, out = _run(folder, tmp_path, "blur-others")
    [(images, _)] = _sent(requests)
    [record] = [json.loads(line) for line in out.read_text().splitlines()]
    assert record["privacy"] == "blur-others"
    clip, cues = sovtp.extract_cues(folder / "group.jpg", extractors=("faces",), cache_dir=None)
    scale = images[0].shape[1] / clip.width
    boxes = {t.id: t.observations[0].box for t in cues.faces}
    assert record["target_id"] in boxes and len(boxes) >= 4
    found = _detect(images[0])
    assert found, "the target face must stay detectable"

    def overlaps(det, box) -> bool:
        b = det.box
        ix = max(0.0, min(b.x2, box.x2 * scale) - max(b.x1, box.x1 * scale))
        iy = max(0.0, min(b.y2, box.y2 * scale) - max(b.y1, box.y1 * scale))
        return ix * iy > 0.3 * min(b.area, (box.x2 - box.x1) * (box.y2 - box.y1) * scale * scale)

    assert any(overlaps(d, boxes[record["target_id"]]) for d in found)
    for fid, box in boxes.items():
        if fid != record["target_id"]:
            assert not any(overlaps(d, box) for d in found), f"face {fid} (not the target) is still detectable"


@pytest.mark.parametrize(
    "url, privacy, notice",
    [
        ("https://api.example.com/v1", "none", True),
        ("https://api.example.com/v1", "blur-all", False),
        ("http://127.0.0.1:8000/v1", "none", False),
    ],
)
def test_one_notice_when_faces_would_leave_the_machine_unblurred(url: str, privacy: str, notice: bool, capsys):
    from sovtp.cli import _warn_network

    _warn_network(url, privacy)  # reads the URL only; no request is made
    err = " ".join(capsys.readouterr().err.split())  # rich wraps long lines
    assert err.count("Notice:") == int(notice)
    if notice:
        assert "--privacy blur-others or blur-all" in err
