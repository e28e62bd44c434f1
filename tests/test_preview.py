"""Previews: PNGs + prompt text per item, and a self-contained HTML page that a real
headless Chromium opens and screenshots (skipped where Debian's chromium is absent)."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sovtp.compose import compose_prompt, load_template
from sovtp.labels import DFEW, LabelSet
from sovtp.preview_page import png_bytes, preview_html, prompt_as_text, write_preview
from sovtp.render import render_views
from tests.test_render import real_scene


@pytest.fixture(scope="module")
def real_prompt(media):
    clip, cues = real_scene(str(media / "multi_face.jpg"))
    images = render_views(clip, cues, "sovtp")
    return compose_prompt(load_template("sovtp"), clip, cues, DFEW, images), cues


def test_write_preview_writes_images_text_and_schema(tmp_path, real_prompt):
    prompt, cues = real_prompt
    files = write_preview(tmp_path, "multi_face-abc", prompt, cues)
    names = [p.name for p in files]
    assert names == ["image_01.png", "prompt.txt", "answer_schema.json"]
    assert all(p.parent == tmp_path / "multi_face-abc" for p in files)
    png = np.asarray(Image.open(files[0]).convert("RGB"))
    assert np.array_equal(png, prompt.images[0].image)
    text = files[1].read_text()
    assert text.startswith("[image 1: the photo · sovtp]") and "Stage 4, facial action units" in text
    assert text == prompt_as_text(prompt)
    again = write_preview(tmp_path / "again", "multi_face-abc", prompt, cues)
    assert again[0].read_bytes() == files[0].read_bytes(), "deterministic PNG bytes"


def test_html_is_self_contained_and_escaped(tmp_path, real_prompt, media):
    prompt, cues = real_prompt
    [*_, page] = write_preview(tmp_path, "item", prompt, cues, html=True)
    assert page.name == "preview.html"
    doc = page.read_text()
    assert doc.count("data:image/png;base64,") == 1
    assert "http://" not in doc and "https://" not in doc and "<script" not in doc
    assert "<th>AUs</th>" in doc and "AU12 0.70, AU6 0.50, AU25 0.30 (geometric)" in doc
    hostile = LabelSet("x", ("<script>alert(1)</script>", "calm"))
    clip = real_scene(str(media / "multi_face.jpg"))[0]
    p = compose_prompt(load_template("direct"), clip, cues, hostile, list(prompt.images))
    doc = preview_html("a<b>&c", p, cues)
    assert "<script>" not in doc and "&lt;script&gt;" in doc and "a&lt;b&gt;&amp;c" in doc


def test_names_that_could_escape_the_folder_are_refused(tmp_path, real_prompt):
    prompt, cues = real_prompt
    for bad in ("../x", "a/b", "..", ""):
        with pytest.raises(ValueError, match="not a plain file name"):
            write_preview(tmp_path, bad, prompt, cues)


def test_png_bytes_are_deterministic():
    img = np.arange(64 * 48 * 3, dtype=np.uint8).reshape(48, 64, 3)
    assert png_bytes(img) == png_bytes(img.copy())


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (apt-get install -y chromium)")
def test_html_preview_opens_in_headless_chromium(tmp_path, real_prompt):
    prompt, cues = real_prompt
    [*_, page] = write_preview(tmp_path, "multi_face", prompt, cues, html=True)
    shot = tmp_path / "screenshot.png"
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run(
            [
                CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                f"--user-data-dir={profile}", f"--screenshot={shot}", "--window-size=1280,2000", page.as_uri(),
            ],
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip
    img = np.asarray(Image.open(shot).convert("RGB"))
    assert img.shape[:2] == (2000, 1280)
    # the annotated frame is drawn: its ID-tag colours appear in the screenshot
    from sovtp.render.draw import face_color

    for fid in (f.id for f in cues.faces):
        assert (img == face_color(fid)).all(axis=2).sum() > 50, f"face {fid}'s marks are not on screen"
    # and the page is not blank below the image: text rows of dark pixels
    lower = img[1000:, :, :]
    assert (lower.max(axis=2) < 80).sum() > 1000
    keep = Path(tempfile.gettempdir()) / "sovtp-preview-screenshot.png"
    shutil.copy(shot, keep)  # for a person to look at after the run


def test_previewing_again_into_the_same_folder_leaves_no_stale_files(tmp_path, real_prompt):
    """A second `sovtp prompt` with other settings (fewer images, no JSON answer, no
    --html) into the same --out: the folder then shows the second prompt only."""
    from dataclasses import replace

    prompt, cues = real_prompt
    four = replace(prompt, parts=prompt.parts + tuple(p for p in prompt.parts if p in prompt.images) * 3)
    first = write_preview(tmp_path, "item", four, cues, html=True)
    assert {p.name for p in first} >= {"image_04.png", "answer_schema.json", "preview.html"}
    (tmp_path / "item" / "notes.md").write_text("mine")  # not ours: kept
    plain = replace(prompt, answer_schema=None)
    second = write_preview(tmp_path, "item", plain, cues)
    assert sorted(p.name for p in (tmp_path / "item").iterdir()) == sorted([*(p.name for p in second), "notes.md"])


def test_no_submodule_shadows_a_public_api_name():
    """``sovtp.preview(...)`` is the API; a submodule of the same name would replace it
    on the package the moment anything imported that module (the first preview did), so
    the second ``sovtp.preview(...)`` of a script failed with "'module' object is not
    callable"."""
    import importlib.util

    import sovtp

    clashes = [name for name in sovtp.__all__ if name != "__version__" and importlib.util.find_spec(f"sovtp.{name}") is not None]
    assert clashes == []
