"""Turn a backend's :class:`~sovtp.types.Answer` into a label, strictly.

Zero-shot VLLMs drift outside the label set ("pain", "confused") and wrap labels in
prose. A parser that guesses would hide that drift inside the metrics, so this one
accepts only an explicit answer: a JSON ``label`` field, a constrained choice, a ranked
label, a last ``label:`` / ``final answer:`` line holding one word, or a lone label word.
Synonyms from :mod:`sovtp.labels` are the only mapping; anything else is ``invalid``
with the raw text kept for inspection.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from sovtp.labels import LabelSet, normalize_label
from sovtp.types import Answer, Status

# Keys of a JSON answer that are not reasoning text.
_LABEL_KEYS = ("label", "emotion", "final_label", "answer")
_FACES_KEYS = ("faces", "face_labels", "per_face")

# "Label: happy", "**Final answer**: Happy.", "Emotion - sad" (one per line; the last wins).
_EXPLICIT = re.compile(
    r"^[\s>*_#-]*(?:final\s+answer|final\s+label|label|emotion|answer)[\s*_]*[:=\-][\s*_]*(?P<value>.+?)\s*$",
    re.IGNORECASE | re.MULTILINE,
)
_WORDS = re.compile(r"[A-Za-z]+")


@dataclass
class ParsedAnswer:
    """The parser's verdict. ``label`` is always in the label set when status is ``ok``."""

    status: Status
    label: str | None = None
    face_labels: dict[str, str] = field(default_factory=dict)
    reasoning: dict[str, Any] = field(default_factory=dict)
    label_scores: dict[str, float] | None = None
    raw: str = ""
    error: str | None = None


def answer_schema(
    labels: LabelSet | tuple[str, ...] | list[str],
    stages: list[str],
    per_face_ids: list[int] | None = None,
    max_chars: int | None = None,
) -> dict[str, Any]:
    """The JSON schema of a staged answer: one string per reasoning stage, then (optionally)
    a label per face ID, then ``label``, whose enum is the label set.

    Stages come first so constrained decoding writes the reasoning before it commits to
    a label. Every property is required and no others are allowed, which is what
    OpenAI's strict mode and vLLM's xgrammar both accept. ``max_chars`` bounds each
    stage's text (useful for small models that ramble until max_tokens).
    """
    names = list(labels.labels if isinstance(labels, LabelSet) else labels)
    label_enum = {"type": "string", "enum": names}
    props: dict[str, Any] = {}
    for stage in stages:
        s: dict[str, Any] = {"type": "string"}
        if max_chars is not None:
            s["maxLength"] = int(max_chars)
        props[stage] = s
    required = list(stages)
    if per_face_ids:
        ids = [str(i) for i in per_face_ids]
        props["faces"] = {
            "type": "object",
            "properties": {i: dict(label_enum) for i in ids},
            "required": ids,
            "additionalProperties": False,
        }
        required.append("faces")
    props["label"] = label_enum
    required.append("label")
    return {"type": "object", "properties": props, "required": required, "additionalProperties": False}


def parse_answer(answer: Answer, labels: LabelSet, target_id: int | None = None, face_ids: Collection[int] | None = None) -> ParsedAnswer:
    """Parse one answer. Never raises: every outcome is ok, invalid (raw kept) or error.
    ``face_ids``: the clip's faces; per-face labels for other IDs are set aside."""
    raw = answer.text or ""
    if answer.error:
        return ParsedAnswer(status="error", raw=raw, error=answer.error)

    obj = answer.parsed if isinstance(answer.parsed, dict) else None
    if obj is None and answer.mode in ("json", "free", "rank"):
        obj = extract_json(raw)

    if answer.label_scores:
        return _from_scores(answer.label_scores, labels, obj, raw, face_ids)
    if obj is not None:
        return _from_json(obj, labels, target_id, raw, face_ids)
    if answer.mode == "json":
        return ParsedAnswer(status="invalid", raw=raw, error="the answer was not the requested JSON object")
    label = parse_free_text(raw, labels)
    if label is None:
        return ParsedAnswer(status="invalid", raw=raw, error="no label of the set found in the answer")
    return ParsedAnswer(status="ok", label=label, raw=raw)


def parse_free_text(text: str, labels: LabelSet) -> str | None:
    """The label named by the last explicit ``label:``/``final answer:`` line, or by a
    text that is one lone word; None otherwise (never a guess from prose)."""
    matches = list(_EXPLICIT.finditer(text))
    if matches:
        return _one_word_label(matches[-1].group("value"), labels)
    return _one_word_label(text, labels)


def extract_json(text: str) -> dict[str, Any] | None:
    """The first JSON object in ``text`` (bare, or inside a ```json fence), else None.

    One pass pairs every brace (outside strings); then the blocks are tried in order,
    never inside a balanced block that was tried (an inner object such as "faces" must
    not pass for the answer), and inside an unclosed one. Linear in the text: a model
    that rambles 80k characters of unclosed braces took 13 s here, on the event loop."""
    if not text:
        return None
    first = text.find("{")
    if first == -1:
        return None
    closes: dict[int, int] = {}
    opens: list[int] = []
    stack: list[int] = []
    in_str = esc = False
    for i in range(first, len(text)):
        c = text[i]
        if in_str:
            if esc:
                esc = False
            elif c == "\\":
                esc = True
            elif c == '"':
                in_str = False
        elif c == '"':
            in_str = True
        elif c == "{":
            stack.append(i)
            opens.append(i)
        elif c == "}" and stack:
            closes[stack.pop()] = i
    skip_to = -1
    for o in opens:
        if o <= skip_to or o not in closes:
            continue  # inside a block already tried, or unclosed (its inner blocks are next)
        end = closes[o]
        try:  # strict=False: small models emit raw control characters in strings
            value = json.loads(text[o : end + 1], strict=False)
        except ValueError:
            skip_to = end
            continue
        if isinstance(value, dict):
            return value
        skip_to = end
    return None


# --------------------------------------------------------------------------- helpers


def _one_word_label(value: str, labels: LabelSet) -> str | None:
    whole = value.strip().strip("\"'`*_.!,;:()[]{} ").lower()
    if whole in labels:  # a multi-word custom label, e.g. "very happy"
        return whole
    words = _WORDS.findall(value)
    if len(words) != 1:
        return None
    return normalize_label(words[0], labels)


def _from_scores(
    scores: dict[str, float], labels: LabelSet, obj: dict[str, Any] | None, raw: str, face_ids: Collection[int] | None = None
) -> ParsedAnswer:
    in_set = {k: float(v) for k, v in scores.items() if k in labels}
    if not in_set:
        return ParsedAnswer(status="invalid", raw=raw, label_scores=dict(scores), error="the ranked labels are not in the label set")
    label = max(in_set, key=in_set.__getitem__)
    reasoning = _reasoning(obj) if obj else {}
    # the reasoning's per-face labels (--per-face on a ranking backend); the record's label
    # stays the ranked one
    face_labels = _face_labels(obj, labels, face_ids, reasoning) if obj else {}
    return ParsedAnswer(status="ok", label=label, face_labels=face_labels, reasoning=reasoning, label_scores=in_set, raw=raw)


def _reasoning(obj: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if str(k).lower() not in _LABEL_KEYS and str(k).lower() not in _FACES_KEYS}


def _field(obj: dict[str, Any], names: tuple[str, ...], want: type | None = None) -> Any:
    """The first of ``names`` (in that order of preference) the object has, whatever its
    case ("Label", "LABEL"), skipping nulls (and values not of type ``want``)."""
    for name in names:
        for k, v in obj.items():
            if str(k).lower() == name and v is not None and (want is None or isinstance(v, want)):
                return v
    return None


def _face_labels(obj: dict[str, Any], labels: LabelSet, face_ids: Collection[int] | None, reasoning: dict[str, Any]) -> dict[str, str]:
    """Per-face labels by face ID ("face 2" -> "2"); labels outside the set, IDs the clip
    does not have and a second label for one ID go to ``reasoning["invalid_face_labels"]``."""
    face_labels: dict[str, str] = {}
    bad_faces: dict[str, Any] = {}
    faces = _field(obj, _FACES_KEYS, dict)
    known = {str(i) for i in face_ids} if face_ids is not None else None
    for fid, value in (faces or {}).items():
        key = re.sub(r"\D", "", str(fid)) or str(fid)  # "face 2" -> "2"
        norm = normalize_label(str(value), labels) if isinstance(value, str) else None
        if norm is None or (known is not None and key not in known) or key in face_labels:
            bad_faces[str(fid)] = value
        else:
            face_labels[key] = norm
    if bad_faces:
        reasoning["invalid_face_labels"] = bad_faces
    return face_labels


def _from_json(
    obj: dict[str, Any], labels: LabelSet, target_id: int | None, raw: str, face_ids: Collection[int] | None = None
) -> ParsedAnswer:
    reasoning = _reasoning(obj)
    face_labels = _face_labels(obj, labels, face_ids, reasoning)

    value = _field(obj, _LABEL_KEYS)
    if target_id is not None and str(target_id) in face_labels:
        label: str | None = face_labels[str(target_id)]  # the target's per-face label is the record's label
    elif isinstance(value, str):
        label = normalize_label(value, labels) or _one_word_label(value, labels)
    else:
        label = None
    if label is None:
        what = f"the label {value!r} is not in the label set" if value is not None else "the answer has no label field"
        return ParsedAnswer(status="invalid", face_labels=face_labels, reasoning=reasoning, raw=raw, error=what)
    return ParsedAnswer(status="ok", label=label, face_labels=face_labels, reasoning=reasoning, raw=raw)
