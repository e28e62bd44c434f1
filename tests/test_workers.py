"""Cue extraction in a process pool (``--workers N``): the same records as the
single-thread runner, over real clips, answered by a real local HTTP server whose
(canned, FAKE-model) answer is a digest of the request, so equal answers mean the
workers composed byte-identical prompts."""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sovtp.inputs import discover
from sovtp.pipeline import RunConfig, run_items
from sovtp.results import load_results
from tests.helpers.servers import FaultServer

LABELS = ("happy", "sad", "neutral", "angry", "surprise", "disgust", "fear")
COMPARED = (
    "status",
    "label",
    "raw_answer",
    "face_ids",
    "frames",
    "target_id",
    "cues_ran",
    "cues_skipped",
    "error",
    "decoding",
    "content_hash",
    "run_key",
)


def digest_reply(body: dict[str, Any]) -> str:
    """A deterministic answer that depends on every byte of the prompt (text and images):
    a label picked by the request digest, as JSON when a schema is asked for."""
    digest = hashlib.sha256(json.dumps(body.get("messages"), sort_keys=True).encode()).hexdigest()
    label = LABELS[int(digest[:8], 16) % len(LABELS)]
    rf = body.get("response_format") or {}
    schema = ((body.get("structured_outputs") or {}).get("json")) or (rf.get("json_schema") or {}).get("schema")
    if schema:
        out: dict[str, Any] = {}
        for name, spec in schema.get("properties", {}).items():
            if "enum" in spec:
                out[name] = label if label in spec["enum"] else spec["enum"][0]
            elif spec.get("type") == "object":
                out[name] = {k: v["enum"][0] for k, v in spec.get("properties", {}).items()}
            else:
                out[name] = f"seen {digest[:12]}"
        return json.dumps(out)
    return f"Request {digest[:12]}.\nLabel: {label}"


def fixture_folder(media: Path, dest: Path) -> Path:
    """Real clips and photos (one video with faces, one without, a group photo, a
    portrait) plus a corrupt file."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("single_face.mp4", "no_face.mp4", "multi_face.jpg", "0-f1-su-ph.jpg", "WolfgangLanger_Pexels.mp4"):
        shutil.copy(media / name, dest / name)
    (dest / "corrupt.mp4").write_bytes(b"not a video at all\n" * 20)
    return dest


def by_name(path: Path) -> dict[str, dict[str, Any]]:
    return {Path(r.path).name: r.model_dump(include=set(COMPARED)) for r in load_results(path)}


def config_for(url: str, tmp: Path, workers: int, **kw: Any) -> RunConfig:
    return RunConfig(
        backend="openai", model="test-model", num_frames=3, workers=workers, concurrency=3, cache_dir=None, max_tokens=64,
        backend_options={"base_url": url, "max_retries": 1, "timeout": 30.0}, **kw,
    )  # fmt: skip


@pytest.fixture(scope="module")
def folder(media: Path, tmp_path_factory) -> Path:
    return fixture_folder(media, tmp_path_factory.mktemp("inputs") / "videos")


@pytest.fixture(scope="module")
def single_thread(folder: Path, tmp_path_factory) -> tuple[dict[str, dict[str, Any]], list[dict[str, Any]]]:
    """The reference: the single-thread runner's records and the requests it sent."""
    tmp = tmp_path_factory.mktemp("one")
    with FaultServer(reply=digest_reply) as server:
        summary = run_items(discover([folder]), config_for(server.base_url, tmp, workers=1), tmp / "r.jsonl")
        requests = [r["body"] for r in server.requests]
    assert summary.ok + summary.invalid == 5 and summary.errors == 1
    return by_name(tmp / "r.jsonl"), requests


def test_two_workers_give_the_single_thread_records(folder: Path, single_thread, tmp_path: Path):
    reference, ref_requests = single_thread
    with FaultServer(reply=digest_reply) as server:
        summary = run_items(discover([folder]), config_for(server.base_url, tmp_path, workers=2), tmp_path / "r.jsonl")
        requests = [r["body"] for r in server.requests]
    assert summary.total == 6 and summary.errors == 1
    got = by_name(tmp_path / "r.jsonl")
    assert sorted(got) == sorted(reference)
    for name in reference:
        assert got[name] == reference[name], name
    assert got["corrupt.mp4"]["status"] == "error" and "corrupt.mp4" in got["corrupt.mp4"]["error"]
    assert len(got["multi_face.jpg"]["face_ids"]) >= 3 and got["no_face.mp4"]["face_ids"] == []
    # the prompts themselves (text and every image's bytes) are identical, item by item
    key = lambda b: json.dumps(b["messages"], sort_keys=True)  # noqa: E731
    assert sorted(map(key, requests)) == sorted(map(key, ref_requests))
    manifest = json.loads((tmp_path / "r.manifest.json").read_text())
    assert manifest["config"]["workers"] == 2
    assert manifest["summary"]["ok"] + manifest["summary"]["invalid"] == 5


def test_pool_counts_extractor_runs_and_cue_cache_hits_from_workers(folder: Path, tmp_path: Path):
    with FaultServer(reply=digest_reply) as server:
        cfg = replace(config_for(server.base_url, tmp_path, workers=2), cache_dir=tmp_path / "cache")
        first = run_items(discover([folder]), cfg, tmp_path / "a.jsonl")
        second = run_items(discover([folder]), cfg, tmp_path / "b.jsonl")  # new results file: cues come from the cache
    assert first.extractor_runs.get("faces") == 5 and first.cue_cache_misses > 0
    assert second.extractor_runs == {} and second.cue_cache_hits == sum(first.extractor_runs.values())  # every run was cached
    assert by_name(tmp_path / "a.jsonl") == by_name(tmp_path / "b.jsonl")


def test_run_started_with_workers_resumes_with_one(folder: Path, tmp_path: Path):
    out = tmp_path / "r.jsonl"
    with FaultServer(reply=digest_reply) as server:
        run_items(discover([folder]), config_for(server.base_url, tmp_path, workers=2), out)
        n = server.count
        again = run_items(discover([folder]), config_for(server.base_url, tmp_path, workers=1), out)
        assert server.count == n  # nothing was asked again
    assert again.skipped == 6 and again.done == 0  # the corrupt file's error is final too


def test_worker_results_carry_no_frame_pixels(media: Path):
    """Only indices/timestamps/sizes of decoded frames cross the process boundary."""
    from sovtp.inputs import InputItem
    from sovtp.pipeline import Preparer, run_key_for
    from sovtp.runners.workers import slim
    from sovtp.types import file_sha256

    cfg = RunConfig(num_frames=2, cache_dir=None, extractors=("faces",))
    path = media / "single_face.mp4"
    h = file_sha256(path)
    p = Preparer(cfg).prepare(InputItem(path), run_key_for(h, cfg), h)
    s = slim(p)
    assert all(f.image.nbytes == 0 for f in s.clip.frames)
    assert [(f.index, f.timestamp, f.width, f.height) for f in s.clip.frames] == [
        (f.index, f.timestamp, f.width, f.height) for f in p.clip.frames
    ]
    assert s.prompt is p.prompt and all(np.asarray(i.image).nbytes > 0 for i in s.prompt.images)


def test_resolve_workers():
    from sovtp.runners.workers import default_workers, resolve_workers

    assert resolve_workers(None, 100) == default_workers()
    assert resolve_workers(4, 2) == 2 and resolve_workers(3, 0) == 1
    with pytest.raises(ValueError, match="--workers 1 or more"):
        resolve_workers(0, 5)
