"""Any OpenAI-compatible chat server: OpenAI itself, ``vllm serve``, other providers.

Why retries are ours, not the SDK's: the SDK's ``max_retries`` is set to 0 so every
retry is counted in :attr:`Answer.retries` (it lands in the results file) and the
policy is explicit: 429, 408/409, 5xx, timeouts and dropped connections are retried
with exponential backoff and full jitter, honouring ``Retry-After``; other 4xx are the
caller's mistake and fail at once. A request that still fails becomes an error
record, never an exception, so one bad item never loses a batch.

The API key is read from the argument or ``OPENAI_API_KEY`` and kept in one private
attribute; it is scrubbed from every error text this module produces and is never part
of ``repr``, logs or the response-cache key.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections.abc import Sequence
from email.utils import parsedate_to_datetime
from typing import Any

from sovtp.backends.base import Capabilities, Sampling
from sovtp.backends.messages import openai_messages, prompt_schema
from sovtp.errors import UserError
from sovtp.net import is_loopback_url, redact_url, scrub_urls
from sovtp.types import Answer, DecodingMode, Prompt, Usage

_RETRY_STATUS = {408, 409, 425, 429}


def _is_local(url: str | None) -> bool:
    return is_loopback_url(url)


def retry_after_seconds(headers: Any) -> float | None:
    """Seconds the server asked us to wait (``retry-after-ms``, ``Retry-After`` as
    seconds or an HTTP date), or None."""
    if headers is None:
        return None
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            return None


def _empty_reply(resp: Any) -> str | None:
    """Why a 200 reply holds no answer (an ``error`` object, no choices, a choice that
    ended in error), or None for a real answer. Such a reply used to become an empty
    "invalid" answer and be cached for good."""
    error = getattr(resp, "error", None)
    if error is None and isinstance(getattr(resp, "model_extra", None), dict):
        error = resp.model_extra.get("error")
    if error:
        message = error.get("message") if isinstance(error, dict) else str(error)
        return f"HTTP 200 with an error ({' '.join(str(message).split())[:120]})"
    if not getattr(resp, "choices", None):
        return "HTTP 200 with no choices"
    if getattr(resp.choices[0], "finish_reason", None) == "error":
        return "HTTP 200 with a choice that ended in error"
    return None


# Images are sent at most this large (longer side) unless --image-max-side says otherwise;
# the pipeline draws the marks at this size too, so ID digits keep the size they are drawn at.
DEFAULT_IMAGE_MAX_SIDE = 1024


class OpenAIBackend:
    """Chat completions over HTTP with bounded concurrency and counted retries."""

    name = "openai"

    def __init__(
        self,
        model: str = "",
        base_url: str | None = None,
        api_key: str | None = None,
        concurrency: int = 8,
        timeout: float = 120.0,
        max_retries: int = 5,
        image_max_side: int | None = DEFAULT_IMAGE_MAX_SIDE,
        detail: str | None = None,
        jpeg_quality: int = 90,
        backoff_base: float = 0.5,
        backoff_max: float = 30.0,
        retry_after_max: float = 120.0,
        server: str = "auto",
        check_timeout: float = 10.0,
        **_ignored: Any,
    ) -> None:
        self.model = model
        self.base_url = (base_url or os.environ.get("OPENAI_BASE_URL") or "").rstrip("/") or None
        key = api_key or os.environ.get("OPENAI_API_KEY")
        if not key and _is_local(self.base_url):
            key = "EMPTY"  # local servers (vLLM) accept any key; the SDK insists on one
        self.__key = key
        self.concurrency = max(1, int(concurrency))
        self.timeout = float(timeout)
        self.max_retries = max(0, int(max_retries))
        self.image_max_side = image_max_side
        self.detail = detail
        self.jpeg_quality = jpeg_quality
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.retry_after_max = retry_after_max
        self.check_timeout = check_timeout
        # "vllm" servers take structured_outputs (json / choice); others response_format.
        self.server = server if server != "auto" else ("openai" if self.base_url is None else "auto")
        self.listed: list[str] = []  # the model ids /v1/models named at check()
        self.in_pool = False  # one of several --base-url endpoints: the pool decides about the model
        self.preferred_batch_size = self.concurrency
        self._client = None
        self._sem: asyncio.Semaphore | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def __repr__(self) -> str:  # never shows the key
        return f"OpenAIBackend(model={self.model!r}, base_url={redact_url(self.base_url)!r}, concurrency={self.concurrency})"

    # ------------------------------------------------------------------ plumbing

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(json_schema=True, choice=self.server == "vllm")

    def cache_identity(self) -> dict[str, Any]:
        return {
            "backend": self.name,
            "model": self.model,
            "image_max_side": self.image_max_side,
            "detail": self.detail,
            "jpeg_quality": self.jpeg_quality,
        }

    def scrub(self, text: str) -> str:
        """``text`` with the API key (and any long fragment of it) replaced by ***, and
        the base URL, where an error text quotes it, without its credentials."""
        if self.base_url and self.base_url in text:
            text = text.replace(self.base_url, redact_url(self.base_url))
        text = scrub_urls(text)
        key = self.__key
        if key and key != "EMPTY" and len(key) >= 6:
            text = text.replace(key, "***")
            if len(key) > 16:
                text = text.replace(key[:12], "***").replace(key[-12:], "***")
        return text

    def _require_key(self) -> str:
        if not self.__key:
            raise UserError(
                "No API key: set OPENAI_API_KEY in the environment (it is never written anywhere), or point --base-url / OPENAI_BASE_URL at a local server."
            )
        return self.__key

    def _get_client(self):
        if self._client is None:
            from openai import AsyncOpenAI, DefaultAsyncHttpxClient

            try:  # newer openai SDKs are built on httpx2, older ones on httpx
                import httpx2 as httpx  # type: ignore[import-not-found]
            except ImportError:
                import httpx

            http = DefaultAsyncHttpxClient(
                limits=httpx.Limits(max_connections=self.concurrency + 4, max_keepalive_connections=self.concurrency + 4),
                timeout=httpx.Timeout(self.timeout, connect=min(self.timeout, 10.0)),
            )
            key = self._require_key()
            try:
                self._client = AsyncOpenAI(api_key=key, base_url=self.base_url, max_retries=0, timeout=self.timeout, http_client=http)
            except Exception as exc:  # e.g. httpx.InvalidURL, whose text may quote part of a password
                where = redact_url(self.base_url) or "api.openai.com"
                raise UserError(f"Cannot use the base URL {where} ({type(exc).__name__}); fix --base-url / OPENAI_BASE_URL.") from None
        return self._client

    async def check(self) -> None:
        """Fail fast, in one sentence, when the server is unreachable or refuses the key;
        also learns the server kind (vLLM) and, with no --model, the served model."""
        import openai

        self._bind_loop()
        client = self._get_client()
        where = redact_url(self.base_url) or "api.openai.com"
        try:
            models = await client.models.list(timeout=self.check_timeout)
            data = list(models.data)
        except openai.APIConnectionError as exc:
            reason = "timed out" if isinstance(exc, openai.APITimeoutError) else "connection refused or dropped"
            raise UserError(
                f"Cannot reach the OpenAI-compatible server at {where} ({reason}); start it or fix --base-url / OPENAI_BASE_URL."
            ) from None
        except openai.AuthenticationError:
            raise UserError(f"The server at {where} rejected the API key (HTTP 401); check OPENAI_API_KEY.") from None
        except openai.APIStatusError:
            data = []  # some servers have no /models; the chat endpoint may still work
        except Exception as exc:  # e.g. httpx.InvalidURL: its text may quote the URL's password
            raise UserError(f"Cannot use the base URL {where} ({type(exc).__name__}); fix --base-url / OPENAI_BASE_URL.") from None
        if self.server == "auto":
            self.server = "vllm" if any(getattr(m, "owned_by", "") == "vllm" for m in data) else "openai"
        self.listed = [str(m.id) for m in data]
        if self.model and self.listed and self.model not in self.listed and self.server == "vllm" and not self.in_pool:
            # vLLM serves exactly what it lists; every request for another name is a 404
            # (hosted APIs list base models, not deployments or aliases: no check there)
            raise UserError(
                f"The server at {where} does not serve the model {self.model!r} (it serves {', '.join(self.listed[:5])}); fix --model."
            )
        if not self.model:
            if not data:
                raise UserError(f"No --model given and the server at {where} lists no models; pass --model.")
            self.model = data[0].id

    # ------------------------------------------------------------------ requests

    def build_request(self, prompt: Prompt, mode: DecodingMode, sampling: Sampling) -> dict[str, Any]:
        """The keyword arguments of one ``chat.completions.create`` call."""
        kw: dict[str, Any] = {
            "model": self.model,
            "messages": openai_messages(prompt, self.image_max_side, self.detail, self.jpeg_quality),
            "temperature": sampling.temperature,
            "max_completion_tokens": sampling.max_tokens,
        }
        if sampling.top_p != 1.0:
            kw["top_p"] = sampling.top_p
        if sampling.seed is not None:
            kw["seed"] = sampling.seed
        extra: dict[str, Any] = dict(sampling.extra.get("extra_body", {})) if sampling.extra else {}
        if mode == "json":
            schema = prompt_schema(prompt)
            if self.server == "vllm":
                extra["structured_outputs"] = {"json": schema}
            else:
                kw["response_format"] = {"type": "json_schema", "json_schema": {"name": "emotion_answer", "schema": schema, "strict": True}}
        elif mode == "choice" and self.server == "vllm":
            extra["structured_outputs"] = {"choice": list(prompt.labels)}
        if extra:
            kw["extra_body"] = extra
        return kw

    def _bind_loop(self) -> None:
        """Client and semaphore belong to one event loop; a new loop (another
        ``asyncio.run``) gets fresh ones instead of a 'bound to a different loop' error."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            self._loop = loop
            self._sem = asyncio.Semaphore(self.concurrency)
            self._client = None

    async def answer(self, prompts: Sequence[Prompt], mode: DecodingMode, sampling: Sampling) -> list[Answer]:
        self._bind_loop()
        if mode in ("rank",) or (mode == "choice" and self.server != "vllm"):
            mode = "free"  # not supported over this server: answered freely, parsed strictly
        return list(await asyncio.gather(*(self._one(p, mode, sampling) for p in prompts)))

    def _backoff(self, attempt: int) -> float:
        return random.uniform(0.0, min(self.backoff_max, self.backoff_base * (2**attempt)))  # full jitter

    async def _one(self, prompt: Prompt, mode: DecodingMode, sampling: Sampling) -> Answer:
        import openai

        assert self._sem is not None
        client = self._get_client()
        retries = 0
        t0 = time.perf_counter()
        async with self._sem:
            kw = self.build_request(prompt, mode, sampling)  # encoded only when sent: bounded memory
            for attempt in range(self.max_retries + 1):
                delay: float | None = None
                try:
                    resp = await client.chat.completions.create(**kw, timeout=self.timeout)
                    empty = _empty_reply(resp)
                    if empty is None:
                        return self._to_answer(resp, mode, retries, time.perf_counter() - t0)
                    why = empty  # a 200 that carries an error or no choice: retried, never an answer (nor cached)
                except openai.APIStatusError as exc:
                    status = exc.status_code
                    why = f"HTTP {status}"
                    if status not in _RETRY_STATUS and status < 500:
                        return self._error(f"the server refused the request ({why}: {self._brief(exc)})", mode, retries, t0)
                    ra = retry_after_seconds(exc.response.headers if exc.response is not None else None)
                    if ra is not None:
                        delay = min(ra, self.retry_after_max) + random.uniform(0.0, 0.1 * min(ra, 1.0))
                except openai.APITimeoutError:
                    why = f"timed out after {self.timeout:g} s"
                except openai.APIConnectionError:
                    why = "connection failed or was reset"
                except Exception as exc:  # a malformed response body etc.: no retry
                    return self._error(f"unexpected response ({type(exc).__name__}: {self.scrub(str(exc))[:200]})", mode, retries, t0)
                if attempt == self.max_retries:
                    return self._error(f"request failed after {retries} retries (last: {why})", mode, retries, t0)
                retries += 1
                await asyncio.sleep(delay if delay is not None else self._backoff(attempt))
        return self._error("request failed", mode, retries, t0)  # unreachable

    def _brief(self, exc: Exception) -> str:
        msg = getattr(exc, "message", None) or str(exc)
        return self.scrub(" ".join(str(msg).split()))[:200]

    def _error(self, why: str, mode: DecodingMode, retries: int, t0: float) -> Answer:
        return Answer(mode=mode, retries=retries, latency_s=time.perf_counter() - t0, error=self.scrub(why))

    def _to_answer(self, resp: Any, mode: DecodingMode, retries: int, latency: float) -> Answer:
        from sovtp.parse import extract_json

        choice = resp.choices[0] if resp.choices else None
        text = (choice.message.content or "") if choice is not None else ""
        refusal = getattr(choice.message, "refusal", None) if choice is not None else None
        if not text and refusal:  # kept as the raw answer, marked: an invalid record shows why
            text = f"[refused] {refusal}"
        usage = Usage()
        if getattr(resp, "usage", None) is not None:
            usage = Usage(prompt_tokens=resp.usage.prompt_tokens, completion_tokens=resp.usage.completion_tokens)
        parsed = extract_json(text) if mode == "json" else None
        return Answer(text=text, mode=mode, parsed=parsed, usage=usage, latency_s=latency, retries=retries)

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None
