"""Both runners answer through ``pipeline.answer_prompts``: whatever a backend does, each
prompt gets exactly one answer, so no item is lost and no answer lands on the wrong item.
The backends here are FAKES on purpose: no real backend misbehaves on demand."""

from __future__ import annotations

import asyncio

from sovtp.backends.base import Sampling
from sovtp.pipeline import answer_prompts
from sovtp.types import Answer


class FakeShortBackend:
    """FAKE: returns one answer fewer than it was given prompts."""

    async def answer(self, prompts, mode, sampling):
        return [Answer(mode=mode, text="happy") for _ in prompts[1:]]


class FakeCrashingBackend:
    """FAKE: raises mid-batch."""

    async def answer(self, prompts, mode, sampling):
        raise RuntimeError("boom")


def test_a_short_answer_list_becomes_one_error_per_prompt():
    got = asyncio.run(answer_prompts(FakeShortBackend(), ["p1", "p2", "p3"], "off", Sampling(), "fake"))
    assert len(got) == 3 and all(a.error == "backend fake returned 2 answers for 3 prompts" for a in got)


def test_a_crashing_backend_becomes_one_error_per_prompt():
    got = asyncio.run(answer_prompts(FakeCrashingBackend(), ["p1", "p2"], "off", Sampling(), "fake"))
    assert [a.error for a in got] == ["backend fake failed: RuntimeError: boom"] * 2
