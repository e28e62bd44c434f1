"""What a run prints while it goes: the reason of every failed item and a line for
every answer outside the label set, above the progress bar, on stderr."""

from __future__ import annotations

from sovtp.progress import RunBar, item_message
from sovtp.types import Result


def _result(status: str, **fields) -> Result:
    return Result(path=f"clips/{status}.mp4", status=status, **fields)


def test_a_run_says_each_failure_and_invalid_answer_as_it_happens(capsys) -> None:
    bar = RunBar(3)
    bar.tick(_result("ok", label="happy"))
    bar.tick(_result("error", error="error.mp4: not a valid video (invalid data); check that it is a complete file [sic]"))
    bar.tick(_result("invalid", raw_answer="I think   the person\nfeels " + "very " * 40 + "content"))
    bar.close()
    captured = capsys.readouterr()
    assert captured.out == ""  # stdout stays free for scripts
    err = captured.err
    assert "error error.mp4: not a valid video (invalid data); check that it is a complete file [sic]" in err
    assert "invalid invalid.mp4: the answer names no label of the set (kept in the record): 'I think the person feels very" in err


def test_well_answered_items_print_no_line_of_their_own() -> None:
    assert item_message(_result("ok", label="sad")) is None
    long = item_message(_result("invalid", raw_answer="x" * 500))
    assert long is not None and long.endswith("…'") and len(long) < 250


def test_a_run_that_cannot_start_leaves_no_empty_bar_above_its_error(media, tmp_path, capsys) -> None:
    """A dead server is one sentence; the bar that never moved ("0/1") is not left above
    it. A run that did move keeps its last state."""
    import subprocess
    import sys
    from pathlib import Path

    from tests.helpers.hostile import dead_port, sovtp_env

    sovtp = str(Path(sys.executable).parent / "sovtp")
    url = f"http://127.0.0.1:{dead_port()}/v1"
    proc = subprocess.run(
        [sovtp, "run", str(media / "single_face.jpg"), "--backend", "openai", "--base-url", url, "--out", str(tmp_path / "r.jsonl")],
        capture_output=True, text=True, env=sovtp_env(tmp_path), cwd=tmp_path, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 1 and "Cannot reach the OpenAI-compatible server" in proc.stderr
    assert "0/1" not in proc.stderr, proc.stderr

    capsys.readouterr()
    moved = RunBar(2)
    moved.tick(_result("ok", label="happy"))
    moved.close(failed=True)  # e.g. Ctrl-C after the first item
    assert "1/2" in capsys.readouterr().err
