"""A vision-language model run in-process with transformers (laptop, CPU or one GPU).

Why rank classification: transformers has no grammar engine built in, but it can score
text. In ``rank`` (and ``choice``) mode the model first reasons freely, then every
label of the set is scored as the continuation of "...\\nFinal answer:"; the label with
the highest log-likelihood wins and the softmax over the labels is kept as
``label_scores``. The answer is therefore always in the set, and the scores say how
sure the model was.

Model work runs in a worker thread (``asyncio.to_thread``) so the event loop keeps
preparing the next clips while the model computes.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections.abc import Sequence
from typing import Any

from sovtp.backends.base import Capabilities, Sampling
from sovtp.backends.messages import hf_messages
from sovtp.errors import UserError
from sovtp.types import Answer, DecodingMode, Prompt, Usage

FINAL_CUE = "\nFinal answer:"


def _cache_keyword(model: Any) -> str:
    """The keyword under which ``model.forward`` takes a KV cache: ``cache`` from
    transformers 5.2x on, ``past_key_values`` before (read from the signature, which the
    deprecation wrappers pass through)."""
    import inspect

    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


class TransformersBackend:
    name = "transformers"
    capabilities = Capabilities(rank=True, choice=True, json_schema=False, logprobs=True)

    def __init__(
        self,
        model: str,
        device: str | None = None,
        dtype: str = "auto",
        batch_size: int = 4,
        image_max_side: int | None = None,
        rank_reasoning: bool = True,
        **_ignored: Any,
    ) -> None:
        self.model = model
        self.device_request = device
        self.dtype_request = dtype
        self.batch_size = max(1, int(batch_size))
        self.preferred_batch_size = self.batch_size
        self.image_max_side = image_max_side
        self.rank_reasoning = rank_reasoning
        self._prefix_scoring = True  # see _score_labels
        self._proc = None
        self._model = None
        self.device: str | None = None
        self._lock = threading.Lock()

    def cache_identity(self) -> dict[str, Any]:
        from sovtp.backends.base import checkpoint_identity

        return {
            "backend": self.name,
            # a local folder: its content, not its path, is the identity
            "model": checkpoint_identity(self.model) or self.model,
            "image_max_side": self.image_max_side,
            "rank_reasoning": self.rank_reasoning,
            # float32 and bfloat16 (and CPU and CUDA kernels) give other scores: --dtype and
            # --device are answer settings, as the run key says
            "dtype": self.dtype_request,
            "device": self.device_request,
        }

    # ------------------------------------------------------------------ loading

    def load(self) -> None:
        """Load processor and model once (thread-safe); errors become one sentence."""
        with self._lock:
            if self._model is not None:
                return
            try:
                import torch  # noqa: F401
                import transformers  # noqa: F401
            except ImportError:
                raise UserError(
                    "The transformers backend needs torch and transformers; install them with pip install 'sovtp[transformers]'."
                ) from None
            from sovtp.backends._torchvision_shim import ensure_torchvision

            ensure_torchvision()
            import torch
            from transformers import AutoModelForImageTextToText, AutoProcessor

            device = self.device_request or ("cuda" if torch.cuda.is_available() else "cpu")
            try:
                torch.empty(0, device=device)  # "cuda" on a CPU build, "cdua", "cuda:3" of two GPUs
            except (RuntimeError, AssertionError) as exc:
                raise UserError(
                    f"--device {device!r} is not usable here ({' '.join(str(exc).split())[:120]}); use cpu, cuda or cuda:N"
                ) from None
            if self.dtype_request == "auto":
                dtype = torch.bfloat16 if device.startswith("cuda") and torch.cuda.is_bf16_supported() else torch.float32
            else:
                dtype = getattr(torch, str(self.dtype_request), None)
                if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
                    raise UserError(
                        f"--dtype {self.dtype_request!r} is not a torch floating-point type; use auto, float32, float16 or bfloat16"
                    )
            try:
                proc = AutoProcessor.from_pretrained(self.model)
                model = AutoModelForImageTextToText.from_pretrained(self.model, dtype=dtype)
            except OSError as exc:
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise UserError(
                    f"Cannot load model {self.model!r} with transformers ({first[:160]}); pass a local checkpoint folder or a model id that is in the local cache."
                ) from None
            proc.tokenizer.padding_side = "left"
            if proc.tokenizer.pad_token is None:
                proc.tokenizer.pad_token = proc.tokenizer.eos_token
            self._proc, self._model, self.device = proc, model.to(device).eval(), device

    async def check(self) -> None:
        await asyncio.to_thread(self.load)

    # ------------------------------------------------------------------ answering

    async def answer(self, prompts: Sequence[Prompt], mode: DecodingMode, sampling: Sampling) -> list[Answer]:
        return await asyncio.to_thread(self._answer_sync, list(prompts), mode, sampling)

    def _answer_sync(self, prompts: list[Prompt], mode: DecodingMode, sampling: Sampling) -> list[Answer]:
        self.load()
        out: list[Answer] = []
        for i in range(0, len(prompts), self.batch_size):
            batch = prompts[i : i + self.batch_size]
            t0 = time.perf_counter()
            try:
                answers = self._batch(batch, mode, sampling)
            except Exception as exc:  # one failed batch must not lose the run
                answers = [Answer(mode=mode, error=f"transformers failed: {type(exc).__name__}: {str(exc)[:200]}") for _ in batch]
            dt = (time.perf_counter() - t0) / max(1, len(batch))
            for a in answers:
                a.latency_s = dt
            out.extend(answers)
        return out

    def _inputs(self, texts: list[str], images: list[list[Any]]):
        kwargs: dict[str, Any] = {"text": texts, "return_tensors": "pt", "padding": True}
        if any(images):
            kwargs["images"] = [im for ims in images for im in ims]
        return self._proc(**kwargs).to(self.device)

    def _chat_text(self, prompt: Prompt) -> tuple[str, list[Any]]:
        messages, images = hf_messages(prompt, self.image_max_side)
        text = self._proc.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        return text, images

    def _generate(self, texts: list[str], images: list[list[Any]], sampling: Sampling) -> list[tuple[str, int, int]]:
        """Free generation for a batch: (text, prompt tokens, completion tokens) each."""
        import torch

        inputs = self._inputs(texts, images)
        gen: dict[str, Any] = {"max_new_tokens": sampling.max_tokens, "do_sample": sampling.temperature > 0}
        if sampling.temperature > 0:
            gen.update(temperature=sampling.temperature, top_p=sampling.top_p)
            if sampling.seed is not None:
                torch.manual_seed(sampling.seed)
        tok = self._proc.tokenizer
        with torch.inference_mode():
            seqs = self._model.generate(**inputs, **gen, pad_token_id=tok.pad_token_id)
        n_in = inputs["input_ids"].shape[1]
        res = []
        eos = {tok.eos_token_id, tok.pad_token_id}
        for row, mask in zip(seqs[:, n_in:], inputs["attention_mask"], strict=True):
            ids = row.tolist()
            n_out = next((k for k, t in enumerate(ids) if t in eos), len(ids))
            res.append((tok.decode(ids[:n_out], skip_special_tokens=True), int(mask.sum()), n_out))
        return res

    def _batch(self, batch: list[Prompt], mode: DecodingMode, sampling: Sampling) -> list[Answer]:
        chats = [self._chat_text(p) for p in batch]
        texts, images = [c[0] for c in chats], [c[1] for c in chats]
        if mode in ("free", "json") or (mode == "rank" and self.rank_reasoning and sampling.max_tokens > 0):
            generated = self._generate(texts, images, sampling)
        else:
            generated = [("", 0, 0)] * len(batch)
        if mode in ("free", "json"):
            return [Answer(text=t, mode=mode, usage=Usage(prompt_tokens=n_in, completion_tokens=n_out)) for t, n_in, n_out in generated]
        answers = []
        for prompt, text, ims, (reasoning, n_in, n_out) in zip(batch, texts, images, generated, strict=True):
            scores, n_ctx = self._score_labels(text + reasoning + FINAL_CUE, ims, list(prompt.labels))
            label = max(scores, key=scores.__getitem__)
            shown = f"{reasoning}{FINAL_CUE} {label}" if reasoning else label
            answers.append(
                Answer(text=shown, mode=mode, label_scores=scores, usage=Usage(prompt_tokens=n_in or n_ctx, completion_tokens=n_out))
            )
        return answers

    def score_labels(self, context: str, images: list[Any], labels: list[str]) -> dict[str, float]:
        """Softmax over the labels of the summed log-probability of each label's tokens
        as the continuation of ``context`` (rank classification)."""
        self.load()
        return self._score_labels(context, images, labels)[0]

    def _score_labels(self, context: str, images: list[Any], labels: list[str]) -> tuple[dict[str, float], int]:
        """Scores by prefix caching: the context (images included) is encoded once, then
        every label's tokens continue that one cache in a single batched pass. Scoring
        each label as its own full sequence would run the vision encoder and the prompt
        prefill once per label (7x the work for DFEW's 7 labels). Architectures whose
        forward cannot continue an expanded cache fall back to full sequences, once and
        for the rest of the run."""
        tok = self._proc.tokenizer
        ctx = self._inputs([context], [images])
        label_ids = [tok(" " + lab, add_special_tokens=False)["input_ids"] for lab in labels]
        totals = None
        if self._prefix_scoring:
            try:
                totals = self._label_logprobs_prefix(ctx, label_ids)
            except Exception as exc:  # an architecture that cannot continue a repeated cache
                if "OutOfMemory" in type(exc).__name__:
                    raise  # memory, not the architecture: the full path needs more still
                self._prefix_scoring = False
        if totals is None:
            totals = self._label_logprobs_full(ctx, label_ids)
        top = max(totals)
        exps = [math.exp(t - top) for t in totals]
        z = sum(exps)
        return {lab: e / z for lab, e in zip(labels, exps, strict=True)}, int(ctx["input_ids"].shape[1])

    def _label_logprobs_prefix(self, ctx: Any, label_ids: list[list[int]]) -> list[float]:
        """Summed log-probabilities of each label's tokens after the context: one forward
        over the context (use_cache), the cache repeated once per label, one forward over
        the labels' tokens. Labels are right-padded: under causal attention a pad after a
        label's last token changes none of that label's logits."""
        import torch

        n, longest = len(label_ids), max(len(ids) for ids in label_ids)
        start = int(ctx["input_ids"].shape[1])
        pad = self._proc.tokenizer.pad_token_id
        rows = torch.tensor([ids + [pad] * (longest - len(ids)) for ids in label_ids], device=ctx["input_ids"].device)
        self._forget_positions()
        with torch.inference_mode():
            first = self._model(**ctx, use_cache=True)
            head = torch.log_softmax(first.logits[0, -1].float(), dim=-1)
            totals = [float(head[ids[0]]) for ids in label_ids]
            if longest > 1:
                # transformers 5.2x renamed the KV cache `past_key_values` -> `cache` (in and
                # out; the old keyword goes in 5.40). Passing a name the forward no longer
                # takes would not fail loudly: the except in _score_labels would quietly
                # switch every later prompt to the 7x slower full-sequence path.
                name = _cache_keyword(self._model)
                cache = first.get("cache")
                cache = first.past_key_values if cache is None else cache
                cache.batch_repeat_interleave(n)
                positions = torch.arange(start, start + longest - 1, device=rows.device)
                rest = self._model(input_ids=rows[:, :-1], cache_position=positions, use_cache=True, **{name: cache})
                logprobs = torch.log_softmax(rest.logits.float(), dim=-1)
                for r, ids in enumerate(label_ids):
                    totals[r] += sum(float(logprobs[r, j - 1, t]) for j, t in enumerate(ids) if j > 0)
        return totals

    def _forget_positions(self) -> None:
        """Drop the position offsets a multimodal-RoPE model (Qwen2-VL, Qwen2.5-VL) keeps
        from its last prompt. The continuation forward reuses them; left over from an
        earlier prompt (a text-only context computes none) or from a batch of another
        size, they would shift or break the label tokens' positions."""
        for module in (self._model, getattr(self._model, "model", None)):
            if module is not None and getattr(module, "rope_deltas", None) is not None:
                module.rope_deltas = None

    def _label_logprobs_full(self, ctx: Any, label_ids: list[list[int]]) -> list[float]:
        """The same sums from one batch of full sequences (context + label), the context's
        tensors repeated per row: n times the work, for any architecture."""
        import torch

        ctx_ids = ctx["input_ids"][0]
        n, longest = len(label_ids), max(len(ids) for ids in label_ids)
        pad = self._proc.tokenizer.pad_token_id
        rows, masks = [], []
        for ids in label_ids:
            rows.append(torch.cat([ctx_ids, torch.tensor(ids + [pad] * (longest - len(ids)), device=ctx_ids.device)]))
            masks.append(torch.tensor([1] * (len(ctx_ids) + len(ids)) + [0] * (longest - len(ids)), device=ctx_ids.device))
        inputs: dict[str, Any] = {"input_ids": torch.stack(rows), "attention_mask": torch.stack(masks)}
        for key, value in ctx.items():
            if key in ("input_ids", "attention_mask"):
                continue
            if key == "mm_token_type_ids":
                inputs[key] = torch.cat([value.repeat(n, 1), torch.zeros((n, longest), dtype=value.dtype, device=value.device)], dim=1)
            elif key in ("pixel_values", "image_grid_thw"):
                inputs[key] = torch.cat([value] * n, dim=0)
            else:
                inputs[key] = value
        with torch.inference_mode():
            logits = self._model(**inputs).logits.float()
        logprobs = torch.log_softmax(logits, dim=-1)
        start = len(ctx_ids)
        return [sum(float(logprobs[r, start + j - 1, t]) for j, t in enumerate(ids)) for r, ids in enumerate(label_ids)]

    async def aclose(self) -> None:
        self._model = None
        self._proc = None
