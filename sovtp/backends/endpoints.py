"""Several OpenAI-compatible endpoints behind one backend (``--base-url`` given twice+).

Why a pool of whole backends rather than a load balancer in front: a lab's model
servers come and go (a preempted GPU node, a restarted ``vllm serve``), and a run of
40k clips must neither stop nor lose an item when one does. Each endpoint is an
ordinary :class:`~sovtp.backends.openai_compat.OpenAIBackend` with its own connection
pool and concurrency; this pool sends each request to the least-loaded endpoint that
is up, and when an endpoint fails a request in a way that says "this server is gone or
sick" (connection refused or reset, timeout, 5xx) it is marked down for a cool-down
(doubling while it stays dead, a single probe request when it ends) and the request
is sent again to another endpoint. A request the server refused (400, schema error) is
the caller's problem and is not retried anywhere. Rate limits (429) move the request
on without marking the endpoint down.

The answer does not depend on which endpoint served it: the response-cache identity
leaves the URL out, as for a single endpoint.
"""

from __future__ import annotations

import asyncio
import re
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from sovtp.backends.base import Capabilities, Sampling
from sovtp.errors import UserError
from sovtp.net import redact_url, scrub_urls
from sovtp.types import Answer, DecodingMode, Prompt

# How OpenAIBackend words a request that failed after its retries, by cause.
_EXHAUSTED = re.compile(r"^request failed after \d+ retries \(last: (?P<why>.*)\)$")
# A refusal that says more about the endpoint than the request: a key this server does
# not take, a model it does not serve. Another endpoint may well answer.
_WRONG_ENDPOINT = re.compile(r"^the server refused the request \(HTTP (401|403|404)\b")
_BUSY = re.compile(r"HTTP (408|409|425|429)\b")


def failure_kind(answer: Answer) -> str | None:
    """``"down"`` (the endpoint looks dead: connection, timeout, 5xx), ``"busy"`` (rate
    limited: try elsewhere, keep it up) or None (success, or a final error that another
    endpoint would answer the same way)."""
    if answer.error is None:
        return None
    if _WRONG_ENDPOINT.match(answer.error):
        return "down"
    m = _EXHAUSTED.match(answer.error)
    if m is None:
        return None
    return "busy" if _BUSY.search(m.group("why")) else "down"


@dataclass
class Endpoint:
    """One server and what the pool knows about its health."""

    backend: Any  # an OpenAIBackend (or anything with its answer/check/aclose)
    concurrency: int
    url: str = ""
    in_flight: int = 0
    down_until: float = 0.0
    failures: int = 0  # consecutive "down" failures; >0 means probing (one request at a time)
    served: int = 0
    failed_over: int = 0
    history: list[str] = field(default_factory=list)  # "up"/"down" transitions, for logs and tests

    def capacity(self) -> int:
        return 1 if self.failures else self.concurrency

    def is_up(self, now: float) -> bool:
        return self.down_until <= now


class EndpointPool:
    """A :class:`~sovtp.backends.base.Backend` spreading requests over several
    OpenAI-compatible endpoints, with per-endpoint concurrency and failover."""

    name = "openai"

    def __init__(
        self,
        backends: Sequence[Any],
        concurrency: int = 8,
        max_attempts: int | None = None,
        cooldown_s: float = 2.0,
        cooldown_max_s: float = 60.0,
        log=None,
    ) -> None:
        if not backends:
            raise ValueError("EndpointPool needs at least one endpoint; pass --base-url")
        self.endpoints = [
            Endpoint(b, max(1, int(getattr(b, "concurrency", concurrency))), url=redact_url(str(getattr(b, "base_url", "") or "")))
            for b in backends
        ]
        self.requested_model = next((str(b.model) for b in backends if getattr(b, "model", "")), "")  # --model, before check()
        self.max_attempts = max_attempts if max_attempts is not None else max(6, 2 * len(self.endpoints))
        self.cooldown_s = cooldown_s
        self.cooldown_max_s = cooldown_max_s
        self.log = log if log is not None else (lambda msg: print(msg, file=sys.stderr))
        self._cond: asyncio.Condition | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @classmethod
    def from_urls(cls, urls: Sequence[str], model: str = "", concurrency: int = 8, max_retries: int = 5, **options: Any) -> EndpointPool:
        """One OpenAIBackend per URL, each with ``concurrency`` requests in flight.

        Each endpoint retries a failed request once itself; the pool's own attempts
        (``max_retries`` + 1, at least two per endpoint) go to whichever endpoint is up,
        so a dead server costs a request one quick retry, not a full backoff ladder."""
        from sovtp.backends.openai_compat import OpenAIBackend

        urls = [u for u in dict.fromkeys(urls) if u]  # same URL twice is one endpoint
        backends = [
            OpenAIBackend(model=model, base_url=u, concurrency=concurrency, max_retries=min(1, max_retries), **options) for u in urls
        ]
        for b in backends:
            b.in_pool = True
        return cls(backends, concurrency=concurrency, max_attempts=max(max_retries + 1, 2 * len(backends)))

    # ------------------------------------------------------------------ what the runner reads

    def __repr__(self) -> str:
        return f"EndpointPool({', '.join(e.url for e in self.endpoints)})"

    @property
    def endpoint_count(self) -> int:
        return len(self.endpoints)

    @property
    def preferred_batch_size(self) -> int:
        """1: HTTP requests are independent, so each prompt goes out as soon as it is
        ready and its record is written as soon as its answer is back (the runner's
        in-flight bound, concurrency x endpoints, keeps every endpoint busy)."""
        return 1

    @property
    def model(self) -> str:
        return self.endpoints[0].backend.model

    @property
    def capabilities(self) -> Capabilities:
        caps = [e.backend.capabilities for e in self.endpoints]
        return Capabilities(
            max_images=min((c.max_images for c in caps if c.max_images is not None), default=None),
            json_schema=all(c.json_schema for c in caps),
            choice=all(c.choice for c in caps),
            rank=all(c.rank for c in caps),
            logprobs=all(c.logprobs for c in caps),
        )

    def cache_identity(self) -> dict[str, Any]:
        first = self.endpoints[0].backend
        ident = getattr(first, "cache_identity", None)
        return ident() if callable(ident) else {"backend": self.name, "model": self.model}

    def stats(self) -> list[dict[str, Any]]:
        return [
            {"url": e.url, "served": e.served, "failed_over": e.failed_over, "up": e.is_up(time.monotonic()), "history": list(e.history)}
            for e in self.endpoints
        ]

    # ------------------------------------------------------------------ lifecycle

    async def check(self) -> None:
        """Every endpoint is checked; the dead ones start marked down (with a warning)
        and the run goes on while at least one answers."""
        results = list(await asyncio.gather(*(self._check_one(e) for e in self.endpoints), return_exceptions=True))
        alive = [e for e, r in zip(self.endpoints, results, strict=True) if r is None]
        if not alive:
            reasons = "; ".join(f"{e.url}: {r}" for e, r in zip(self.endpoints, results, strict=True))
            raise UserError(f"None of the {len(self.endpoints)} --base-url endpoints answered ({reasons}); start a server or fix the URLs.")
        listed = [list(getattr(e.backend, "listed", []) or []) for e in alive]
        if not self.requested_model and all(listed):
            # no --model: the first model every endpoint lists (the order of the lists is theirs)
            common = [m for m in listed[0] if all(m in ids for ids in listed[1:])]
            if not common:
                raise UserError(
                    f"The endpoints serve different models ({'; '.join(', '.join(ids[:3]) for ids in listed)}); pass --model to pick one they all serve."
                )
            for e in alive:
                e.backend.model = common[0]
        models = {e.backend.model for e in alive}
        if len(models) > 1:
            raise UserError(f"The endpoints serve different models ({', '.join(sorted(models))}); pass --model to pick one they all serve.")
        model = models.pop()
        serving = [e for e, ids in zip(alive, listed, strict=True) if not ids or model in ids]
        if not serving:
            raise UserError(f"None of the --base-url endpoints serves the model {model!r}; fix --model.")
        for i, e in enumerate(self.endpoints):  # an endpoint that lists the model's absence is left out, as a dead one is
            if e in alive and e not in serving:
                results[i] = UserError(f"it serves {', '.join(getattr(e.backend, 'listed', [])[:3])}, not {model!r}")
        kinds = {getattr(e.backend, "server", "auto") for e in serving} - {"auto"}
        for e in self.endpoints:
            if not e.backend.model:
                e.backend.model = model  # a dead endpoint answers for the same model once it is back
            if len(kinds) == 1 and getattr(e.backend, "server", None) == "auto":
                e.backend.server = next(iter(kinds))  # one stack behind one model: a dead vLLM must not turn choice off
        now = time.monotonic()
        for e, r in zip(self.endpoints, results, strict=True):
            if r is not None:
                self.log(f"Warning: endpoint {e.url} is not answering ({r}); its requests go to the other endpoints until it is back.")
                self._mark_down(e, now)

    async def _check_one(self, e: Endpoint) -> None:
        check = getattr(e.backend, "check", None)
        if check is not None:
            await check()

    async def aclose(self) -> None:
        await asyncio.gather(*(e.backend.aclose() for e in self.endpoints), return_exceptions=True)

    # ------------------------------------------------------------------ scheduling

    def _bind_loop(self) -> asyncio.Condition:
        loop = asyncio.get_running_loop()
        if self._loop is not loop or self._cond is None:
            self._loop = loop
            self._cond = asyncio.Condition()
            for e in self.endpoints:
                e.in_flight = 0
        return self._cond

    async def _acquire(self, avoid: Endpoint | None) -> Endpoint:
        """The least-loaded endpoint that is up and has a free slot; waits for a slot,
        or for the first cool-down to end when every endpoint is down. ``avoid`` (the
        endpoint that just failed this request) is taken only when nothing else is up."""
        cond = self._bind_loop()
        async with cond:
            while True:
                now = time.monotonic()
                up = [e for e in self.endpoints if e.is_up(now)]
                if len(up) > 1 and avoid in up:
                    up.remove(avoid)
                free = [e for e in up if e.in_flight < e.capacity()]
                if free:
                    ep = min(free, key=lambda e: (e.in_flight / e.capacity(), e.served))
                    ep.in_flight += 1
                    return ep
                timeout = None if up else max(0.0, min(e.down_until for e in self.endpoints) - now)
                try:
                    await asyncio.wait_for(cond.wait(), timeout=timeout)
                except asyncio.TimeoutError:
                    pass

    async def _release(self, ep: Endpoint) -> None:
        cond = self._bind_loop()
        async with cond:
            ep.in_flight = max(0, ep.in_flight - 1)
            cond.notify_all()

    def _mark_down(self, ep: Endpoint, now: float) -> None:
        if not ep.is_up(now):
            return  # already down: one request's failure is enough
        ep.failures += 1
        ep.down_until = now + min(self.cooldown_max_s, self.cooldown_s * (2 ** (ep.failures - 1)))
        ep.history.append("down")

    def _mark_up(self, ep: Endpoint) -> None:
        if ep.failures:
            ep.failures = 0
            ep.history.append("up")
            self.log(f"Endpoint {ep.url} is answering again.")

    # ------------------------------------------------------------------ requests

    async def answer(self, prompts: Sequence[Prompt], mode: DecodingMode, sampling: Sampling) -> list[Answer]:
        self._bind_loop()
        return list(await asyncio.gather(*(self._one(p, mode, sampling) for p in prompts)))

    async def _one(self, prompt: Prompt, mode: DecodingMode, sampling: Sampling) -> Answer:
        retries = 0
        last: Answer | None = None
        failed: Endpoint | None = None
        for attempt in range(self.max_attempts):
            ep = await self._acquire(avoid=failed)
            try:
                try:
                    [ans] = await ep.backend.answer([prompt], mode, sampling)
                except Exception as exc:  # a transport bug must not lose the request
                    ans = Answer(mode=mode, error=scrub_urls(f"request failed after 0 retries (last: {type(exc).__name__}: {exc})"))
            finally:
                await self._release(ep)
            retries += ans.retries + (1 if attempt else 0)
            kind = failure_kind(ans)
            if kind is None:
                ep.served += 1
                if ans.error is None:
                    self._mark_up(ep)
                return replace(ans, retries=retries)
            ep.failed_over += 1
            if kind == "down":
                was_up = ep.is_up(time.monotonic())
                self._mark_down(ep, time.monotonic())
                if was_up and len(self.endpoints) > 1:
                    self.log(f"Warning: endpoint {ep.url} failed ({ans.error}); sending its requests to the other endpoints.")
            last, failed = ans, ep
        assert last is not None
        tried = ", ".join(e.url for e in self.endpoints)
        return replace(last, retries=retries, error=f"{last.error}; tried {self.max_attempts} times across {tried}")
