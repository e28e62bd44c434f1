"""Concurrency and response-cache benchmark of the OpenAI-compatible backend.

A local chat-completions server (tests/helpers/servers.py, canned answers) answers
every request after a fixed delay. The same N prompts are sent with concurrency 1
(sequential) and with --concurrency; the bar is concurrent wall <= sequential / 12
for 64 prompts at 200 ms and concurrency 16. Then two identical cached runs: the
second must send zero requests (the server's counter). Finally every file the cached
runs wrote and the log are searched for the (recognisable, fake) API key.

    .venv/bin/python benchmarks/bench_backend_concurrency.py [--prompts 64] [--delay 0.2] [--concurrency 16]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import logging
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sovtp.backends import CachedBackend, Sampling, make_backend  # noqa: E402
from sovtp.cache import JsonCache  # noqa: E402
from sovtp.labels import DFEW  # noqa: E402
from sovtp.parse import answer_schema, parse_answer  # noqa: E402
from sovtp.types import ImagePart, Prompt, TextPart  # noqa: E402
from tests.helpers.servers import FaultServer  # noqa: E402

KEY = "sk-BENCH-recognisable-KEY-5f0c9a1e"


def make_prompts(n: int) -> list[Prompt]:
    schema = answer_schema(DFEW, ["observation", "reasoning"])
    rng = np.random.default_rng(0)
    return [
        Prompt(
            parts=(TextPart(f"Item {i}: describe face 1."), ImagePart((rng.random((96, 128, 3)) * 255).astype(np.uint8))),
            labels=DFEW.labels,
            template_name="bench",
            template_hash="0",
            answer_schema=schema,
        )
        for i in range(n)
    ]


async def timed(backend, prompts) -> tuple[float, list]:
    await backend.check()
    t0 = time.perf_counter()
    answers = await backend.answer(prompts, "json", Sampling())
    wall = time.perf_counter() - t0
    await backend.aclose()
    return wall, answers


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prompts", type=int, default=64)
    ap.add_argument("--delay", type=float, default=0.2)
    ap.add_argument("--concurrency", type=int, default=16)
    args = ap.parse_args()

    log = io.StringIO()
    handler = logging.StreamHandler(log)
    logging.basicConfig(level=logging.DEBUG, handlers=[handler])  # everything the SDK logs, to search for the key
    prompts = make_prompts(args.prompts)
    with FaultServer(delay_s=args.delay) as server, tempfile.TemporaryDirectory() as tmp:
        mk = lambda c: make_backend("openai", "", base_url=server.base_url, api_key=KEY, concurrency=c, timeout=30)  # noqa: E731
        seq_wall, seq = asyncio.run(timed(mk(1), prompts))
        con_wall, con = asyncio.run(timed(mk(args.concurrency), prompts))
        ok = sum(parse_answer(a, DFEW).status == "ok" for a in seq + con)
        ratio = seq_wall / con_wall
        print(f"prompts={args.prompts} delay={args.delay * 1000:.0f}ms concurrency={args.concurrency}")
        print(f"sequential wall   {seq_wall:7.3f} s")
        print(f"concurrent wall   {con_wall:7.3f} s")
        print(f"speed-up ratio    {ratio:7.2f}x  (bar: >= 12x, i.e. concurrent <= sequential/12: {'PASS' if ratio >= 12 else 'FAIL'})")
        print(f"parsed ok         {ok}/{2 * args.prompts}")

        cache_dir = Path(tmp) / "cache"
        before = server.count
        w1, _ = asyncio.run(timed(CachedBackend(mk(args.concurrency), JsonCache(cache_dir, "responses")), prompts))
        after_first = server.count
        w2, second = asyncio.run(timed(CachedBackend(mk(args.concurrency), JsonCache(cache_dir, "responses")), prompts))
        after_second = server.count
        print(f"cached run 1      {w1:7.3f} s, requests sent {after_first - before}")
        print(
            f"cached run 2      {w2:7.3f} s, requests sent {after_second - after_first} (bar: 0: {'PASS' if after_second == after_first else 'FAIL'}), all cached: {all(a.cached for a in second)}"
        )

        files = [p for p in Path(tmp).rglob("*") if p.is_file()]
        leaks = [str(p) for p in files if KEY in p.read_text(encoding="utf-8", errors="replace")]
        in_log = KEY in log.getvalue()
        print(
            f"key search        {len(files)} files written, {len(leaks)} contain the key; log lines contain it: {in_log} ({'PASS' if not leaks and not in_log else 'FAIL'})"
        )
        good = ratio >= 12 and after_second == after_first and not leaks and not in_log
    return 0 if good else 1


if __name__ == "__main__":
    raise SystemExit(main())
