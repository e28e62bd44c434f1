"""How many CPUs this process may use, and how the stages share them.

One place for the policy, because three stages draw on the same cores: FFmpeg's
decoding threads, the extractor branches that run side by side within a clip, and the
worker processes that prepare clips in parallel.
"""

from __future__ import annotations

import os


def available_cpus() -> int:
    """The CPUs this process may use (cgroup/affinity aware where the OS tells)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def extract_threads(workers: int = 1) -> int:
    """Extractor branches one clip runs at once when ``workers`` processes share the CPUs:
    the cores each process can call its own, at least one."""
    return max(1, available_cpus() // max(1, workers))


DECODE_THREADS_ENV = "SOVTP_DECODE_THREADS"


def decode_threads(share: int | None = None) -> int:
    """FFmpeg decoding threads: one fewer than the cores this process may use (or than
    ``share`` of them, a worker's), at least one; ``$SOVTP_DECODE_THREADS`` overrides.

    Why not FFmpeg's default (a frame thread per core, plus one): the decoder always runs
    beside the models (in the background while the face detector reads the first
    frames, or for the next clip while this one's cues are computed), and mediapipe's
    graphs keep one core busy. Frame threads on that core only compete with them, and
    after each seek of a sparse plan they refill their pipeline. Measured once on the 2-vCPU
    reference machine (16 frames of the 20-s WolfgangLanger clip): decoding alone 252 ms
    with FFmpeg's threads against 218 ms with one; beside the cue models the models plus
    decoding took 762 ms against 699 ms, the models' time alone being 730 ms."""
    env = os.environ.get(DECODE_THREADS_ENV, "").strip()
    if env.isdigit() and int(env) > 0:
        return int(env)
    return max(1, (share or available_cpus()) - 1)
