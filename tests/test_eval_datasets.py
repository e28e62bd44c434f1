"""Datasets from label folders, CSV/JSONL manifests and (when installed) Hugging Face folders."""

from __future__ import annotations

import json
import shutil
import sys

import pytest
from sovtp.eval.datasets import DatasetError, fingerprint, load_dataset

from sovtp.labels import DFEW, FERV39K, load_label_set


@pytest.fixture
def folder_dataset(media, tmp_path):
    root = tmp_path / "data"
    for sub, names in {
        "Happiness": ["0-f15-hao-ph.jpg"],
        "surprised": ["0-f1-su-ph.jpg", "single_face.mp4"],
        "anger": ["15-f13-anc-ph.jpg"],
    }.items():
        (root / sub).mkdir(parents=True)
        for n in names:
            shutil.copy(media / n, root / sub / n)
    return root


def test_label_folders_are_normalised(folder_dataset):
    items = load_dataset(folder_dataset, DFEW)
    got = sorted((it.path.name, it.meta["label"]) for it in items)
    assert got == [
        ("0-f1-su-ph.jpg", "surprise"),
        ("0-f15-hao-ph.jpg", "happy"),
        ("15-f13-anc-ph.jpg", "angry"),
        ("single_face.mp4", "surprise"),
    ]
    assert {it.meta["source_label"] for it in items} == {"Happiness", "surprised", "anger"}


def test_unknown_label_folder_names_the_folder(folder_dataset):
    (folder_dataset / "pain").mkdir()
    with pytest.raises(DatasetError, match="folder .*pain.*'pain' is not in the dfew label set"):
        load_dataset(folder_dataset, DFEW)


def test_csv_manifest_relative_paths_extra_columns_and_ids(media, tmp_path):
    d = tmp_path / "set"
    (d / "clips").mkdir(parents=True)
    shutil.copy(media / "single_face.mp4", d / "clips" / "a.mp4")
    shutil.copy(media / "45-m7-di-ph.jpg", d / "clips" / "b.jpg")
    (d / "m.csv").write_text("path,label,split,tier,annotator\nclips/a.mp4,Happy,test,easy,x1\nclips/b.jpg,6,train,hard,\n")
    items = load_dataset(d / "m.csv", DFEW)
    assert [it.path for it in items] == [d / "clips" / "a.mp4", d / "clips" / "b.jpg"]
    assert items[0].meta == {"label": "happy", "split": "test", "tier": "easy", "annotator": "x1", "source_label": "Happy"}
    assert items[1].meta["label"] == "disgust"  # DFEW official id 6
    assert [it.path.name for it in load_dataset(d / "m.csv", DFEW, split="test")] == ["a.mp4"]
    # FERV39k ids are 0-based: 3 is happy
    (d / "f.csv").write_text("file,emotion\nclips/a.mp4,3\n")
    assert load_dataset(d / "f.csv", FERV39K)[0].meta["label"] == "happy"
    assert fingerprint(items) == fingerprint(load_dataset(d / "m.csv", DFEW)) != fingerprint(items[:1])


def test_jsonl_manifest_and_bad_row(tmp_path):
    m = tmp_path / "m.jsonl"
    m.write_text(
        json.dumps({"path": "/abs/x.mp4", "label": "joy", "fold": 2}) + "\n" + json.dumps({"path": "y.mp4", "label": "pain"}) + "\n"
    )
    with pytest.raises(DatasetError, match=r"m.jsonl, row 2: ground-truth label 'pain'"):
        load_dataset(m, DFEW)
    m.write_text(json.dumps({"path": "/abs/x.mp4", "label": "joy", "fold": 2}) + "\n")
    (item,) = load_dataset(m, DFEW)
    assert str(item.path) == "/abs/x.mp4" and item.meta["fold"] == 2 and item.meta["label"] == "happy"


def test_missing_columns_and_custom_sets(tmp_path):
    m = tmp_path / "m.csv"
    m.write_text("video_file,lbl\nx.mp4,happy\n")
    with pytest.raises(DatasetError, match="no path column"):
        load_dataset(m, DFEW)
    items = load_dataset(m, load_label_set("happy,not_happy"), path_col="video_file", label_col="lbl")
    assert items[0].meta["label"] == "happy"
    with pytest.raises(DatasetError, match="does not exist"):
        load_dataset(tmp_path / "nope", DFEW)


def test_huggingface_missing_is_one_sentence(tmp_path, monkeypatch):
    """Without the hf extra, a hub id fails with the install command, not an ImportError
    trace. (A None entry in sys.modules is how Python itself marks a module as absent.)"""
    monkeypatch.setitem(sys.modules, "datasets", None)
    with pytest.raises(DatasetError, match=r"pip install 'sovtp\[hf\]'"):
        load_dataset("hf:someone/some-set", DFEW)


def test_huggingface_imagefolder(folder_dataset, tmp_path):
    pytest.importorskip("datasets")
    hf = tmp_path / "hf"
    for sub in ("happy", "angry"):
        shutil.copytree(folder_dataset / {"happy": "Happiness", "angry": "anger"}[sub], hf / "train" / sub)
    items = load_dataset(f"hf:{hf}", DFEW, cache_dir=tmp_path / "c")
    assert sorted(it.meta["label"] for it in items) == ["angry", "happy"]
    assert all(it.path.is_file() for it in items)


def test_a_path_listed_twice_is_refused_naming_both_rows(tmp_path):
    """Before, the table kept the later row's label for both (a clip listed as happy and
    as sad scored as sad twice, one of them out of the table but in `eval score`)."""
    m = tmp_path / "labels.csv"
    m.write_text("path,label\nclip.mp4,happy\nother.mp4,sad\nclip.mp4,sad\n")
    with pytest.raises(DatasetError, match=r"labels\.csv, row 4 lists clip\.mp4 again \(first in row 2\)"):
        load_dataset(m, DFEW)


def test_split_picks_rows_before_their_labels_are_checked_and_needs_a_split_column(folder_dataset, tmp_path):
    m = tmp_path / "labels.csv"
    m.write_text("path,label,split\na.mp4,contempt,train\nb.mp4,happy,test\na.mp4,contempt,val\n")
    assert [it.path.name for it in load_dataset(m, DFEW, split="test")] == ["b.mp4"]  # the train row's class is not DFEW's
    with pytest.raises(DatasetError, match="row 2: ground-truth label 'contempt'"):
        load_dataset(m, DFEW, split="train")
    bare = tmp_path / "bare.csv"
    bare.write_text("path,label\nb.mp4,happy\n")
    with pytest.raises(DatasetError, match="has no 'split' column for --split 'test'"):
        load_dataset(bare, DFEW, split="test")
    with pytest.raises(DatasetError, match="--split picks manifest rows"):  # before: ignored, every item kept
        load_dataset(folder_dataset, DFEW, split="test")


def test_a_pilot_takes_items_from_every_label_in_turn():
    """`--limit 6` on a label-subfolder dataset (sorted: every angry clip first) gave a
    pilot of angry clips only."""
    from pathlib import Path

    from sovtp.eval.datasets import pilot

    from sovtp.inputs import InputItem

    items = [InputItem(Path(f"{lab}/{i}.mp4"), {"label": lab}) for lab in ("angry", "happy", "sad") for i in range(5)]
    picked = pilot(items, 7)
    assert [str(it.path) for it in picked] == [
        "angry/0.mp4",
        "angry/1.mp4",
        "angry/2.mp4",
        "happy/0.mp4",
        "happy/1.mp4",
        "sad/0.mp4",
        "sad/1.mp4",
    ]
    assert pilot(items, 100) == items
