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
