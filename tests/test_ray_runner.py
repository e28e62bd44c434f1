"""The Ray Data runner on a local Ray instance (2 CPUs) over the real fixture clips:
the same records as the local runner, resume across runners, and one-sentence errors.

Answers come from a real local HTTP server (``FaultServer``: a FAKE model whose
answer is a digest of the whole request, so equal answers mean equal prompts) and from
the transformers backend on the tiny local checkpoint."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

pytest.importorskip("ray", reason="Ray is an optional extra: pip install 'sovtp[ray]' to run these tests")
pytest.importorskip("ray.data", reason="Ray Data is missing: pip install 'sovtp[ray]'")

from sovtp.errors import UserError  # noqa: E402
from sovtp.inputs import discover  # noqa: E402
from sovtp.pipeline import RunConfig, run_items  # noqa: E402
from sovtp.results import load_results  # noqa: E402
from sovtp.runners.ray_runner import run_ray, start_ray  # noqa: E402
from tests.helpers.servers import FaultServer  # noqa: E402
from tests.test_workers import by_name, config_for, digest_reply, fixture_folder  # noqa: E402

PER_PATH = ("status", "label", "raw_answer", "face_ids", "frames", "target_id", "error")


@pytest.fixture(scope="module")
def local_ray():
    import ray

    started = start_ray(num_cpus=2)
    yield
    if started:
        ray.shutdown()


@pytest.fixture(scope="module")
def folder(media: Path, tmp_path_factory) -> Path:
    return fixture_folder(media, tmp_path_factory.mktemp("ray-inputs") / "videos")


def test_ray_runner_equals_local_runner(local_ray, folder: Path, tmp_path: Path):
    with FaultServer(reply=digest_reply) as server:
        cfg = config_for(server.base_url, tmp_path, workers=2)
        local = run_items(discover([folder]), replace(cfg, workers=1), tmp_path / "local.jsonl")
        local_requests = sorted(json.dumps(r["body"]["messages"], sort_keys=True) for r in server.requests)
        server.reset_counts()
        summary = run_ray(discover([folder]), cfg, tmp_path / "ray.jsonl")
        ray_requests = sorted(json.dumps(r["body"]["messages"], sort_keys=True) for r in server.requests)
    assert (summary.ok, summary.invalid, summary.errors) == (local.ok, local.invalid, local.errors) == (local.ok, local.invalid, 1)
    assert summary.extractor_runs == local.extractor_runs and summary.extractor_runs["faces"] == 5
    want, got = by_name(tmp_path / "local.jsonl"), by_name(tmp_path / "ray.jsonl")
    assert sorted(got) == sorted(want) == sorted(p.name for p in folder.iterdir())
    for name in want:
        assert got[name] == want[name], name
    assert ray_requests == local_requests  # byte-identical prompts, images included
    manifest = json.loads((tmp_path / "ray.manifest.json").read_text())
    assert manifest["runner"]["name"] == "ray" and manifest["summary"]["total"] == 6


def test_ray_resumes_a_local_run(local_ray, folder: Path, tmp_path: Path):
    out = tmp_path / "r.jsonl"
    items = discover([folder])
    with FaultServer(reply=digest_reply) as server:
        cfg = config_for(server.base_url, tmp_path, workers=1)
        run_items(items[:2], cfg, out)
        assert server.count == 2
        summary = run_ray(items, cfg, out)
        assert server.count == 5  # the 2 finished items were not asked again
    assert summary.skipped == 2 and summary.done == 4
    records = load_results(out)
    assert len(records) == len(out.read_text().splitlines()) == 6
    assert {Path(r.path).name for r in records} == {p.name for p in folder.iterdir()}


def test_ray_runner_with_the_tiny_transformers_model(local_ray, media: Path, tiny_vlm: Path, tmp_path: Path):
    """A local model answers inside a Ray actor: same labels and raw answers as locally."""
    folder = tmp_path / "videos"
    folder.mkdir()
    for name in ("single_face.mp4", "multi_face.jpg", "no_face.mp4"):
        shutil.copy(media / name, folder / name)
    cfg = RunConfig(
        backend="transformers",
        model=str(tiny_vlm),
        num_frames=2,
        max_tokens=8,
        workers=1,
        batch_size=1,
        cache_dir=None,
        backend_options={"device": "cpu"},
    )
    local = run_items(discover([folder]), cfg, tmp_path / "local.jsonl")
    summary = run_ray(discover([folder]), cfg, tmp_path / "ray.jsonl")
    assert summary.done == local.done == 3 and summary.errors == local.errors == 0
    want = {Path(r.path).name: r.model_dump(include=set(PER_PATH)) for r in load_results(tmp_path / "local.jsonl")}
    got = {Path(r.path).name: r.model_dump(include=set(PER_PATH)) for r in load_results(tmp_path / "ray.jsonl")}
    assert got == want


def test_dead_server_is_one_sentence_before_any_work(local_ray, folder: Path, tmp_path: Path):
    with FaultServer() as server:
        url = server.base_url
    with pytest.raises(UserError, match="Cannot reach the OpenAI-compatible server"):
        run_ray(discover([folder]), config_for(url, tmp_path, workers=2), tmp_path / "r.jsonl")
    assert not (tmp_path / "r.jsonl").exists() or (tmp_path / "r.jsonl").read_text() == ""
