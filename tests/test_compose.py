"""compose_prompt: parts in order, image placement, image counts, cue ablations,
per-face schemas, and one prompt composed from real frames and real detections."""

from __future__ import annotations

import numpy as np
import pytest

from sovtp.compose import compose_prompt, load_template, template_from_source
from sovtp.labels import DFEW, FERV39K
from sovtp.types import ImagePart, TextPart
from tests.test_templates import fixed_clip, fixed_cues, placeholder_images


def kinds(prompt) -> list[str]:
    return ["img" if isinstance(p, ImagePart) else "txt" for p in prompt.parts]


def test_images_come_first_by_default():
    clip = fixed_clip()
    p = compose_prompt(load_template("direct"), clip, fixed_cues(), DFEW, placeholder_images(clip))
    assert kinds(p) == ["img"] * 4 + ["txt"]
    assert [im.caption for im in p.images] == [f"frame {i}/4" for i in range(1, 5)]
    assert p.labels == DFEW.labels and p.template_name == "direct" and len(p.template_hash) == 64
    assert p.answer_schema is None


def test_images_go_where_the_template_places_them():
    clip = fixed_clip()
    t = template_from_source("Look at these:\n{{ images }}\nNow answer: {{ labels_text }}\n", "placed")
    p = compose_prompt(t, clip, fixed_cues(), DFEW, placeholder_images(clip))
    assert kinds(p) == ["txt", "img", "img", "img", "img", "txt"]
    assert p.parts[0].text == "Look at these:"
    t = template_from_source("First frame:\n{{ image(1) }}\nLast frame:\n{{ image(4) }}\nanswer", "some")
    p = compose_prompt(t, clip, fixed_cues(), DFEW, placeholder_images(clip))
    # frames 2 and 3 were not placed: they lead
    assert [x.caption if isinstance(x, ImagePart) else x.text for x in p.parts] == [
        "frame 2/4", "frame 3/4", "First frame:", "frame 1/4", "Last frame:", "frame 4/4", "answer",
    ]  # fmt: skip


def test_declared_image_count_picks_evenly_spaced_frames():
    clip = fixed_clip()
    one = template_from_source("{#---\nimages: 1\n---#}\n{{ num_images }} image", "one")
    p = compose_prompt(one, clip, fixed_cues(), DFEW, placeholder_images(clip))
    assert [im.caption for im in p.images] == ["frame 2/4"] and p.text == "1 image"
    two = template_from_source("{#---\nimages: 2\n---#}\nx", "two")
    p = compose_prompt(two, clip, fixed_cues(), DFEW, placeholder_images(clip))
    assert [im.caption for im in p.images] == ["frame 1/4", "frame 4/4"]


def test_the_text_names_the_frames_sent_not_every_frame_sampled():
    """A template that sends 2 of 4 sampled frames (images: 2) names 2 times; one sent
    frame reads as one frame (before: "The 1 images are frames ... at 0.00 s, 0.50 s,
    1.00 s, 1.50 s")."""
    clip = fixed_clip()
    source = load_template("sovtp").source
    two = template_from_source(source.replace("images: null", "images: 2"), "two")
    text = compose_prompt(two, clip, fixed_cues(), DFEW, placeholder_images(clip)).text
    assert "The 2 images are frames sampled in order from one video clip (2.0 s long), at 0.00 s, 1.50 s." in text
    one = template_from_source(source.replace("images: null", "images: 1"), "one")
    text = compose_prompt(one, clip, fixed_cues(), DFEW, placeholder_images(clip), layout="frames").text
    assert "The image is one frame of a video clip (2.0 s long), at 0.50 s." in text


def test_text_cues_say_whether_ids_are_drawn():
    clip = fixed_clip()
    t = load_template("text_cues")
    plain = compose_prompt(t, clip, fixed_cues(), DFEW, placeholder_images(clip)).text
    assert "Faces detected (IDs refer to this text only; nothing is drawn on the images):" in plain
    drawn = compose_prompt(t, clip, fixed_cues(), DFEW, placeholder_images(clip), visual="numbered").text
    assert "Faces detected (the same IDs as drawn on the images):" in drawn and "nothing is drawn" not in drawn


def test_a_single_image_for_many_frames_is_described_as_a_grid():
    clip = fixed_clip()
    p = compose_prompt(load_template("sov"), clip, fixed_cues(), DFEW, placeholder_images(clip, 1))
    assert "The 4 frames are tiled into one image in reading order" in p.text


@pytest.mark.parametrize(
    "include, present, absent",
    [
        (None, ["AU4 (brow lowerer)", "head lowered", "motion energy 0.012", '"happy"'], []),
        (set(), [], ["AU4", "head lowered", "motion energy", '"happy"', "Face 1 (left)"]),
        ({"aus"}, ["AU4 (brow lowerer)"], ["head lowered", "motion energy", '"happy"']),
        ({"aus", "pose"}, ["AU4 (brow lowerer)", "head lowered"], ["motion energy 0.012", '"happy"']),
        ({"faces", "expressions"}, ['"happy"', "Face 1 (left)"], ["AU4", "head lowered"]),
        ({"expressions"}, ["expressions (they are told per face, and the faces cue is left out"], ['"happy"', "Face 1 (left)"]),
    ],
)
def test_include_cues_controls_the_text_cues(include, present, absent):
    clip = fixed_clip()
    text = compose_prompt(load_template("sovtp"), clip, fixed_cues(), DFEW, placeholder_images(clip), include_cues=include).text
    for s in present:
        assert s in text
    for s in absent:
        assert s not in text
    assert "the person marked 2" in text, "the target is named whatever text cues are left out"


def test_unknown_cue_kind_is_refused():
    clip = fixed_clip()
    with pytest.raises(ValueError, match=r"unknown cue kind\(s\) \['gaze'\]"):
        compose_prompt(load_template("sovtp"), clip, fixed_cues(), DFEW, placeholder_images(clip), include_cues={"gaze"})


def test_per_face_answers_get_a_label_per_face_in_the_schema():
    clip = fixed_clip()
    p = compose_prompt(load_template("sovtp"), clip, fixed_cues(), FERV39K, placeholder_images(clip), per_face=True)
    faces = p.answer_schema["properties"]["faces"]
    assert faces["required"] == ["1", "2", "3"]
    assert faces["properties"]["3"]["enum"] == list(FERV39K.labels)
    assert list(p.answer_schema["properties"])[-1] == "label"
    assert '"faces": {"1": ' in p.text and 'Under "faces"' in p.text


def test_privacy_is_told_to_the_model():
    clip = fixed_clip()
    text = compose_prompt(load_template("sovtp"), clip, fixed_cues(), DFEW, placeholder_images(clip), privacy="blur-all").text
    assert "For privacy, every face is blurred" in text


def test_visual_override_changes_the_description():
    clip = fixed_clip()
    t = load_template("sovtp")
    text = compose_prompt(t, clip, fixed_cues(), DFEW, placeholder_images(clip), visual="red_circle").text
    assert "A red ellipse marks the person to judge." in text and "the person circled in red" in text
    assert "dots mark its facial landmarks" not in text


def test_prompt_from_real_frames_and_detections(media):
    """The path the pipeline takes: real photo -> real mediapipe cues -> render -> compose."""
    from sovtp.render import render_views
    from tests.test_render import real_scene

    clip, cues = real_scene(str(media / "multi_face.jpg"))
    images = render_views(clip, cues, "sovtp")
    p = compose_prompt(load_template("sovtp"), clip, cues, DFEW, images)
    assert kinds(p) == ["img", "txt"]
    assert p.images[0].image.shape == clip.frames[0].image.shape
    assert f"the person marked {cues.target_id}" in p.text
    assert "The image is a single photo." in p.text
    others = [f.id for f in cues.faces if f.id != cues.target_id]
    assert all(f"- Face {i} (" in p.text for i in others)
    assert isinstance(p.parts[-1], TextPart) and p.parts[-1].text.endswith("fear.")
    assert np.array_equal(images[0].image, p.images[0].image)


@pytest.mark.parametrize(
    ("target", "visual", "says"),
    [
        (2, "none", "the most prominent person"),  # the largest face
        (1, "none", "the person with the second-largest of the 3 faces"),
        (3, "box", "the person with the smallest of the 3 faces"),
        (3, "numbered", "the person marked 3"),
        (3, "red_circle", "the person circled in red"),
    ],
)
def test_a_target_the_images_do_not_single_out_is_named_by_its_size(target: int, visual: str, says: str):
    """`--target 3` (or `center`) with a mode that draws no ID: before, the prompt asked
    about "the most prominent person", so the model judged the largest face while the
    record scored its answer as face 3's."""
    clip = fixed_clip()
    cues = fixed_cues().model_copy(update={"target_id": target})
    text = compose_prompt(load_template("direct"), clip, cues, DFEW, placeholder_images(clip), visual=visual).text
    assert f"Which emotion does {says} in this video show?" in text


@pytest.mark.parametrize(
    ("options", "says"),
    [
        (["--target", "lagest"], "--target 'lagest' is not a rule; use largest, center or a face ID number"),
        (["--privacy", "blur-all", "--visual", "crop"], "--privacy blur-all blurs the target's face too, and --visual crop shows"),
        (["--privacy", "blur-all", "--visual", "blur_reverse"], "use --privacy blur-others, or another --visual"),
        (["--per-face", "--template", "sov"], "template 'sov' never asks for them; use --template sovtp or text_cues"),
        (["--visual", "boxes"], "--visual 'boxes' is not one of none, box, numbered"),
        (["--sampling", "au_peak"], "--sampling 'au_peak' is not one of uniform, au-peak"),  # before: sampled uniformly
        (["--layout", "grids"], "--layout 'grids' is not one of frames, grid"),
    ],
)
def test_settings_every_item_would_fail_on_are_refused_before_anything_is_decoded(media, tmp_path, options, says):
    """Before: a misspelt --target failed every item after decoding and extracting it;
    blur-all with crop sent a uniform square, and with blur_reverse "the person whose
    face is in focus" with every face blurred; --per-face was silently ignored by the
    label templates (an ablation axis comparing identical prompts)."""
    from typer.testing import CliRunner

    from sovtp.cli import app

    res = CliRunner().invoke(app, ["prompt", str(media / "multi_face.jpg"), "--out", str(tmp_path / "p"), *options])
    assert res.exit_code == 1 and says in " ".join(res.output.split()), res.output
    assert not (tmp_path / "p").exists() or not any((tmp_path / "p").iterdir())


def test_an_ablation_with_one_impossible_variant_stops_before_any_runs(media, tmp_path):
    from sovtp.eval import ablation as A

    from sovtp.inputs import InputItem
    from sovtp.pipeline import RunConfig

    items = [InputItem(media / "single_face.jpg", {"label": "happy"})]
    base = RunConfig(backend="openai", model="m", cache_dir=None, backend_options={"base_url": "http://127.0.0.1:9/v1"})
    with pytest.raises(A.AblationError, match=r"variant visual=crop,privacy=blur-all: --privacy blur-all blurs"):
        A.ablate(items, {"visual": ["none", "crop"], "privacy": ["none", "blur-all"]}, base, tmp_path / "abl")
    assert not (tmp_path / "abl" / "results").exists()
    # a template whose cues the run's extractors do not provide: before, found when its variant
    # started, after every earlier variant had run
    faces_only = RunConfig(backend="openai", model="m", cache_dir=None, extractors=("faces",), backend_options=base.backend_options)
    with pytest.raises(A.AblationError, match=r"variant template=sovtp: template 'sovtp' needs the cue\(s\) landmarks"):
        A.ablate(items, {"template": ["direct", "sovtp"]}, faces_only, tmp_path / "abl2")
    assert not (tmp_path / "abl2" / "results").exists()


def test_a_mistyped_input_or_an_out_folder_is_one_sentence(media, tmp_path):
    """`sovtp prompt medai` made an error record and exited 0; `sovtp run --out folder/`
    was a traceback (IsADirectoryError)."""
    from typer.testing import CliRunner

    from sovtp.cli import app

    res = CliRunner().invoke(app, ["prompt", str(tmp_path / "medai"), "--out", str(tmp_path / "p")])
    assert res.exit_code == 2 and "No such file or folder: " in res.output and "medai; check the path." in " ".join(res.output.split())
    (tmp_path / "out").mkdir()
    args = [
        "run",
        str(media / "single_face.jpg"),
        "--backend",
        "openai",
        "--base-url",
        "http://127.0.0.1:9/v1",
        "--out",
        str(tmp_path / "out"),
    ]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 1 and "is a folder; give a results file, e.g. " in " ".join(res.output.split()), res.output


def test_per_face_is_accepted_by_templates_that_ask_through_their_schema_or_an_include(tmp_path):
    """A staged template asks for per-face labels through its JSON schema and
    answer_format, without the word per_face; another asks in an included file."""
    from sovtp.pipeline import Preparer, RunConfig

    (tmp_path / "staged.j2").write_text(
        "{#---\nanswer: stages\nstages: [why]\n---#}\nWhich emotion? Answer as {{ answer_format }}\n", encoding="utf-8"
    )
    (tmp_path / "ask.j2").write_text("{% if per_face %}Label every face too.{% endif %}", encoding="utf-8")
    (tmp_path / "outer.j2").write_text(
        'Which emotion does {{ target_ref }} show? {% include "ask.j2" %} {{ labels_text }}', encoding="utf-8"
    )
    for name in ("staged.j2", "outer.j2"):
        Preparer(RunConfig(template=str(tmp_path / name), per_face=True, cache_dir=None)).check()


def test_a_mistyped_structured_mode_is_refused_before_the_server_or_model():
    """Before, --structured jsn was reported after the server check (or, on transformers
    and vLLM, after loading the model), or as "Cannot reach the server"."""
    from sovtp.errors import UserError
    from sovtp.pipeline import Preparer, RunConfig

    with pytest.raises(UserError, match=r"--structured 'jsn' is not one of auto, json, choice, rank, off"):
        Preparer(RunConfig(structured="jsn", cache_dir=None)).check()


def test_a_preview_of_nothing_exits_1_and_a_missing_cue_says_no_extractor_ran(media, tmp_path):
    """`sovtp prompt` on inputs that all fail said "Previews for 0 of 1" and exited 0; with
    `--extractors faces,scene`, expressions were "missing" because "there is no other
    person to estimate" rather than because no extractor for them ran."""
    from typer.testing import CliRunner

    from sovtp.cli import app

    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video" * 50)
    res = CliRunner().invoke(app, ["prompt", str(broken), "--out", str(tmp_path / "p"), "-t", "direct", "--extractors", "faces"])
    assert res.exit_code == 1 and "Previews for 0 of 1" in res.output
    from sovtp.cuetext import template_variables

    one_face = fixed_cues().model_copy(update={"faces": fixed_cues().faces[1:2], "expressions": {}, "ran": {"faces": "1", "scene": "2"}})
    skipped = {d["cue"]: d["reason"] for d in template_variables(fixed_clip(), one_face, DFEW)["skipped"]}
    assert skipped["expressions"] == "no extractor for this cue was run"
    score = CliRunner().invoke(app, ["eval", "score", str(tmp_path)])
    assert score.exit_code == 1 and "is a folder; give a CSV or JSONL file of predictions" in " ".join(score.output.split())
