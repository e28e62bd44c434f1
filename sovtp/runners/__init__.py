"""Runners beyond one thread: a local process pool for cue extraction
(:mod:`sovtp.runners.workers`) and the Ray Data runner (:mod:`sovtp.runners.ray_runner`,
optional extra ``sovtp[ray]``).

Both run the same stages as :func:`sovtp.pipeline.run_items_async` -- decode, extract,
render, compose with one :class:`~sovtp.pipeline.Preparer` per worker process, answer
with the same backends, write through the same :class:`~sovtp.results.ResultsWriter` --
so their records equal the single-thread runner's and a run started with one resumes
with another. Nothing here is imported by ``import sovtp``.
"""

RUNNERS = ("local", "ray")

__all__ = ["RUNNERS"]
