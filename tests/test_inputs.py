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
