"""The results file never loses a finished item and never holds one twice."""

from __future__ import annotations

from pathlib import Path

from sovtp.results import ResultsWriter, load_results
from sovtp.types import Result


def _r(i: int, status="ok", kind=None) -> Result:
    meta = {"error_kind": kind} if kind else {}
    return Result(path=f"v{i}.mp4", status=status, label="happy" if status == "ok" else None, run_key=f"k{i}", meta=meta)


def test_torn_last_line_is_cut_and_finished_items_are_known(tmp_path: Path):
    out = tmp_path / "r.jsonl"
    w = ResultsWriter(out)
    w.append(_r(1))
    w.append(_r(2))
    w.close()
    with open(out, "a") as fh:  # a crash in the middle of a write
        fh.write('{"path": "v3.mp4", "sta')
    w = ResultsWriter(out)
    assert w.is_done("k1", "v1.mp4") and w.is_done("k2", "v2.mp4") and not w.is_done("k3", "v3.mp4")
    w.append(_r(3))
    w.close()
    assert [r.path for r in load_results(out)] == ["v1.mp4", "v2.mp4", "v3.mp4"]
    assert out.read_text().count("\n") == 3


def test_retryable_errors_are_retried_and_replaced(tmp_path: Path):
    out = tmp_path / "r.jsonl"
    w = ResultsWriter(out)
    w.append(_r(1, "error", "backend"))
    w.append(_r(2, "error", "input"))
    w.close()
    w = ResultsWriter(out)
    assert not w.is_done("k1", "v1.mp4")  # a backend error is tried again
    assert w.is_done("k2", "v2.mp4")  # a broken input file stays broken
    w.append(_r(1))
    w.close()
    lines = out.read_text().splitlines()
    assert len(lines) == 2  # compacted: each item exactly once
    assert {r.run_key: r.status for r in load_results(out)} == {"k1": "ok", "k2": "error"}


def test_files_written_through_a_rename_get_the_mode_a_plain_open_gives(tmp_path: Path):
    """A results file compacted on resume, the manifests and plan/summary JSON, and cache
    entries are written to a temp file and renamed. They must not turn 0600 (mkstemp's
    mode) while the run's other files follow the umask: a colleague who could read the
    results file yesterday could not after a resume."""
    import os
    import stat

    from sovtp.cache import JsonCache
    from sovtp.results import write_json_atomic

    old = os.umask(0o027)
    try:
        plain = tmp_path / "plain.txt"
        plain.write_text("x")
        out = tmp_path / "r.jsonl"
        w = ResultsWriter(out)
        w.append(_r(1, "error", "backend"))
        w.close()
        w = ResultsWriter(out)
        w.append(_r(1))
        w.close()  # retried: the file is rewritten through a temp file
        write_json_atomic(tmp_path / "summary.json", {"war": 0.5})
        cache = JsonCache(tmp_path / "cache", "responses")
        cache.put("k", {"text": "happy"})
        entry = next(p for p in (tmp_path / "cache").rglob("*.json"))
        modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in (plain, out, tmp_path / "summary.json", entry)}
    finally:
        os.umask(old)
    assert set(modes.values()) == {0o640}, {k: oct(v) for k, v in modes.items()}


def test_inputs_with_the_same_bytes_each_keep_their_record(media: Path, tmp_path: Path):
    """A clip listed twice (or copied under another label) has one run key. Each copy
    still gets its own record, both survive loading (before, the later replaced the
    earlier, and one copy dropped out of every score), a rerun skips both, and a new copy
    is answered from the response cache without a request."""
    import shutil

    import sovtp
    from tests.helpers.servers import FaultServer

    for name in ("a.jpg", "b.jpg", "c.jpg"):
        shutil.copy(media / "single_face.jpg", tmp_path / name)
    out = tmp_path / "r.jsonl"
    settings = dict(backend="openai", workers=1, cache_dir=tmp_path / "cache", template="direct", extractors=("faces",))
    with FaultServer() as server:
        first = sovtp.run([tmp_path / "a.jpg", tmp_path / "b.jpg"], out=out, base_url=server.base_url, **settings)
        assert (first.ok, first.skipped) == (2, 0)
        assert sorted(Path(r.path).name for r in sovtp.load_results(out)) == ["a.jpg", "b.jpg"]
        assert len({r.run_key for r in sovtp.load_results(out)}) == 1

        sent = server.count
        again = sovtp.run([tmp_path / "a.jpg", tmp_path / "b.jpg", tmp_path / "c.jpg"], out=out, base_url=server.base_url, **settings)
        assert (again.skipped, again.ok) == (2, 1) and server.count == sent  # c.jpg: a record of its own, from the cache
    records = sovtp.load_results(out)
    assert sorted(Path(r.path).name for r in records) == ["a.jpg", "b.jpg", "c.jpg"]
    assert [r.cached for r in records if r.path.endswith("c.jpg")] == [True]


def test_a_missing_input_reported_again_or_put_in_place_keeps_one_record(tmp_path: Path):
    """A listed file that does not exist gets an error record (no content hash) each run
    it is still missing; once it exists it gets its answer. The file holds one record
    for it either way: before, every rerun appended another error, and `sovtp eval score`
    counted the item once per run."""
    out = tmp_path / "r.jsonl"
    missing = Result(path="gone.mp4", status="error", error="the file does not exist", run_key="by-path", meta={"error_kind": "input"})
    for _ in range(3):
        w = ResultsWriter(out)
        w.append(missing)
        w.close()
    assert out.read_text().count("\n") == 1
    w = ResultsWriter(out)  # the file was put in place: hashed, answered
    w.append(Result(path="gone.mp4", status="ok", label="sad", content_hash="h", run_key="by-content"))
    w.close()
    assert [(r.path, r.status) for r in load_results(out)] == [("gone.mp4", "ok")]
    assert out.read_text().count("\n") == 1


def test_a_moved_inputs_record_follows_it(tmp_path: Path):
    """A dataset moved to another disk is not redone on rerun (resume follows the
    content); its records take the new paths, so an ablation table or `eval score` over
    the moved dataset finds them (before, every variant showed n = 0)."""
    old, new = tmp_path / "old", tmp_path / "new"
    new.mkdir()
    for name in ("a.jpg", "b.jpg"):
        (new / name).write_bytes(b"same bytes")  # two copies moved together
    out = tmp_path / "r.jsonl"
    w = ResultsWriter(out)
    w.append(Result(path=str(old / "a.jpg"), status="ok", label="happy", content_hash="h", run_key="k", meta={"label": "happy"}))
    w.append(Result(path=str(old / "b.jpg"), status="ok", label="happy", content_hash="h", run_key="k", meta={"label": "sad"}))
    w.append(Result(path=str(new / "a.jpg"), status="ok", label="sad", content_hash="h2", run_key="other"))
    w.close()
    w = ResultsWriter(out)
    assert w.is_done("k", str(new / "b.jpg")) and w.is_done("k", str(new / "a.jpg"))
    w.follow("k", str(new / "b.jpg"))
    w.follow("k", str(new / "a.jpg"))
    w.close()
    got = sorted((Path(r.path).relative_to(tmp_path).as_posix(), r.run_key, r.meta.get("label") or "") for r in load_results(out))
    assert got == [("new/a.jpg", "k", "happy"), ("new/a.jpg", "other", ""), ("new/b.jpg", "k", "sad")]


def test_a_second_run_on_the_same_file_is_refused_while_the_first_holds_it(tmp_path: Path):
    """Two runs appending to one file (two shards, a command started twice) lost records:
    the rewrite at the end of one run (after retries) replaced the file the other still
    appended to. The second run now stops with one sentence; the lock goes with the
    first run's close (or its process)."""
    import pytest

    from sovtp.results import ResultsInUse

    out = tmp_path / "r.jsonl"
    first = ResultsWriter(out)
    with pytest.raises(ResultsInUse, match=r"r\.jsonl is being written by another sovtp run \(pid \d+\); wait for it"):
        ResultsWriter(out)
    first.append(_r(1))
    first.close()
    second = ResultsWriter(out)  # free again
    assert second.is_done("k1", "v1.mp4")
    second.close()


def test_records_left_twice_by_a_killed_run_and_a_line_of_bad_bytes_do_not_stop_a_resume(tmp_path: Path):
    """A run that retried an error and was killed before its rewrite leaves the old and
    the new record; the next run rewrites the file with one. A line of invalid UTF-8
    (a disk error) stopped every resume with a bare codec error; it is skipped."""
    out = tmp_path / "r.jsonl"
    out.write_bytes((_r(1, "error", "backend").model_dump_json() + "\n" + _r(1).model_dump_json() + "\n").encode() + b"\xff\xfe not json\n")
    w = ResultsWriter(out)
    assert w.is_done("k1", "v1.mp4")
    w.close()
    assert [r.status for r in load_results(out)] == ["ok"] and out.read_text().count("\n") == 1


def test_the_same_file_named_another_way_is_the_same_input(tmp_path: Path, monkeypatch):
    """`sovtp run data` then `sovtp run /abs/path/to/data` from the same folder redid
    every item and left two records each (eval score counted n = 6 for 3 clips)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "a.jpg").write_bytes(b"x")
    out = tmp_path / "r.jsonl"
    w = ResultsWriter(out)
    w.append(Result(path="data/a.jpg", status="ok", label="happy", content_hash="h", run_key="k"))
    w.close()
    absolute = str(tmp_path / "data" / "a.jpg")
    w = ResultsWriter(out)
    assert w.is_done("k", absolute)
    w.follow("k", absolute)
    w.close()
    # the spelling in use gets the answer (an ablation table looks it up by that name); the
    # old one stays, as a link listed beside its file is an input of its own
    assert sorted(r.path for r in load_results(out)) == sorted(["data/a.jpg", absolute])
    w = ResultsWriter(out)
    assert w.is_done("k", absolute) and w.is_done("k", "data/a.jpg")
    w.close()
    assert out.read_text().count("\n") == 2  # stable: nothing is moved back and forth


def test_copies_moved_together_keep_their_own_answers_and_a_copys_error_gives_way(tmp_path: Path):
    """Copies a (answered) and b (a retryable error) of one file; a is deleted. b is
    skipped as answered, and its record is a's answer, not its own old error (which the
    rewrite kept before). A missing input put back is scored by its answer again, not by
    the error of the run it was missing for."""
    (tmp_path / "b.jpg").write_bytes(b"x")
    out = tmp_path / "r.jsonl"
    w = ResultsWriter(out)
    w.append(Result(path=str(tmp_path / "a.jpg"), status="ok", label="happy", content_hash="h", run_key="k"))
    w.append(
        Result(path=str(tmp_path / "b.jpg"), status="error", error="500", content_hash="h", run_key="k", meta={"error_kind": "backend"})
    )
    w.close()
    w = ResultsWriter(out)
    assert w.is_done("k", str(tmp_path / "b.jpg"))
    w.follow("k", str(tmp_path / "b.jpg"))
    w.close()
    assert [(Path(r.path).name, r.status) for r in load_results(out)] == [("b.jpg", "ok")]

    # b goes missing for one run (an error without a hash), then is back: its answer counts
    w = ResultsWriter(out)
    w.append(Result(path=str(tmp_path / "b.jpg"), status="error", error="missing", run_key="by-path", meta={"error_kind": "input"}))
    w.close()
    assert [r.status for r in load_results(out)] == ["ok"]
    w = ResultsWriter(out)
    assert w.is_done("k", str(tmp_path / "b.jpg"))
    w.follow("k", str(tmp_path / "b.jpg"))
    w.close()
    assert out.read_text().count("\n") == 1


def test_a_rerun_with_other_settings_into_the_same_file_says_so(media: Path, tmp_path: Path):
    """Records of both settings share the file (resume keys on the settings); before,
    nothing said so, and scores of the file mixed the two runs unannounced."""
    from typer.testing import CliRunner

    from sovtp.cli import app
    from tests.helpers.servers import FaultServer

    out = tmp_path / "results.jsonl"
    with FaultServer() as server:
        base = ["run", str(media / "single_face.jpg"), "--backend", "openai", "--base-url", server.base_url, "--out", str(out)]
        base += ["--template", "direct", "--extractors", "faces", "--workers", "1", "--cache-dir", str(tmp_path / "c")]
        first = CliRunner().invoke(app, [*base, "--labels", "dfew"])
        same = CliRunner().invoke(app, [*base, "--labels", "dfew"])
        other = CliRunner().invoke(app, [*base, "--labels", "ferv39k", "--temperature", "0.5"])
    assert first.exit_code == same.exit_code == other.exit_code == 0, other.output
    assert "holds records made with other settings" not in first.output + same.output
    said = " ".join(other.output.split())
    assert "holds records made with other settings (" in said and "temperature: 0.0 -> 0.5" in said and "labels: " in said
