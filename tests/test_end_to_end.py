"""The walking skeleton, as a user runs it: `sovtp prompt` and `sovtp run` on a folder
of real clips (plus a corrupt file), with the transformers backend on the tiny local
checkpoint. Commands go through the installed `sovtp` console script."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

SOVTP = str(Path(sys.executable).parent / "sovtp")


def _sovtp(*args: str, cwd: Path, env_extra: dict | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "SOVTP_CACHE_DIR": str(cwd / "cache"), **(env_extra or {})}
    return subprocess.run([SOVTP, *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=900)


def test_prompt_writes_annotated_frames_with_numbered_boxes_and_landmarks(clip_dir: Path, tmp_path: Path):
    import sovtp
    from sovtp.video import read_clip

    proc = _sovtp("prompt", str(clip_dir), "--out", str(tmp_path / "preview"), "--frames", "4", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "corrupt.mp4" in proc.stderr  # the bad file is reported, the others go on
    pngs = sorted((tmp_path / "preview").rglob("*.png"))
    assert pngs, proc.stderr
    # multi_face.jpg: every detected face got a box and landmarks drawn on the full frame
    clip, cues = sovtp.extract_cues(clip_dir / "multi_face.jpg", num_frames=1, cache_dir=tmp_path / "cache")
    assert len(cues.faces) >= 3
    folder = next(p for p in (tmp_path / "preview").iterdir() if p.name.startswith("multi_face"))
    annotated = np.asarray(Image.open(sorted(folder.glob("*.png"))[0]).convert("RGB")).astype(int)
    raw = read_clip(clip_dir / "multi_face.jpg").frames[0].image.astype(int)
    assert annotated.shape == raw.shape  # the full frame, never a crop
    for face in cues.faces:
        obs = face.observations[0]
        x1, y1, x2, y2 = obs.box.clipped(clip.width, clip.height).as_int()
        edge = np.abs(annotated[y1:y2, x1 : x1 + 3] - raw[y1:y2, x1 : x1 + 3]).sum(axis=2)
        assert (edge > 60).mean() > 0.5, f"face {face.id} has no box edge drawn"
        assert obs.landmarks and len(obs.landmarks) == 478
        pts = np.asarray(obs.landmarks)[::40, :2].astype(int)
        changed = [np.abs(annotated[y, x] - raw[y, x]).sum() > 30 for x, y in pts if 0 <= x < clip.width and 0 <= y < clip.height]
        assert np.mean(changed) > 0.3, f"face {face.id} has no landmarks drawn"
    text = next(folder.glob("*.txt")).read_text()
    assert "happy" in text and "action unit" in text.lower()


def test_run_writes_one_record_per_input(clip_dir: Path, tmp_path: Path, tiny_vlm: Path):
    out = tmp_path / "results.jsonl"
    command = [
        "run",
        str(clip_dir),
        "--backend",
        "transformers",
        "--model",
        str(tiny_vlm),
        "--out",
        str(out),
        "--frames",
        "2",
        "--max-tokens",
        "24",
    ]
    proc = _sovtp(*command, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = [json.loads(line) for line in out.read_text().splitlines()]
    by_name = {Path(r["path"]).name: r for r in records}
    assert sorted(by_name) == ["corrupt.mp4", "multi_face.jpg", "no_face.mp4", "single_face.mp4"]
    bad = by_name.pop("corrupt.mp4")
    assert bad["status"] == "error" and "corrupt.mp4" in bad["error"]
    assert bad["error"] in proc.stderr  # said on the terminal as it happened, not only in the file
    for r in by_name.values():
        assert r["status"] in ("ok", "invalid")
        if r["status"] == "ok":
            assert r["label"] in ("happy", "sad", "neutral", "angry", "surprise", "disgust", "fear")
        else:
            assert r["label"] is None and r["raw_answer"] is not None
        assert r["model"] == str(tiny_vlm) and r["template"] == "sovtp" and len(r["template_hash"]) == 64
        assert r["frames"] and all("timestamp" in f for f in r["frames"])
        assert {"decode", "render", "compose", "answer"} <= set(r["timings"])
    assert by_name["no_face.mp4"]["face_ids"] == []
    # the root cause, down the chain (before: "aus needs landmarks cues, which no extractor provided")
    assert set(by_name["no_face.mp4"]["cues_skipped"].values()) == {"no face was found in any sampled frame"}
    assert "scene" in by_name["no_face.mp4"]["cues_ran"]  # motion and light need no face (before: skipped)
    assert len(by_name["multi_face.jpg"]["face_ids"]) >= 3
    manifest = json.loads((tmp_path / "results.manifest.json").read_text())
    assert manifest["summary"]["total"] == 4

    # a rerun with the same output resumes: nothing left to do
    again = _sovtp(*command, cwd=tmp_path)
    assert again.returncode == 0
    assert len(out.read_text().splitlines()) == 4
    assert "already done" in again.stderr


def test_the_python_api_takes_backend_options_as_the_cli_does():
    """`sovtp.run(..., backend_options={...})` raised a TypeError from dataclasses.replace,
    and the CLI's --vllm-python / --engine-arg had no flat keyword."""
    import sovtp

    cfg = sovtp.make_config(
        backend="vllm", model="m", backend_options={"base_url": "http://127.0.0.1:1/v1", "timeout": 5.0}, timeout=9.0,
        vllm_python="/opt/vllm/bin/python", engine_kwargs={"max_model_len": 4096},
    )  # fmt: skip
    assert cfg.backend_options == {
        "base_url": "http://127.0.0.1:1/v1", "timeout": 9.0, "vllm_python": "/opt/vllm/bin/python", "engine_kwargs": {"max_model_len": 4096},
    }  # fmt: skip
