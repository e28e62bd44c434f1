"""Translate a backend-neutral :class:`~sovtp.types.Prompt` into chat messages.

One place for image resizing and encoding, so every transport sends the same pixels
for the same prompt (and the response cache can key on what was actually sent).
"""

from __future__ import annotations

import base64
import io
from typing import Any

import numpy as np

from sovtp.types import ImagePart, Prompt, TextPart


def to_pil(image: np.ndarray, max_side: int | None = None):
    """RGB uint8 array -> PIL image, downscaled (never upscaled) to ``max_side``."""
    from PIL import Image

    img = Image.fromarray(np.ascontiguousarray(image).astype(np.uint8, copy=False), mode="RGB")
    if max_side and max(img.size) > max_side:
        scale = max_side / float(max(img.size))
        size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
        img = img.resize(size, Image.Resampling.LANCZOS)
    return img


def jpeg_data_url(image: np.ndarray, max_side: int | None = None, quality: int = 90) -> str:
    """A ``data:image/jpeg;base64,...`` URL of the (resized) image."""
    buf = io.BytesIO()
    to_pil(image, max_side).save(buf, format="JPEG", quality=quality)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def decode_data_url(url: str) -> np.ndarray:
    """The inverse of :func:`jpeg_data_url` (any PIL-readable image in a data URL)."""
    from PIL import Image

    _, _, payload = url.partition(",")
    img = Image.open(io.BytesIO(base64.b64decode(payload))).convert("RGB")
    return np.asarray(img)


def openai_messages(prompt: Prompt, max_side: int | None = None, detail: str | None = None, quality: int = 90) -> list[dict[str, Any]]:
    """OpenAI chat messages: an optional system turn, then one user turn of text and
    ``image_url`` parts in the prompt's order."""
    content: list[dict[str, Any]] = []
    for part in prompt.parts:
        if isinstance(part, TextPart):
            if part.text:
                content.append({"type": "text", "text": part.text})
        elif isinstance(part, ImagePart):
            image_url: dict[str, Any] = {"url": jpeg_data_url(part.image, max_side, quality)}
            if detail:
                image_url["detail"] = detail
            content.append({"type": "image_url", "image_url": image_url})
    messages: list[dict[str, Any]] = []
    if prompt.system:
        messages.append({"role": "system", "content": prompt.system})
    messages.append({"role": "user", "content": content})
    return messages


def hf_messages(prompt: Prompt, max_side: int | None = None) -> tuple[list[dict[str, Any]], list[Any]]:
    """Messages for a transformers chat template (``{"type": "image"}`` placeholders)
    plus the PIL images in order."""
    content: list[dict[str, Any]] = []
    images = []
    for part in prompt.parts:
        if isinstance(part, TextPart):
            if part.text:
                content.append({"type": "text", "text": part.text})
        elif isinstance(part, ImagePart):
            content.append({"type": "image"})
            images.append(to_pil(part.image, max_side))
    messages: list[dict[str, Any]] = []
    if prompt.system:
        messages.append({"role": "system", "content": [{"type": "text", "text": prompt.system}]})
    messages.append({"role": "user", "content": content})
    return messages, images


def vllm_messages(prompt: Prompt, max_side: int | None = None) -> list[dict[str, Any]]:
    """Messages for ``vllm.LLM.chat``: PIL images passed in place (``image_pil``), no JPEG round trip."""
    content: list[dict[str, Any]] = []
    for part in prompt.parts:
        if isinstance(part, TextPart):
            if part.text:
                content.append({"type": "text", "text": part.text})
        elif isinstance(part, ImagePart):
            content.append({"type": "image_pil", "image_pil": to_pil(part.image, max_side)})
    messages: list[dict[str, Any]] = []
    if prompt.system:
        messages.append({"role": "system", "content": prompt.system})
    messages.append({"role": "user", "content": content})
    return messages


def prompt_schema(prompt: Prompt) -> dict[str, Any]:
    """The prompt's answer schema, or the minimal one (just a label from the set)."""
    if prompt.answer_schema:
        return prompt.answer_schema
    from sovtp.parse import answer_schema

    return answer_schema(list(prompt.labels), [])
