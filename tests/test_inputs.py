"""Input discovery: recursion, symlink loops, odd names, stable order."""

from __future__ import annotations

import os
from pathlib import Path

from sovtp.inputs import InputItem, discover, safe_name


def test_walk_survives_symlink_loop_and_skips_non_media(tmp_path: Path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.mp4").write_bytes(b"1")
    (tmp_path / "a" / "notes.txt").write_text("not media")
    (tmp_path / "a" / "loop").symlink_to(tmp_path, target_is_directory=True)
    (tmp_path / "b.JPG").write_bytes(b"2")
    items = discover([tmp_path])
    names = [i.path.name for i in items]
    assert sorted(names) == ["b.JPG", "x.mp4"]


def test_non_utf8_and_spaced_names_get_safe_output_names(tmp_path: Path):
    raw = os.fsencode(str(tmp_path)) + b"/caf\xe9 clip ..mp4"
    with open(raw, "wb") as fh:
        fh.write(b"x")
    items = discover([tmp_path])
    assert len(items) == 1
    item = items[0]
    assert "\\xe9" in item.display  # printable, valid UTF-8
    name = safe_name(item, tmp_path)
    assert "/" not in name and ".." not in name and name.isascii()


def test_safe_name_never_escapes(tmp_path: Path):
    item = InputItem(Path("/data/../../etc/passwd.mp4"))
    name = safe_name(item)
    assert "/" not in name and not name.startswith(".")


def test_names_with_brackets_are_printed_as_text_not_markup(media: Path, tmp_path: Path):
    """A path holding "[/]" ended `sovtp prompt` in a MarkupError traceback after the
    previews were written; "[bold]" vanished from the name shown; "clip [remix].mp4" was
    reported missing as "clip .mp4"."""
    import shutil

    from typer.testing import CliRunner

    from sovtp.cli import app

    folder = tmp_path / "in"
    (folder / "a[").mkdir(parents=True)  # so that the path reads ".../a[/]b.jpg"
    for name in ("a[/]b.jpg", "c[bold]d.jpg"):
        shutil.copy(media / "single_face.jpg", folder / name)
    res = CliRunner().invoke(app, ["prompt", str(folder), "-t", "direct", "--extractors", "faces", "--out", str(tmp_path / "p")])
    said = " ".join(res.output.split())
    assert res.exit_code == 0 and "a[/]b.jpg" in said and "c[bold]d.jpg" in said, res.output
    res = CliRunner().invoke(app, ["prompt", str(tmp_path / "clip [remix].mp4")])
    assert res.exit_code == 2 and "clip [remix].mp4; check the path." in " ".join(res.output.split())
