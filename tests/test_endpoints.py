"""Several OpenAI-compatible endpoints (``--base-url`` twice): spreading with a
per-endpoint concurrency bound, failover when one dies, and the CLI flags. The servers
are real HTTP servers on 127.0.0.1 (``FaultServer``: a FAKE model with canned,
prompt-digest answers); "killing an endpoint" is SIGKILL of a server process."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from sovtp.backends.base import Sampling
from sovtp.backends.endpoints import EndpointPool, failure_kind
from sovtp.backends.openai_compat import OpenAIBackend
from sovtp.errors import UserError
from sovtp.inputs import discover
from sovtp.pipeline import RunConfig, run_items
from sovtp.results import load_results
from sovtp.types import Prompt, TextPart
from tests.helpers.servers import FaultServer
from tests.test_workers import digest_reply, fixture_folder

ROOT = Path(__file__).resolve().parents[1]
LABELS = ("happy", "sad", "neutral")


def prompts(n: int) -> list[Prompt]:
    return [Prompt(parts=(TextPart(f"item {i}: which emotion?"),), labels=LABELS, template_name="t", template_hash="h") for i in range(n)]


def answer(backend, ps: list[Prompt]):
    return asyncio.run(_answer(backend, ps))


async def _answer(backend, ps):
    try:
        await backend.check()
        return await backend.answer(ps, "free", Sampling(max_tokens=16))
    finally:
        await backend.aclose()


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


class ConcurrencyProbe:
    """A reply function that records how many requests a server works on at once."""

    def __init__(self, hold_s: float = 0.05) -> None:
        self.hold_s, self.now, self.peak, self.lock = hold_s, 0, 0, threading.Lock()

    def __call__(self, body):
        with self.lock:
            self.now += 1
            self.peak = max(self.peak, self.now)
        time.sleep(self.hold_s)
        with self.lock:
            self.now -= 1
        return digest_reply(body)


def test_failure_kinds_match_what_the_openai_backend_reports():
    """The pool decides on failover from the single-endpoint backend's error answers."""
    with (
        FaultServer(default="500") as down,
        FaultServer(default="429", retry_after=0) as busy,
        FaultServer(default="400") as refused,
        FaultServer(default="401") as key,
        FaultServer(default="404") as model,
    ):
        kinds = {}
        for name, url in (("500", down.base_url), ("429", busy.base_url), ("400", refused.base_url), ("401", key.base_url),
                          ("404", model.base_url), ("dead", closed_port_url())):  # fmt: skip
            b = OpenAIBackend(model="test-model", base_url=url, max_retries=0, timeout=5)
            [a] = asyncio.run(b.answer(prompts(1), "free", Sampling()))
            kinds[name] = failure_kind(a)
    # a key this server refuses, a model it does not serve: another endpoint may answer
    assert kinds == {"500": "down", "429": "busy", "400": None, "401": "down", "404": "down", "dead": "down"}


def test_requests_spread_over_endpoints_within_each_concurrency():
    pa, pb = ConcurrencyProbe(), ConcurrencyProbe()
    with FaultServer(reply=pa) as a, FaultServer(reply=pb) as b:
        pool = EndpointPool.from_urls([a.base_url, b.base_url], model="test-model", concurrency=2)
        answers = answer(pool, prompts(16))
        assert all(x.error is None and "Label:" in x.text for x in answers)
        assert a.count + b.count == 16 and a.count >= 4 and b.count >= 4
    assert pa.peak <= 2 and pb.peak <= 2
    assert pool.endpoint_count == 2 and pool.preferred_batch_size == 1


def test_dead_endpoint_at_start_is_skipped_and_all_dead_is_one_sentence():
    logs: list[str] = []
    with FaultServer(reply=digest_reply) as alive:
        dead = closed_port_url()
        pool = EndpointPool.from_urls([dead, alive.base_url], model="test-model", concurrency=2)
        pool.log = logs.append
        answers = answer(pool, prompts(6))
        assert all(x.error is None for x in answers) and alive.count == 6
    assert any(dead in m and "not answering" in m for m in logs)
    pool = EndpointPool.from_urls([closed_port_url(), closed_port_url()], model="test-model")
    with pytest.raises(UserError, match="None of the 2 --base-url endpoints answered"):
        answer(pool, prompts(1))


def test_an_endpoint_that_refuses_the_key_or_serves_another_model_costs_no_item():
    """Before: one endpoint rejecting the key made 24 of 40 items error records (it fails
    fast, so least-loaded kept picking it); one serving another model, 4 of 8."""
    logs: list[str] = []
    with FaultServer(reply=digest_reply) as good, FaultServer(default="401") as no_key, FaultServer(model_id="llava-13b") as other:
        pool = EndpointPool.from_urls(
            [good.base_url, no_key.base_url, other.base_url], model="test-model", concurrency=2, backoff_base=0.01
        )
        pool.log = logs.append
        answers = answer(pool, prompts(20))
        assert all(x.error is None for x in answers), [x.error for x in answers if x.error][:2]
        assert other.count == 0  # left out at check: it lists llava-13b only
        assert any(other.base_url in m and "not 'test-model'" in m for m in logs), logs


class _Lists(FaultServer):
    """A server that lists several models, in its own order."""

    def __init__(self, ids: list[str], **kw) -> None:
        super().__init__(**kw)
        self.ids = ids

    def _get(self, h):
        self.send_json(h, 200, {"object": "list", "data": [{"id": i, "object": "model", "created": 0, "owned_by": "x"} for i in self.ids]})


def test_without_a_model_the_pool_takes_one_every_endpoint_serves():
    with _Lists(["m1", "m2"]) as a, _Lists(["m2", "m1"]) as b:
        pool = EndpointPool.from_urls([a.base_url, b.base_url])
        answer(pool, prompts(2))
        assert pool.model == "m1" and {r["body"]["model"] for r in a.requests + b.requests} == {"m1"}
    with _Lists(["m1"]) as a, _Lists(["m2"]) as b, pytest.raises(UserError, match="The endpoints serve different models"):
        answer(EndpointPool.from_urls([a.base_url, b.base_url]), prompts(1))


def test_a_vllm_server_asked_for_a_model_it_does_not_serve_is_one_sentence():
    with FaultServer(model_id="qwen-7b", owned_by="vllm") as server:
        with pytest.raises(UserError, match=r"does not serve the model 'qwen-7b-instruct' \(it serves qwen-7b\); fix --model"):
            answer(OpenAIBackend(model="qwen-7b-instruct", base_url=server.base_url), prompts(1))


def test_endpoint_that_starts_failing_mid_run_hands_its_requests_over():
    logs: list[str] = []
    with FaultServer(plan=["ok", "ok"], default="503") as sick, FaultServer(reply=digest_reply) as good:
        pool = EndpointPool.from_urls([sick.base_url, good.base_url], model="test-model", concurrency=2)
        pool.log = logs.append
        answers = answer(pool, prompts(12))
        sick_url = sick.base_url
    assert all(x.error is None for x in answers)
    assert sick.count >= 3 and good.count >= 9  # the 503s were answered again by the good one
    stats = {s["url"]: s for s in pool.stats()}
    assert stats[sick_url]["failed_over"] >= 1 and "down" in stats[sick_url]["history"]
    assert any("sending its requests to the other endpoints" in m for m in logs)


def _server_process(delay_s: float) -> tuple[subprocess.Popen, str]:
    code = (
        "import sys, time\n"
        "from tests.helpers.servers import FaultServer\n"
        "from tests.test_workers import digest_reply\n"
        f"s = FaultServer(delay_s={delay_s}, reply=digest_reply).start()\n"
        "print(s.base_url, flush=True)\n"
        "while True: time.sleep(1)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    url = proc.stdout.readline().strip()
    assert url.startswith("http://127.0.0.1:"), "test server process did not start"
    return proc, url


def test_killing_one_of_two_endpoints_mid_run_loses_nothing(media: Path, tmp_path: Path):
    """A real run over real clips against two endpoints; one server process is SIGKILLed
    the moment the other receives its first request (the victim is slow, so it holds
    requests of the same batch then). Every item still gets its answer, from the
    survivor, and the results file holds each item once."""
    folder = fixture_folder(media, tmp_path / "videos")
    victim, victim_url = _server_process(delay_s=2.0)
    killed: list[int] = []

    def kill_victim_then_answer(body):
        if not killed:
            time.sleep(0.3)  # let the victim's share of the batch arrive there first
            os.kill(victim.pid, signal.SIGKILL)
            killed.append(victim.pid)
        return digest_reply(body)

    try:
        with FaultServer(delay_s=0.1, reply=kill_victim_then_answer) as survivor:
            cfg = RunConfig(
                backend="openai", model="test-model", num_frames=2, workers=1, concurrency=2, cache_dir=None, max_tokens=64,
                backend_options={"base_url": [victim_url, survivor.base_url], "max_retries": 3, "timeout": 30.0},
            )  # fmt: skip
            summary = run_items(discover([folder]), cfg, tmp_path / "r.jsonl")
            survivor_count = survivor.count
    finally:
        if victim.poll() is None:
            victim.kill()
        victim.wait()
    assert killed, "the run finished before the kill"
    records = load_results(tmp_path / "r.jsonl")
    assert len(records) == len((tmp_path / "r.jsonl").read_text().splitlines()) == 6
    for r in records:
        if Path(r.path).name == "corrupt.mp4":
            assert r.status == "error" and r.meta["error_kind"] == "input"
        else:
            assert r.status in ("ok", "invalid") and r.error is None, (r.path, r.error)
    assert summary.errors == 1 and summary.ok + summary.invalid == 5
    assert survivor_count >= 5  # the survivor answered everything, including what the victim held
    assert any(r.retries > 0 for r in records)  # the requests in flight at the victim were sent again


def test_cli_base_url_twice_and_workers(media: Path, tmp_path: Path):
    folder = tmp_path / "videos"
    folder.mkdir()
    for name in ("single_face.mp4", "multi_face.jpg", "0-f1-su-ph.jpg"):
        (folder / name).write_bytes((media / name).read_bytes())
    out = tmp_path / "r.jsonl"
    with FaultServer(reply=digest_reply) as a, FaultServer(reply=digest_reply) as b:
        proc = subprocess.run(
            [str(Path(sys.executable).parent / "sovtp"), "run", str(folder), "--backend", "openai", "--model", "test-model", "--base-url", a.base_url,
             "--base-url", b.base_url, "--concurrency", "1", "--workers", "2", "--frames", "2", "--no-cache", "--out", str(out)],
            capture_output=True, text=True, cwd=tmp_path, timeout=600,
        )  # fmt: skip
        counts, urls = (a.count, b.count), [a.base_url, b.base_url]
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert len(out.read_text().splitlines()) == 3 and sum(counts) == 3 and min(counts) >= 1
    manifest = json.loads((tmp_path / "r.manifest.json").read_text())
    assert manifest["config"]["workers"] == 2 and manifest["config"]["backend_options"]["base_url"] == urls
