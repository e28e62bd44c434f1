"""`sovtp run --backend vllm` end to end: the cue pipeline in this venv, the real vLLM
engine (CPU build) in .venv-vllm behind the bridge (mediapipe and vLLM need different
protobuf majors, so they cannot share one environment)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
VPY = ROOT / ".venv-vllm" / "bin" / "python"
SOVTP = str(Path(sys.executable).parent / "sovtp")

pytestmark = [
    pytest.mark.vllm,
    pytest.mark.skipif(not VPY.exists(), reason=".venv-vllm is missing; create it with: bash scripts/make_vllm_venv.sh"),
]


def test_run_with_the_vllm_engine_gives_labels_in_the_set(clip_dir: Path, tmp_path: Path, tiny_vlm: Path):
    out = tmp_path / "results.jsonl"
    env = {**os.environ, "VLLM_ENABLE_V1_MULTIPROCESSING": "0", "VLLM_CPU_KVCACHE_SPACE": "1", "SOVTP_CACHE_DIR": str(tmp_path / "cache")}
    cmd = [
        SOVTP, "run", str(clip_dir), "--backend", "vllm", "--model", str(tiny_vlm), "--vllm-python", str(VPY),
        "--dtype", "float32", "--engine-arg", "enforce_eager=true", "--engine-arg", "distributed_executor_backend=uni",
        "--engine-arg", "max_model_len=4096", "--engine-arg", 'mm_processor_kwargs={"max_pixels": 12544}',
        "--frames", "2", "--max-tokens", "16", "--structured", "choice", "--out", str(out),
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = {Path(r["path"]).name: r for r in map(json.loads, out.read_text().splitlines())}
    assert records.pop("corrupt.mp4")["status"] == "error"
    assert len(records) == 3
    for r in records.values():
        assert r["status"] == "ok" and r["decoding"] == "choice"
        assert r["label"] in ("happy", "sad", "neutral", "angry", "surprise", "disgust", "fear")
        assert r["usage"]["prompt_tokens"] > 100 and r["backend"] == "vllm"


def test_missing_vllm_environment_is_one_sentence(clip_dir: Path, tmp_path: Path):
    proc = subprocess.run(
        [SOVTP, "run", str(clip_dir), "--backend", "vllm", "--model", "m", "--vllm-python", str(tmp_path / "nope" / "python"), "--out", str(tmp_path / "r.jsonl")],
        capture_output=True, text=True, cwd=tmp_path, env={**os.environ, "SOVTP_CACHE_DIR": str(tmp_path / "cache")}, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 1
    assert "does not exist" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.gpu
def test_vllm_engine_on_a_gpu(clip_dir: Path, tmp_path: Path, tiny_vlm: Path):
    """On a CUDA machine: SOVTP_GPU_VLLM_PYTHON names the python of an environment with
    the CUDA build of vLLM (pip install vllm). Run with: pytest -m gpu."""
    gpu_python = os.environ.get("SOVTP_GPU_VLLM_PYTHON")
    if not gpu_python:
        pytest.skip("set SOVTP_GPU_VLLM_PYTHON to the python of a CUDA vLLM environment")
    out = tmp_path / "results.jsonl"
    env = {**os.environ, "SOVTP_CACHE_DIR": str(tmp_path / "cache")}
    cmd = [
        SOVTP, "run", str(clip_dir), "--backend", "vllm", "--model", str(tiny_vlm), "--vllm-python", gpu_python,
        "--engine-arg", "gpu_memory_utilization=0.2", "--engine-arg", "max_model_len=4096", "--frames", "4",
        "--max-tokens", "64", "--out", str(out),
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(records) == 4
    assert all(r["status"] in ("ok", "invalid") for r in records if not r["path"].endswith("corrupt.mp4"))
