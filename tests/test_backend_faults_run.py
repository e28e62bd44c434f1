"""Backend faults in a whole run (issue 7, bar 3).

A FAKE model (canned answers) behind a real HTTP server on 127.0.0.1 (FaultServer)
fails 20% of the chat requests with the faults hosted APIs really have: 429 with
Retry-After, 500, a stall past the client timeout, and a connection reset. The run
must complete with every item answered or recorded as an error after its retries, and
the retry counts must be in the results; a dead server must fail fast, in one sentence,
before the folder is decoded.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.helpers.hostile import SOVTP, dead_port, sovtp_env, varied_images, write_template
from tests.helpers.servers import FaultServer

FAULTS = ("429", "500", "stall", "reset")


def fault_plan(n: int, every: int = 5) -> list[str]:
    """``n`` actions where every ``every``-th request fails (20% for 5), the kinds of
    fault taking turns, so any prefix of the run sees the same mix."""
    return [FAULTS[(i // every) % len(FAULTS)] if i % every == 2 else "ok" for i in range(n)]


def _run(inputs: Path, out: Path, server: FaultServer, tmp: Path, *extra: str) -> subprocess.CompletedProcess:
    cmd = [
        SOVTP, "run", str(inputs), "--backend", "openai", "--base-url", server.base_url if server else "", "--out", str(out),
        "--template", str(write_template(tmp)), "--extractors", "faces", "--no-cache", "--workers", "1", *extra,
    ]  # fmt: skip
    return subprocess.run(cmd, env=sovtp_env(tmp, OPENAI_API_KEY="sk-local"), cwd=tmp, capture_output=True, text=True, timeout=600)


def test_run_completes_under_a_20_percent_fault_mix_with_retries_recorded(media: Path, tmp_path: Path):
    n_items, max_retries = 16, 3
    inputs = tmp_path / "in"
    varied_images(media / "single_face.jpg", inputs, n_items)
    out = tmp_path / "results.jsonl"
    plan = fault_plan(n_items * 3)
    with FaultServer(plan=plan, retry_after=1, stall_s=3.0) as server:
        proc = _run(inputs, out, server, tmp_path, "--concurrency", "4", "--timeout", "1", "--max-retries", str(max_retries))
        requests = list(server.requests)
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records) == n_items and len({r["content_hash"] for r in records}) == n_items

    faults = [r["action"] for r in requests if r["action"] != "ok"]
    assert set(faults) == set(FAULTS), "every kind of fault was injected"
    assert 0.1 <= len(faults) / len(requests) <= 0.3
    errors = [r for r in records if r["status"] == "error"]
    for r in records:
        assert isinstance(r["retries"], int) and 0 <= r["retries"] <= max_retries
        if r["status"] == "error":  # recorded, with its reason, after all its retries
            assert r["retries"] == max_retries and f"after {max_retries} retries" in r["error"]
        else:
            assert r["status"] == "ok" and r["label"] == "happy"
    # Every request was an item's first try or a counted retry; every fault was retried,
    # except the last try of an item that ran out of retries.
    assert len(requests) == n_items + sum(r["retries"] for r in records)
    assert len(faults) == sum(r["retries"] for r in records) + len(errors)
    assert sum(r["retries"] for r in records) >= 3


def test_an_item_that_keeps_failing_is_an_error_record_after_its_retries(media: Path, tmp_path: Path):
    inputs = tmp_path / "in"
    varied_images(media / "single_face.jpg", inputs, 2)
    out = tmp_path / "results.jsonl"
    with FaultServer(default="500") as server:
        proc = _run(inputs, out, server, tmp_path, "--max-retries", "2")
        assert server.count == 2 * 3
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["status"] for r in records] == ["error", "error"]
    for r in records:
        assert r["retries"] == 2 and "HTTP 500" in r["error"] and "after 2 retries" in r["error"]
        assert r["meta"]["error_kind"] == "backend"  # retryable: a rerun tries again
    assert "2 error(s)" in proc.stderr

    # Rerun once the server is healthy: the failed items are asked again, and the file
    # still holds each item exactly once (their error records are replaced).
    with FaultServer() as server:
        again = _run(inputs, out, server, tmp_path)
        assert server.count == 2
    assert again.returncode == 0, again.stderr[-3000:]
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["status"] for r in records] == ["ok", "ok"] and len({r["content_hash"] for r in records}) == 2


def test_dead_server_fails_fast_with_one_sentence_before_decoding(media: Path, tmp_path: Path):
    inputs = tmp_path / "in"
    varied_images(media / "single_face.jpg", inputs, 30)
    out = tmp_path / "results.jsonl"
    base_url = f"http://127.0.0.1:{dead_port()}/v1"
    cmd = [
        SOVTP,
        "run",
        str(inputs),
        "--backend",
        "openai",
        "--base-url",
        base_url,
        "--out",
        str(out),
        "--template",
        str(write_template(tmp_path)),
        "--extractors",
        "faces",
        "--workers",
        "1",
    ]
    proc = subprocess.run(
        cmd, env=sovtp_env(tmp_path, OPENAI_API_KEY="sk-local"), cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 1
    msg = [line for line in proc.stderr.splitlines() if line.startswith("Error:")]
    assert msg == [
        f"Error: Cannot reach the OpenAI-compatible server at {base_url} (connection refused or dropped); start it or fix --base-url / OPENAI_BASE_URL."
    ]
    assert "Traceback" not in proc.stderr
    # Nothing was decoded or written: no records, no cue cache entries.
    assert not out.exists() or out.read_text() == ""
    cues = tmp_path / "cache" / "cues"
    assert not cues.exists() or not any(p.is_file() for p in cues.rglob("*"))


def test_rerunning_a_finished_run_needs_no_server(media: Path, tmp_path: Path):
    """Resume checks the results file before the backend: when every item is done, the
    rerun contacts no server (here: none is listening any more) and loads no model.
    (With --model given: without it the run key takes the model the server reports.)"""
    inputs = tmp_path / "in"
    varied_images(media / "single_face.jpg", inputs, 3)
    out = tmp_path / "results.jsonl"
    with FaultServer(plan=["ok"] * 3) as server:
        first = _run(inputs, out, server, tmp_path, "--model", server.model_id)
    assert first.returncode == 0, first.stderr[-3000:]
    before = out.read_bytes()

    again = _run(inputs, out, None, tmp_path, "--base-url", f"http://127.0.0.1:{dead_port()}/v1", "--model", FaultServer.model_id)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "3 already done" in " ".join(again.stderr.split())
    assert out.read_bytes() == before
