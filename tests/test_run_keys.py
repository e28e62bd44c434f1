"""Run keys decide what a rerun skips, so they must change with everything that changes
an answer and with nothing else (lmms-eval keys its response cache the same way)."""

from __future__ import annotations

import os
import shutil
from dataclasses import replace
from pathlib import Path

from sovtp.pipeline import RunConfig, run_key_for

PROMPTS = Path(__file__).resolve().parents[1] / "prompts"


def test_editing_a_user_template_changes_the_run_key(tmp_path: Path) -> None:
    mine = tmp_path / "mine.j2"
    shutil.copy(PROMPTS / "direct.j2", mine)
    config = RunConfig(template=str(mine), cache_dir=None)
    before = run_key_for("clip-hash", config)
    assert run_key_for("clip-hash", config) == before  # stable while the file is unchanged

    mine.write_text(mine.read_text(encoding="utf-8") + "\nAnswer carefully.\n", encoding="utf-8")
    os.utime(mine, ns=(1, 1))  # a new digest even on filesystems with coarse timestamps
    assert run_key_for("clip-hash", config) != before


def test_editing_a_file_the_template_includes_changes_the_run_key(tmp_path: Path) -> None:
    """The included question renders into the prompt; before, a rerun after editing it
    skipped every item ("already done") and kept the answers to the old question."""
    (tmp_path / "parts").mkdir()
    main = tmp_path / "main.j2"
    main.write_text('{% include "parts/question.txt" %} Answer with one word from: {{ labels_text }}.\n', encoding="utf-8")
    question = tmp_path / "parts" / "question.txt"
    question.write_text("Which emotion does {{ target_ref }} show?", encoding="utf-8")
    (tmp_path / "unrelated.j2").write_text("not included", encoding="utf-8")
    config = RunConfig(template=str(main), cache_dir=None)
    before = run_key_for("clip-hash", config)
    (tmp_path / "unrelated.j2").write_text("edited, still not included", encoding="utf-8")
    assert run_key_for("clip-hash", config) == before
    question.write_text("Is {{ target_ref }} in pain?", encoding="utf-8")
    os.utime(question, ns=(1, 1))
    assert run_key_for("clip-hash", config) != before


def test_answer_changing_backend_options_are_in_the_key_and_transport_options_are_not() -> None:
    base = RunConfig(backend="openai", model="m", cache_dir=None, backend_options={"base_url": "http://127.0.0.1:1/v1", "timeout": 30.0})
    key = run_key_for("clip-hash", base)
    moved = replace(base, backend_options={"base_url": "http://127.0.0.1:2/v1", "timeout": 5.0, "max_retries": 9, "api_key": "sk-x"})
    assert run_key_for("clip-hash", moved) == key
    detailed = replace(base, backend_options={**base.backend_options, "detail": "high"})
    assert run_key_for("clip-hash", detailed) != key


def test_builtin_template_key_follows_the_shipped_text() -> None:
    from sovtp.compose import load_template, template_digest

    assert template_digest("sovtp") == load_template("sovtp").sha256
    assert template_digest("direct") != template_digest("sovtp")


def test_a_frame_rate_is_in_the_key_only_when_given() -> None:
    """It changes a frame folder's captions and prompt times, so it re-answers; unset, the
    key is what it was before frame folders existed (earlier results files still resume),
    and discovering frame folders changes no answer."""
    base = RunConfig(backend="openai", model="m", cache_dir=None)
    key = run_key_for("clip-hash", base)
    assert "frame_rate" not in base.answer_key()
    assert run_key_for("clip-hash", replace(base, frame_folders=True)) == key
    assert run_key_for("clip-hash", replace(base, frame_rate=30.0)) != key
    assert run_key_for("clip-hash", replace(base, frame_rate=30.0)) != run_key_for("clip-hash", replace(base, frame_rate=25.0))


def test_a_photos_cues_are_shared_by_every_frames_setting(media: Path, tmp_path: Path) -> None:
    """A still photo is one frame whatever --frames says; an ablation over frames=4,8
    recomputed every photo's cues per value (0 cache hits)."""
    from sovtp.pipeline import Preparer
    from sovtp.types import file_sha256

    photo = media / "single_face.jpg"
    runs = []
    for frames in (4, 8):
        preparer = Preparer(RunConfig(num_frames=frames, extractors=("faces",), cache_dir=tmp_path / "cache", workers=1))
        preparer.clip_and_cues(photo, file_sha256(photo), {})
        runs.append(dict(preparer.extractor_runs))
    assert runs == [{"faces": 1}, {}]  # the second setting ran nothing: its cues came from the cache


def test_weights_saved_again_into_a_checkpoint_folder_change_the_run_key(tmp_path: Path) -> None:
    """A model fine-tuned again into the same folder: before, resume skipped every item
    and kept the old model's answers (the key held the folder's path only)."""
    folder = tmp_path / "ckpt"
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "qwen2_5_vl"}', encoding="utf-8")
    weights = folder / "model.safetensors"
    weights.write_bytes(b"0" * 100)
    config = RunConfig(backend="transformers", model=str(folder), cache_dir=None)
    before = run_key_for("clip-hash", config)
    assert run_key_for("clip-hash", config) == before
    weights.write_bytes(b"1" * 120)
    assert run_key_for("clip-hash", config) != before
    hub = RunConfig(backend="transformers", model="Qwen/Qwen2.5-VL-3B-Instruct", cache_dir=None)
    assert "model_files" not in hub.answer_key()  # hub ids key as before
