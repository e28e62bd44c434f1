"""Templates: golden text of every built-in template from fixed hand-built cues, front
matter, loading, the sandbox, and error messages that name the template, the line
and the variable.

Golden files live in tests/golden/. After an intended change to a template or to
``sovtp.cuetext``, regenerate them with::

    SOVTP_UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/test_templates.py -q

and review the diff (``git diff tests/golden``) before committing.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from sovtp.compose import BUILTIN_TEMPLATES, TemplateError, check_needs, check_template, compose_prompt, load_template, template_from_source
from sovtp.cuetext import variables_reference
from sovtp.errors import UserError
from sovtp.labels import DFEW, MAFW
from sovtp.preview_page import prompt_as_text
from sovtp.types import AU, Box, Clip, Cues, ExpressionEstimate, FaceAUs, FaceObservation, FaceTrack, Frame, ImagePart, Pose, SceneStats

GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("SOVTP_UPDATE_GOLDEN") == "1"


# --------------------------------------------------------------------------- fixed cues


def fixed_clip(n: int = 4) -> Clip:
    frames = tuple(Frame(position=i, index=i * 12, timestamp=i * 0.5, image=np.zeros((360, 640, 3), dtype=np.uint8)) for i in range(n))
    return Clip(path=Path("clip.mp4"), content_hash="f" * 64, frames=frames, fps=24.0, duration=2.0, width=640, height=360, frame_count=48)


def fixed_cues() -> Cues:
    """Three people: the target in the centre with AUs and posture, one happy-looking
    person on the left, one with no estimate on the right; pose skipped for person 3."""
    lm = [(300.0 + i % 20, 100.0 + i // 20, 0.0) for i in range(478)]
    target = FaceTrack(
        id=2, observations=[FaceObservation(position=i, box=Box(x1=280, y1=90, x2=360, y2=190), landmarks=lm) for i in range(4)]
    )
    left = FaceTrack(id=1, observations=[FaceObservation(position=i, box=Box(x1=60, y1=120, x2=120, y2=190)) for i in range(3)])
    right = FaceTrack(id=3, observations=[FaceObservation(position=i, box=Box(x1=540, y1=300, x2=590, y2=350)) for i in range(2)])
    return Cues(
        faces=[left, target, right],
        target_id=2,
        aus={
            2: FaceAUs(
                face_id=2,
                summary=[
                    AU(number=4, name="brow lowerer", intensity=0.71, provider="geometric"),
                    AU(number=15, name="lip corner depressor", intensity=0.48, provider="geometric"),
                    AU(number=1, name="inner brow raiser", intensity=0.33, provider="geometric"),
                    AU(number=12, name="lip corner puller", intensity=0.05, provider="geometric"),
                ],
            )
        },
        poses={2: Pose(person_id=2, provider="mediapipe-pose", posture=["head lowered", "shoulders raised", "arms crossed"])},
        scene=SceneStats(num_people=3, motion_energy=0.0123, person_motion={1: 0.01, 2: 0.034, 3: 0.002}, brightness=0.38, contrast=0.19),
        expressions={
            1: ExpressionEstimate(face_id=1, label="happy", scores={"happy": 0.81, "neutral": 0.12}, provider="prototype"),
            2: ExpressionEstimate(face_id=2, label="sad", scores={"sad": 0.6}, provider="prototype"),
        },
        ran={"faces": "1", "landmarks": "1", "aus": "1", "pose": "1", "scene": "1", "expressions": "1"},
    )


def placeholder_images(clip: Clip, n: int | None = None) -> list[ImagePart]:
    n = len(clip.frames) if n is None else n
    return [ImagePart(image=np.zeros((8, 8, 3), dtype=np.uint8), caption=f"frame {i + 1}/{n}") for i in range(n)]


def golden_text(prompt) -> str:
    schema = json.dumps(prompt.answer_schema, indent=1, sort_keys=False) if prompt.answer_schema else "null"
    return (
        f"{prompt_as_text(prompt)}\n--- template {prompt.template_name}; labels {', '.join(prompt.labels)}\n--- answer schema\n{schema}\n"
    )


def check_golden(name: str, text: str) -> None:
    path = GOLDEN / f"{name}.txt"
    if UPDATE or not path.exists():
        if not UPDATE:
            pytest.fail(f"missing golden file {path}; create it with SOVTP_UPDATE_GOLDEN=1")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert text == path.read_text(encoding="utf-8"), (
        f"rendered text differs from {path}; if intended, regenerate with SOVTP_UPDATE_GOLDEN=1"
    )


# --------------------------------------------------------------------------- golden


@pytest.mark.parametrize("name", BUILTIN_TEMPLATES)
def test_golden_builtin_template(name):
    t = load_template(name)
    clip = fixed_clip()
    prompt = compose_prompt(t, clip, fixed_cues(), DFEW, placeholder_images(clip))
    check_golden(name, golden_text(prompt))


@pytest.mark.parametrize(
    "case",
    ["no_face", "cues_none", "cues_au_pose", "per_face", "grid", "still_image", "mafw", "blur_all"],
)
def test_golden_sovtp_variants(case):
    t = load_template("sovtp")
    clip, cues, labels, include, per_face, layout, privacy = fixed_clip(), fixed_cues(), DFEW, None, False, None, "none"
    images = placeholder_images(clip)
    if case == "no_face":
        cues = Cues(ran={"faces": "1", "aus": "1"}, skipped={"pose": "mediapipe pose could not be imported; install mediapipe==0.10.21"})
    elif case == "cues_none":
        include = set()
    elif case == "cues_au_pose":
        include = {"aus", "pose"}
    elif case == "per_face":
        per_face = True
    elif case == "grid":
        images, layout = placeholder_images(clip, 1), "grid"
    elif case == "still_image":
        clip = Clip(
            path=Path("p.jpg"),
            content_hash="e" * 64,
            frames=clip.frames[:1],
            fps=None,
            duration=None,
            width=640,
            height=360,
            frame_count=1,
            is_image=True,
        )
        images = placeholder_images(clip)
    elif case == "mafw":
        labels = MAFW
    elif case == "blur_all":
        privacy = "blur-all"
    prompt = compose_prompt(t, clip, cues, labels, images, include_cues=include, per_face=per_face, layout=layout, privacy=privacy)
    check_golden(f"sovtp_{case}", golden_text(prompt))


@pytest.mark.parametrize("visual", ["red_circle", "crop", "blur_reverse", "none", "som"])
def test_target_reference_follows_the_visual_mode(visual):
    t = load_template("sov")
    clip = fixed_clip()
    text = compose_prompt(t, clip, fixed_cues(), DFEW, placeholder_images(clip), visual=visual).text
    expected = {
        "red_circle": "the person circled in red",
        "crop": "the person whose face is shown",
        "blur_reverse": "the person whose face is in focus",
        "none": "the most prominent person",
        "som": "the person marked 2",
    }[visual]
    assert expected in text


# --------------------------------------------------------------------------- front matter


def test_builtin_templates_declare_their_front_matter():
    expect = {
        "sovtp": ("sovtp", "stages", 6),
        "sov": ("landmarks", "label", 2),
        "direct": ("none", "label", 0),
        "text_cues": ("none", "stages", 5),
    }
    for name, (visual, answer, n_needs) in expect.items():
        t = load_template(name)
        assert (t.visual, t.answer, len(t.needs), t.layout, t.images) == (visual, answer, n_needs, "frames", None)
        assert len(t.sha256) == 64 and t.path is not None and t.path.name == f"{name}.j2"
        check_template(t)
    assert load_template("sovtp").stages == ("scene_context", "body_language", "other_people", "action_units", "final_check")


def test_user_template_by_path_folder_and_suffixless(tmp_path):
    (tmp_path / "mine.j2").write_text(
        "{#---\nvisual: red_circle\nlayout: grid\nimages: 1\n---#}\nWhat does {{ target_ref }} feel? {{ labels_text }}\n"
    )
    for spec, folder in ((str(tmp_path / "mine.j2"), None), (str(tmp_path / "mine"), None), ("mine", tmp_path)):
        t = load_template(spec, folder)
        assert (t.name, t.visual, t.layout, t.images, t.answer) == ("mine", "red_circle", "grid", 1, "label")
        check_template(t)


def test_template_hash_changes_with_the_text(tmp_path):
    p = tmp_path / "t.j2"
    p.write_text("A {{ labels_text }}")
    h1 = load_template(str(p)).sha256
    p.write_text("B {{ labels_text }}")
    assert load_template(str(p)).sha256 != h1


@pytest.mark.parametrize(
    "front, message",
    [
        ("visual: sparkles", "line 2: unknown visual mode 'sparkles'"),
        ("layout: mosaic", "line 2: unknown layout 'mosaic'"),
        ("needs: [faces, gaze]", "line 2: 'needs' must be a list of cue kinds"),
        ("answer: stages", "line 2: answer 'stages' needs a 'stages' list"),
        ("images: 0", "line 2: 'images' must be a positive number"),
        ("visul: sovtp", "line 2: unknown front-matter key 'visul'"),
        ("stages: [a, label]\nanswer: stages", "'label' and 'faces' are reserved"),
    ],
)
def test_bad_front_matter_names_the_line(front, message):
    with pytest.raises(TemplateError, match=message.replace("[", r"\[").replace("(", r"\(")):
        template_from_source("{#---\n" + front + "\n---#}\n{{ labels_text }}\n", "bad")


def test_unknown_template_and_folder_errors(tmp_path):
    with pytest.raises(TemplateError, match="unknown template 'sovpt'; use one of sovtp, sov, direct, text_cues"):
        load_template("sovpt")
    with pytest.raises(TemplateError, match="is a folder"):
        load_template(str(tmp_path))


def test_check_needs_against_configured_extractors():
    t = load_template("sovtp")
    check_needs(t, {"faces", "landmarks", "aus", "pose", "scene", "expressions"})
    with pytest.raises(TemplateError, match="needs the cue\\(s\\) pose, expressions but no configured extractor provides them"):
        check_needs(t, {"faces", "landmarks", "aus", "scene"})


# --------------------------------------------------------------------------- sandbox and errors


@pytest.mark.parametrize(
    "body",
    [
        "{% for face in faces %}{{ face.__class__ }}{% endfor %}",
        "{{ target.__class__.__mro__ }}",
        "{{ labels.__class__ }}",
    ],
)
def test_dunder_access_is_a_sandbox_error(body):
    t = template_from_source("intro\n" + body + "\n", "evil")
    with pytest.raises(TemplateError, match="template 'evil' line 2: .*unsafe.*blocked by the sandbox") as err:
        check_template(t)
    assert isinstance(err.value, UserError) and err.value.line == 2


def test_unsafe_calls_fail_at_render_time_in_the_sandbox():
    """What the static check lets through (attribute names that exist) the sandbox still
    blocks when rendering: mutating calls, and dunder access via the attr filter."""
    from sovtp.compose import render_text
    from sovtp.cuetext import sample_clip_and_cues, template_variables

    clip, cues = sample_clip_and_cues()
    variables = template_variables(clip, cues, DFEW)
    for body in ("{{ labels.append('x') }}", "{{ (target | attr('__class__')) }}", "{{ scene.update({'x': 1}) }}"):
        t = template_from_source("first\nsecond\n" + body, "evil")
        with pytest.raises(TemplateError, match="template 'evil' line 3: the sandbox blocked an unsafe operation"):
            render_text(t, variables)


def test_typo_in_a_variable_names_the_variable_and_the_line():
    t = template_from_source("{#---\nneeds: [aus]\n---#}\nline four\n{% if target %}\nAUs: {{ targte.au_text }}\n{% endif %}\n", "typo")
    with pytest.raises(TemplateError) as err:
        check_template(t)
    assert err.value.variable == "targte" and err.value.line == 6
    assert str(err.value) == "template 'typo' line 6: undefined variable 'targte'; check its spelling against prompts/VARIABLES.md."


def test_typo_in_an_attribute_names_it_and_the_line():
    t = template_from_source("one\ntwo\n{% for o in others %}{{ o.expresion.label }}{% endfor %}\n", "typo2")
    with pytest.raises(TemplateError, match="template 'typo2' line 3: unknown attribute 'expresion'"):
        check_template(t)


def test_typo_in_an_untaken_branch_is_still_found():
    t = template_from_source("{% if num_frames > 1000 %}\n{{ secne.text }}\n{% endif %}\n", "branch")
    with pytest.raises(TemplateError, match="line 2: undefined variable 'secne'"):
        check_template(t)


def test_template_that_breaks_on_a_clip_without_faces_is_caught_before_running():
    t = template_from_source("Judge face {{ target.id }}.\n", "fragile")
    with pytest.raises(TemplateError, match="template 'fragile' line 1: fails when a clip has no face .*guard it with"):
        check_template(t)


def test_syntax_error_names_the_line():
    t = template_from_source("ok\n{% if target %}\nunclosed\n", "broken")
    with pytest.raises(TemplateError, match="template 'broken' line .*syntax error"):
        check_template(t)


def test_includes_cannot_leave_the_template_folder(tmp_path):
    (tmp_path / "secret.txt").write_text("SECRET")
    inner = tmp_path / "tpl"
    inner.mkdir()
    (inner / "part.j2").write_text("part for {{ target_ref }}")
    (inner / "main.j2").write_text("{% include 'part.j2' %}\n")
    check_template(load_template(str(inner / "main.j2")))
    (inner / "escape.j2").write_text("{% include '../secret.txt' %}\n")
    with pytest.raises(TemplateError, match="template 'escape' line 1"):
        check_template(load_template(str(inner / "escape.j2")))


def test_imports_includes_front_matter_quotes_and_a_bom(tmp_path):
    """What a user template may do, as prompts/README.md says: an {% import ... as m %}
    macro (was "unknown attribute 'describe'"); a typo in an included file is found up
    front and named with that file (was named as the main template, at the included
    file's line, or only on the first clip that took its branch); a '#' inside a quoted
    front-matter value is text (a system prompt "Label #1 ..." became '"Label'); a file
    saved with a BOM keeps its front matter (it was silently ignored)."""
    (tmp_path / "macros.j2").write_text("{% macro describe(f) %}face {{ f.id }} ({{ f.position }}){% endmacro %}", encoding="utf-8")
    (tmp_path / "imp.j2").write_text(
        '{% import "macros.j2" as m %}{% for f in faces %}{{ m.describe(f) }} {% endfor %}{{ labels_text }}', encoding="utf-8"
    )
    check_template(load_template(str(tmp_path / "imp.j2")))

    (tmp_path / "part.j2").write_text("ok\n{% if is_image %}{{ tpyo }}{% endif %}", encoding="utf-8")
    (tmp_path / "outer.j2").write_text('{% include "part.j2" %} {{ labels_text }}', encoding="utf-8")
    with pytest.raises(TemplateError, match=r"template 'outer', in its included 'part.j2' line 2: undefined variable 'tpyo'"):
        check_template(load_template(str(tmp_path / "outer.j2")))

    quoted = template_from_source('{#---\nsystem: "Label #1 is the answer"  # a comment\n---#}\nx', "q")
    assert quoted.system == "Label #1 is the answer"

    (tmp_path / "bom.j2").write_bytes("\ufeff{#---\nvisual: numbered\nanswer: stages\nstages: [look]\n---#}\n{{ answer_format }}".encode())
    bom = load_template(str(tmp_path / "bom.j2"))
    assert (bom.visual, bom.answer, bom.stages) == ("numbered", "stages", ("look",)) and "\ufeff" not in bom.source


def test_huge_range_is_refused():
    t = template_from_source("{% for i in range(10**9) %}x{% endfor %}", "loop")
    with pytest.raises(TemplateError, match="template 'loop' line 1"):
        check_template(t)


# --------------------------------------------------------------------------- variables reference


def test_variables_reference_is_current():
    """prompts/VARIABLES.md is generated by `python -m sovtp.cuetext`; rerun it after
    changing sovtp/cuetext.py (SOVTP_UPDATE_GOLDEN=1 rewrites it here)."""
    from sovtp.cuetext import reference_path, write_variables_reference

    if UPDATE:
        write_variables_reference()
    assert reference_path().read_text(encoding="utf-8") == variables_reference()


def test_every_variable_is_documented_and_every_documented_variable_exists():
    from sovtp.cuetext import VARIABLES, sample_clip_and_cues, template_variables

    clip, cues = sample_clip_and_cues()
    v = template_variables(clip, cues, DFEW)
    top = {k for k in VARIABLES if "." not in k and "(" not in k and k != "images"}
    assert top == set(v)
    face_keys = {k.split(".", 1)[1] for k in VARIABLES if k.startswith("face.")}
    assert face_keys == set(v["target"]) == set(v["others"][0])


def test_the_readme_example_template_passes_the_check():
    import re

    from sovtp.compose import builtin_dir

    readme = (builtin_dir() / "README.md").read_text(encoding="utf-8")
    source = re.search(r"```jinja\n(.*?)```", readme, re.S).group(1)
    t = template_from_source(source, "mine")
    check_template(t)
    assert (t.needs, t.visual, t.layout, t.images, t.answer) == (("faces", "aus"), "numbered", "grid", 1, "label")


def test_template_dir_is_searched_first_by_name(tmp_path, media, monkeypatch):
    """`--template-dir DIR --template NAME` finds DIR/NAME.j2 (before a built-in of that
    name) and the run key follows that file's text."""
    from typer.testing import CliRunner

    from sovtp.cli import app

    folder = tmp_path / "mine"
    folder.mkdir()
    source = (Path(__file__).resolve().parents[1] / "prompts" / "direct.j2").read_text(encoding="utf-8")
    (folder / "direct.j2").write_text(source.replace("{{", "LAB TEMPLATE {{", 1), encoding="utf-8")
    monkeypatch.setenv("SOVTP_TEMPLATES", "")  # restored (unset) after the test: the CLI sets it for this process
    out = tmp_path / "preview"
    result = CliRunner().invoke(
        app,
        ["prompt", str(media / "single_face.jpg"), "--out", str(out), "--template-dir", str(folder), "--template", "direct", "--no-cache"],
    )
    assert result.exit_code == 0, result.output
    texts = [p.read_text(encoding="utf-8") for p in out.rglob("*.txt")] + [p.read_text(encoding="utf-8") for p in out.rglob("*.md")]
    assert any("LAB TEMPLATE" in t for t in texts), sorted(p.name for p in out.rglob("*"))


@pytest.mark.parametrize("name", ["sovtp", "text_cues"])
def test_a_measured_pose_without_posture_cues_is_said_not_omitted(name):
    """Body keypoints found but no posture rule fired: the prompt says the pose was read
    and nothing was marked, so the model can tell "upright" from "not measured"."""
    cues = fixed_cues()
    cues = cues.model_copy(update={"poses": {2: Pose(person_id=2, provider="mediapipe-pose", posture=[])}})
    clip = fixed_clip()
    text = compose_prompt(load_template(name), clip, cues, DFEW, placeholder_images(clip)).text
    assert "Posture from body keypoints: nothing marked" in text
    assert "pose extractor ran but found nothing" not in text  # it found the keypoints
    unmeasured = cues.model_copy(update={"poses": {}})
    text = compose_prompt(load_template(name), clip, unmeasured, DFEW, placeholder_images(clip)).text
    assert "Posture from body keypoints" not in text
    assert "pose (the pose extractor ran but found nothing)" in text
