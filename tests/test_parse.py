"""The strict answer parser over fixed answer strings: valid paths, synonyms, out-of-set."""

from __future__ import annotations

import json

import pytest

from sovtp.labels import DFEW, MAFW
from sovtp.parse import answer_schema, extract_json, parse_answer
from sovtp.types import Answer


def p(text: str, mode: str = "free", **kw):
    return parse_answer(Answer(text=text, mode=mode, **kw), DFEW, kw.pop("target_id", None) if "target_id" in kw else None)


@pytest.mark.parametrize(
    "text,label",
    [
        ("happy", "happy"),
        ("Happiness.", "happy"),
        ("The lips are pressed.\nLabel: anger", "angry"),
        ("Stage 1 ... label: sad\nOn reflection:\n**Final answer:** Surprised", "surprise"),
        ("Final answer - FEARFUL", "fear"),
        ("  neutral  \n", "neutral"),
    ],
)
def test_free_text_valid(text, label):
    r = p(text)
    assert r.status == "ok" and r.label == label


@pytest.mark.parametrize(
    "text",
    [
        "pain",  # published GPT-4V answers contain it: not in DFEW, never mapped
        "Label: pain",
        "Label: contempt",  # a MAFW class, not a DFEW one
        "The person looks happy but also a little sad.",  # prose: no guess
        "Final answer: The emotion is happy",  # not one word
        "",
    ],
)
def test_free_text_invalid_keeps_raw(text):
    r = p(text)
    assert r.status == "invalid" and r.label is None and r.raw == text


def test_contempt_valid_in_mafw():
    assert parse_answer(Answer(text="Label: contemptuous"), MAFW).label == "contempt"


def test_json_stages_and_faces():
    obj = {
        "observation": "brows raised",
        "action_units": "AU1 AU2",
        "context": "alone",
        "reasoning": "shock",
        "faces": {"1": "Surprised", "2": "joy"},
        "label": "fear",
    }
    text = "```json\n" + json.dumps(obj) + "\n```"
    r = parse_answer(Answer(text=text, mode="json"), DFEW, target_id=1)
    assert r.status == "ok"
    assert r.face_labels == {"1": "surprise", "2": "happy"}
    assert r.label == "surprise"  # the target's per-face label is the record's label
    assert r.reasoning == {"observation": "brows raised", "action_units": "AU1 AU2", "context": "alone", "reasoning": "shock"}
    r2 = parse_answer(Answer(text=text, mode="json"), DFEW)
    assert r2.label == "fear"


def test_json_out_of_set_is_invalid():
    r = parse_answer(Answer(text='{"observation": "x", "label": "pain"}', mode="json"), DFEW)
    assert r.status == "invalid" and "pain" in (r.error or "") and r.reasoning == {"observation": "x"}


def test_json_mode_without_json_is_invalid():
    assert parse_answer(Answer(text="happy", mode="json"), DFEW).status == "invalid"


def test_choice_and_rank_and_error():
    assert parse_answer(Answer(text="disgust", mode="choice"), DFEW).label == "disgust"
    scores = {lab: 0.1 for lab in DFEW.labels}
    scores["sad"] = 0.4
    r = parse_answer(Answer(text="...\nFinal answer: sad", mode="rank", label_scores=scores), DFEW)
    assert r.status == "ok" and r.label == "sad" and r.label_scores == scores
    e = parse_answer(Answer(error="request failed after 5 retries (last: HTTP 500)"), DFEW)
    assert e.status == "error" and "HTTP 500" in e.error


def test_answer_schema_enum_and_faces():
    s = answer_schema(DFEW, ["observation", "reasoning"], per_face_ids=[1, 3], max_chars=50)
    assert list(s["properties"]) == ["observation", "reasoning", "faces", "label"]  # reasoning before the label
    assert s["properties"]["label"]["enum"] == list(DFEW.labels)
    assert s["properties"]["faces"]["required"] == ["1", "3"]
    assert s["properties"]["faces"]["properties"]["3"]["enum"] == list(DFEW.labels)
    assert s["required"] == ["observation", "reasoning", "faces", "label"] and s["additionalProperties"] is False
    assert s["properties"]["observation"]["maxLength"] == 50


def test_extract_json_robust():
    assert extract_json('noise {"a": "}"} tail') == {"a": "}"}
    assert extract_json('{"x": {"label": "sad"}, broken}') is None  # never the inner object
    assert extract_json("no json") is None


def test_json_label_keys_in_any_case_and_a_null_label_field_skipped():
    from sovtp.labels import DFEW
    from sovtp.parse import parse_answer
    from sovtp.types import Answer

    for text, label in [('{"Label": "happy"}', "happy"), ('{"LABEL": "Sad"}', "sad"), ('{"label": null, "emotion": "fear"}', "fear")]:
        parsed = parse_answer(Answer(text=text, mode="json"), DFEW)
        assert (parsed.status, parsed.label) == ("ok", label), (text, parsed)


def test_per_face_labels_of_a_ranked_answer_and_ids_the_clip_lacks():
    """On the transformers backend --per-face answers are ranked: the reasoning's faces
    were dropped (face_labels always {}). IDs the clip does not have, and a second label
    for one face, are set aside instead of kept."""
    from sovtp.labels import DFEW
    from sovtp.parse import parse_answer
    from sovtp.types import Answer

    text = '{"why": "...", "faces": {"1": "happy", "face 2": "sad", "7": "fear", "2": "angry"}, "label": "happy"}'
    ranked = Answer(text=text, mode="rank", label_scores={"happy": 0.7, "sad": 0.3})
    parsed = parse_answer(ranked, DFEW, target_id=1, face_ids=[1, 2])
    assert parsed.label == "happy" and parsed.face_labels == {"1": "happy", "2": "sad"}
    assert parsed.reasoning["invalid_face_labels"] == {"7": "fear", "2": "angry"}
    assert parse_answer(Answer(text=text, mode="json"), DFEW, target_id=1, face_ids=[1, 2]).face_labels == {"1": "happy", "2": "sad"}


def test_json_blocks_are_found_in_one_pass_and_never_inside_a_tried_block():
    """extract_json pairs the braces in one pass (80k characters of unclosed braces took
    13 s before, on the event loop; now milliseconds)."""
    from sovtp.parse import extract_json

    assert extract_json('{"stage": ' * 8000) is None
    assert extract_json('{"a": {"label": "happy"}') == {"label": "happy"}  # inside an unclosed block
    assert extract_json('{"x": 1, "faces": {"1": "sad"}} tail') == {"x": 1, "faces": {"1": "sad"}}
    assert extract_json('{not json, "faces": {"1": "sad"}} {"label": "fear"}') == {"label": "fear"}  # not the inner "faces"


def test_dataset_codes_are_read_in_files_but_not_in_a_models_answer():
    """CREMA-D's ANG/HAP codes load as ground truth and predictions; in an answer, "an" or
    "dis" is a cut-off word ("an..." of "anxiety"), and it was read as angry / disgust."""
    from sovtp.eval.datasets import gt_label

    from sovtp.labels import DFEW, MAFW
    from sovtp.parse import parse_answer
    from sovtp.types import Answer

    assert gt_label("ANG", DFEW, "row 2") == "angry" and gt_label("hap", DFEW, "row 3") == "happy"
    for text in ("Answer: an", "dis", '{"label": "an"}'):
        assert parse_answer(Answer(text=text, mode="free"), MAFW).status == "invalid", text
    assert parse_answer(Answer(text="Answer: Anger", mode="free"), MAFW).label == "angry"
