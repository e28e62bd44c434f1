"""Crash safety (issue 7, bar 1): a `sovtp run` killed with SIGKILL mid-way loses at
most the items in flight, and rerunning the same command finishes the folder with every
item in the results file exactly once; Ctrl-C (SIGINT) stops cleanly and says how to
resume.

The run is a real `sovtp` process answering through the OpenAI-compatible backend from
a slow local HTTP server (FaultServer: a FAKE model with canned answers, real HTTP on
127.0.0.1), so the kill lands while requests are in flight.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import psutil
import pytest

from tests.helpers.hostile import SOVTP, sovtp_env, varied_images, write_template
from tests.helpers.servers import FaultServer

N_ITEMS = 12


def _cmd(inputs: Path, out: Path, server: FaultServer, template: Path) -> list[str]:
    return [
        SOVTP, "run", str(inputs), "--backend", "openai", "--base-url", server.base_url, "--out", str(out),
        "--template", str(template), "--extractors", "faces", "--concurrency", "1", "--max-retries", "0",
    ]  # fmt: skip


def _lines(out: Path) -> list[str]:
    return out.read_text(encoding="utf-8").splitlines() if out.exists() else []


def _wait_for_records(proc: subprocess.Popen, out: Path, n: int, limit_s: float = 120) -> None:
    deadline = time.monotonic() + limit_s
    while len(_lines(out)) < n:
        assert proc.poll() is None, "the run ended before it could be interrupted: " + proc.stderr.read()[-2000:]
        assert time.monotonic() < deadline, "no records appeared"
        time.sleep(0.05)


@pytest.fixture
def folder(media: Path, tmp_path: Path) -> Path:
    varied_images(media / "single_face.jpg", tmp_path / "in", N_ITEMS)
    return tmp_path / "in"


def test_sigkill_then_rerun_holds_every_item_exactly_once(folder: Path, tmp_path: Path):
    out = tmp_path / "res" / "results.jsonl"
    template = write_template(tmp_path)
    env = sovtp_env(tmp_path, OPENAI_API_KEY="sk-local")
    with FaultServer(delay_s=0.4) as server:
        proc = subprocess.Popen(
            _cmd(folder, out, server, template), env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        try:
            _wait_for_records(proc, out, 3)
            helpers = psutil.Process(proc.pid).children(recursive=True)  # worker processes, if any
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
        assert proc.returncode == -signal.SIGKILL
        # Nothing leaked: the run's worker processes exit once their parent is gone.
        _, alive = psutil.wait_procs(helpers, timeout=20)
        for p in alive:
            p.kill()
        assert not alive, f"processes outlived the killed run: {[p.pid for p in alive]}"
        survived = _lines(out)
        assert 3 <= len(survived) < N_ITEMS, "the kill must land mid-way"
        done_before = [json.loads(line) for line in survived]  # every line that exists is whole JSON
        assert all(r["status"] == "ok" for r in done_before)

        # A kill during a write would leave a torn last line: the rerun must cut it off.
        with open(out, "a", encoding="utf-8") as fh:
            fh.write('{"path": "torn-by-a-crash", "sta')
        # Resume is by content, not path: a finished item renamed since is not redone.
        moved = folder / Path(done_before[0]["path"]).name
        moved.rename(moved.with_name("renamed_" + moved.name))

        server.reset_counts()
        server.delay_s = 0.02
        rerun = subprocess.run(_cmd(folder, out, server, template), env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
        assert rerun.returncode == 0, rerun.stderr[-3000:]
        assert f"{len(done_before)} already done" in rerun.stderr

    records = [json.loads(line) for line in _lines(out)]
    # Only the unfinished items were asked again (an item killed between its answer being
    # cached and its record being written comes back from the response cache instead).
    redone = [r for r in records if r["content_hash"] not in {d["content_hash"] for d in done_before}]
    assert len(redone) == N_ITEMS - len(done_before)
    assert server.count == sum(not r["cached"] for r in redone)
    hashes = [r["content_hash"] for r in records]
    assert len(records) == N_ITEMS and len(set(hashes)) == N_ITEMS  # every item, exactly once
    assert all(r["status"] == "ok" and r["label"] == "happy" for r in records)
    assert not any("torn-by-a-crash" in line for line in _lines(out))
    manifest = json.loads((out.parent / "results.manifest.json").read_text())
    assert manifest["summary"]["skipped_already_done"] == len(done_before)
    assert manifest["summary"]["interrupted"] is False


@pytest.mark.parametrize(("stop", "code", "said"), [(signal.SIGINT, 130, "Interrupted"), (signal.SIGTERM, 143, "Terminated")])
def test_ctrl_c_stops_cleanly_and_says_how_to_resume(folder: Path, tmp_path: Path, stop: int, code: int, said: str):
    """Ctrl-C, and SIGTERM (Slurm's time limit, Kubernetes preemption, `kill`), which
    before ended the run at once: exit 143, no manifest, no word on resuming."""
    out = tmp_path / "results.jsonl"
    template = write_template(tmp_path)
    env = sovtp_env(tmp_path, OPENAI_API_KEY="sk-local")
    with FaultServer(delay_s=0.8) as server:
        # Its own process group, so Ctrl-C can be sent as a terminal does: to the whole
        # foreground group (the run and any worker processes it started).
        proc = subprocess.Popen(
            _cmd(folder, out, server, template),
            env=env,
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        try:
            _wait_for_records(proc, out, 1)
            helpers = psutil.Process(proc.pid).children(recursive=True)
            os.killpg(proc.pid, stop)
            _, stderr = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
        _, alive = psutil.wait_procs(helpers, timeout=20)
        for p in alive:
            p.kill()
        assert not alive, f"processes outlived the interrupted run: {[p.pid for p in alive]}"
        assert proc.returncode == code, stderr[-3000:]
        assert said in stderr and "run the same command again to resume" in stderr
        assert str(out) in stderr  # says where the finished work is
        assert "Traceback" not in stderr
        done = [json.loads(line) for line in _lines(out)]  # whole lines only
        assert 1 <= len(done) < N_ITEMS
        manifest = json.loads((tmp_path / "results.manifest.json").read_text())
        assert manifest["summary"]["interrupted"] is True

        server.delay_s = 0.02
        rerun = subprocess.run(_cmd(folder, out, server, template), env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
        assert rerun.returncode == 0, rerun.stderr[-3000:]
    records = [json.loads(line) for line in _lines(out)]
    assert len(records) == N_ITEMS and len({r["content_hash"] for r in records}) == N_ITEMS
