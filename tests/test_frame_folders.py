"""Frame folders (FERV39k, DFEW/MAFW face crops): a folder of images is one clip.

The reference is the video itself: every frame of ``single_face.mp4`` dumped as a PNG
(lossless, through the decoder's own RGB conversion) under names that are *not* zero-
padded (``1.png`` ... ``72.png``), as many frame dumps are. Read as a folder, it must give
the frames the video gives, in the video's order, at the video's times.
"""

from __future__ import annotations

import csv
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sovtp.inputs import discover
from sovtp.video import content_sha256, read_clip


def dump_frames(video: Path, folder: Path, fmt: str = "{}.png") -> Path:
    """Every frame of ``video`` as an image file named ``fmt.format(n)`` (n from 1)."""
    import av

    from sovtp.video import _to_rgb

    folder.mkdir(parents=True)
    with av.open(str(video)) as container:
        stream = container.streams.video[0]
        for n, frame in enumerate(container.decode(stream), 1):
            Image.fromarray(_to_rgb(frame, frame.width, frame.height)).save(folder / fmt.format(n))
    return folder


@pytest.fixture(scope="module")
def frames_dir(media: Path, tmp_path_factory) -> Path:
    return dump_frames(media / "single_face.mp4", tmp_path_factory.mktemp("ff") / "clip_0001")


def test_a_frame_folder_reads_as_the_video_it_was_dumped_from(media: Path, frames_dir: Path) -> None:
    video = read_clip(media / "single_face.mp4", 8, max_side=None)
    folder = read_clip(frames_dir, 8, max_side=None, frame_rate=video.fps)
    assert [f.index for f in folder.frames] == [f.index for f in video.frames]
    for a, b in zip(video.frames, folder.frames, strict=True):
        assert np.array_equal(a.image, b.image), f"frame {a.index} differs: the folder's frames are out of order"
        assert b.timestamp == pytest.approx(a.timestamp, abs=1e-6)
    assert (folder.frame_count, folder.size, folder.is_image) == (video.frame_count, video.size, False)
    assert folder.duration == pytest.approx(video.duration)


def test_without_a_frame_rate_no_time_is_invented(frames_dir: Path, tmp_path: Path) -> None:
    import sovtp

    clip = read_clip(frames_dir, 4)
    assert clip.fps is None and clip.duration is None
    assert [f.timestamp for f in clip.frames] == [None] * 4

    out = tmp_path / "preview"
    written = sovtp.preview([frames_dir], out_dir=out, num_frames=4, cache_dir=None, frame_folders=True)
    ((item, files),) = written
    assert not isinstance(files, str), files
    text = (files[0].parent / "prompt.txt").read_text()
    times = ", ".join(f"frame {f.index + 1} of 72" for f in clip.frames)
    assert f"at {times}." in text  # the template's "sampled ... at {times}" names frames, not seconds
    assert "[image 1: frame 1/4 (source frame 10 of 72) · sovtp]" in text  # the same 1-based count as the text


def test_the_content_hash_follows_the_frames_not_the_folder(frames_dir: Path, tmp_path: Path) -> None:
    copy = shutil.copytree(frames_dir, tmp_path / "renamed_folder")
    digest = content_sha256(frames_dir)
    assert content_sha256(copy) == digest  # another folder name, same frames: same input
    (copy / "30.png").rename(copy / "30b.png")
    assert content_sha256(copy) != digest  # a renamed frame can change the order
    (copy / "30b.png").rename(copy / "30.png")
    pixels = np.asarray(Image.open(copy / "30.png")).copy()
    pixels[0, 0] ^= 1
    Image.fromarray(pixels).save(copy / "30.png")
    assert content_sha256(copy) != digest  # one edited pixel: a new input for the caches


def test_frame_folders_are_found_only_when_asked(frames_dir: Path, media: Path, tmp_path: Path) -> None:
    root = tmp_path / "data"
    shutil.copytree(frames_dir, root / "happy" / "clip_0001")
    shutil.copy(media / "single_face.mp4", root / "happy" / "clip_0002.mp4")
    photos = root / "happy" / "photos"
    photos.mkdir()
    shutil.copy(media / "multi_face.jpg", photos / "a.jpg")
    (photos / ".thumb.jpg").write_bytes(b"hidden")

    default = [it.path.relative_to(root).as_posix() for it in discover([root])]
    assert len(default) == 72 + 2  # every image an item, as before; the hidden file is skipped
    folders = [it.path.relative_to(root).as_posix() for it in discover([root], frame_folders=True)]
    assert folders == ["happy/clip_0002.mp4", "happy/clip_0001", "happy/photos"]  # a folder's files, then its subfolders
    assert [it.path for it in discover([root / "happy" / "clip_0001"], frame_folders=True)] == [root / "happy" / "clip_0001"]

    from sovtp.eval.datasets import load_dataset

    from sovtp.labels import load_label_set

    items = load_dataset(root, load_label_set("dfew"), frame_folders=True)  # sovtp ablate data/ --frame-folders
    assert [(it.path.name, it.meta["label"]) for it in items] == [("clip_0002.mp4", "happy"), ("clip_0001", "happy"), ("photos", "happy")]


def test_a_run_over_a_frame_folder_manifest_records_every_row(frames_dir: Path, tmp_path: Path) -> None:
    """A DFEW-style manifest (numeric labels) naming frame folders: a good folder, one
    with a broken sampled frame and an empty one. Each gets its record; the bad ones a
    sentence naming the problem; the run goes on."""
    from sovtp.eval.datasets import load_dataset

    import sovtp
    from sovtp.labels import load_label_set
    from tests.helpers.servers import FaultServer

    data = tmp_path / "dfew"
    shutil.copytree(frames_dir, data / "00001")
    broken = shutil.copytree(frames_dir, data / "00002")
    (broken / "10.png").write_bytes(b"not an image")  # frame index 9: the first of 4 uniform samples
    (data / "00003").mkdir()
    (data / "00003" / "notes.txt").write_text("frames were never extracted")
    manifest = data / "test.csv"
    with manifest.open("w", newline="") as fh:
        csv.writer(fh).writerows([["path", "label"], ["00001", 1], ["00002", 5], ["00003", 2]])
    items = load_dataset(manifest, load_label_set("dfew"))

    out = tmp_path / "results.jsonl"
    with FaultServer() as server:
        summary = sovtp.run(
            items, out=out, backend="openai", model="test-model", base_url=server.base_url, workers=1, num_frames=4,
            cache_dir=None, frame_rate=30.0,
        )  # fmt: skip
        sent = [r["body"] for r in server.requests]
    records = {Path(r["path"]).name: r for r in map(json.loads, out.read_text().splitlines())}
    assert (summary.ok, summary.errors) == (1, 2)
    good = records["00001"]
    assert good["status"] == "ok" and good["meta"]["label"] == "happy"
    assert [f["timestamp"] for f in good["frames"]] == pytest.approx([0.3, 0.9, 1.5, 2.1])
    assert records["00002"]["error"].startswith("00002/10.png: not a readable image") and "remove the frame" in records["00002"]["error"]
    assert "00003: the folder holds no image files" in records["00003"]["error"]
    assert len(sent) == 1 and "0.30 s" in json.dumps(sent[0])

    # without --frame-rate: the record keeps frame numbers and no invented times
    with FaultServer() as server:
        again = sovtp.run(
            items[:1], out=tmp_path / "no_rate.jsonl", backend="openai", model="test-model", base_url=server.base_url, workers=1,
            num_frames=4, cache_dir=None,
        )  # fmt: skip
        sent = [r["body"] for r in server.requests]
    text = (tmp_path / "no_rate.jsonl").read_text()
    record = json.loads(text)
    assert again.ok == 1 and record["frames"] == [{"index": i, "timestamp": None} for i in (9, 27, 45, 63)]
    assert '"frames":[{"index":9,"timestamp":null},' in text  # indices stay integers (they were written 9.0)
    assert "at frame 10 of 72, frame 28 of 72" in json.dumps(sent[0])


@pytest.fixture
def dfew_layout(media: Path, tmp_path: Path) -> Path:
    """DFEW as its authors ship it (few frames, real pixels): the official split file with
    ``video_name,label`` ids, the original clips ``Clip/original/<id>.mp4`` and the
    face-crop frame folders ``Clip/clip_224x224/<id:05>/<id:05>_<n:05>.jpg``."""
    root = tmp_path / "DFEW"
    split = root / "EmoLabel_DataSplit" / "test(single-labeled)"
    split.mkdir(parents=True)
    (split / "set_1.csv").write_text("video_name,label\n1,1\n2,5\n")
    frames = read_clip(media / "single_face.mp4", 6).frames
    for vid in (1, 2):
        (root / "Clip" / "original").mkdir(parents=True, exist_ok=True)
        shutil.copy(media / "single_face.mp4", root / "Clip" / "original" / f"{vid}.mp4")
        folder = root / "Clip" / "clip_224x224" / f"{vid:05d}"
        folder.mkdir(parents=True)
        for n, frame in enumerate(frames, 1):
            Image.fromarray(frame.image).resize((224, 224)).save(folder / f"{vid:05d}_{n:05d}.jpg")
    return root


def test_dfew_official_split_files_load_with_a_path_format(dfew_layout: Path) -> None:
    from sovtp.eval.datasets import DatasetError, load_dataset

    from sovtp.labels import load_label_set

    dfew = load_label_set("dfew")
    split = dfew_layout / "EmoLabel_DataSplit" / "test(single-labeled)" / "set_1.csv"
    items = load_dataset(split, dfew, path_format="Clip/clip_224x224/{video_name:0>5}", root=dfew_layout)
    assert [(it.path, it.meta["label"], it.meta["video_name"]) for it in items] == [
        (dfew_layout / "Clip" / "clip_224x224" / "00001", "happy", "1"),
        (dfew_layout / "Clip" / "clip_224x224" / "00002", "surprise", "2"),
    ]
    videos = load_dataset(split, dfew, path_format="Clip/original/{video_name}.mp4", root=dfew_layout)
    assert all(it.path.is_file() for it in videos)

    for template, says in [
        ("Clip/clip_224x224/{video_name:05d}", "pad with {video_name:0>5}"),
        ("Clip/{vid}", "names column 'vid', which set_1.csv lacks (columns: video_name, label)"),
        ("Clip/{video_name.__class__}", "is not a column name"),
    ]:
        with pytest.raises(DatasetError, match=re.escape(says)):
            load_dataset(split, dfew, path_format=template, root=dfew_layout)


def test_ablate_runs_dfews_own_split_file_over_its_frame_folders(dfew_layout: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from sovtp.cli import app
    from tests.helpers.servers import FaultServer

    split = dfew_layout / "EmoLabel_DataSplit" / "test(single-labeled)" / "set_1.csv"
    out = tmp_path / "ablation"
    with FaultServer() as server:
        res = CliRunner().invoke(
            app,
            ["ablate", str(split), "--path-format", "Clip/clip_224x224/{video_name:0>5}", "--data-root", str(dfew_layout),
             "--grid", "template=direct", "--backend", "openai", "--base-url", server.base_url, "--frames", "3",
             "--out", str(out), "--bootstrap", "0", "--examples", "0", "--cache-dir", str(tmp_path / "cache")],
        )  # fmt: skip
    assert res.exit_code == 0, res.output
    summary = json.loads((out / "report" / "summary.json").read_text())
    (row,) = summary["variants"]
    assert row["n"] == 2 and row["metrics"]["war"] == pytest.approx(0.5)  # canned "happy": clip 1 right, clip 2 (surprise) wrong

    # the report rebuilt later with nothing repeated: DATA, --path-format, --data-root and
    # the grid come from plan.json, like the model and labels (no server, no media read)
    (out / "report" / "summary.json").unlink()
    again = CliRunner().invoke(
        app, ["ablate", "--report-only", "--out", str(out), "--bootstrap", "0", "--examples", "0", "--backend", "openai"]
    )
    assert again.exit_code == 0, again.output
    assert "Notice" not in again.output  # nothing is sent anywhere: no "frames with faces will be sent to api.openai.com"
    (row,) = json.loads((out / "report" / "summary.json").read_text())["variants"]
    assert row["name"] == "template=direct" and row["n"] == 2 and row["metrics"]["war"] == pytest.approx(0.5)
    # the dataset moved: the report is rebuilt with the new --data-root alone (README's own
    # example; before, "found no results ... made with these settings")
    moved = tmp_path / "DFEW-on-another-disk"
    shutil.copytree(dfew_layout, moved)
    again = CliRunner().invoke(
        app, ["ablate", "--report-only", "--out", str(out), "--data-root", str(moved), "--bootstrap", "0", "--examples", "0"]
    )
    assert again.exit_code == 0, again.output
    (row,) = json.loads((out / "report" / "summary.json").read_text())["variants"]
    assert row["n"] == 2 and row["metrics"]["war"] == pytest.approx(0.5)
    fresh = CliRunner().invoke(app, ["ablate", "--report-only", "--out", str(tmp_path / "never-ran")])
    assert fresh.exit_code == 1
    assert "--report-only needs DATA and --grid: " in " ".join(fresh.output.split()), fresh.output
    assert "DATA is required" in " ".join(CliRunner().invoke(app, ["ablate", "--grid", "visual=none", "--model", "m"]).output.split())

    # a template that misses the zero-padding names no existing input: one sentence, nothing runs
    wrong = CliRunner().invoke(
        app,
        ["ablate", str(split), "--path-format", "Clip/clip_224x224/{video_name}", "--data-root", str(dfew_layout),
         "--grid", "template=direct", "--backend", "openai", "--base-url", "http://127.0.0.1:9/v1", "--out", str(tmp_path / "x")],
    )  # fmt: skip
    assert wrong.exit_code == 1
    assert "none of the 2 inputs exists (the first is " in wrong.output and "check --data-root and --path-format" in wrong.output
    assert not (tmp_path / "x").exists()


def test_ferv39k_and_mafw_official_split_files_load_as_they_ship(tmp_path: Path) -> None:
    """FERV39k's 4_setups/All_scenes/test_All.csv has no header and one "scene/emotion/clip
    Label" pair per line, space-separated; its clips are frame folders under
    2_ClipsforFaceCrop. DFER-CLIP-style list files add a frame count: "path 72 5"."""
    from sovtp.eval.datasets import DatasetError, load_dataset

    from sovtp.labels import load_label_set

    root = tmp_path / "FERV39k"
    split = root / "4_setups" / "All_scenes"
    split.mkdir(parents=True)
    (split / "test_All.csv").write_text("Action/Sad/0010 Sad\nDaily/Happy/0003 Happy\n")
    items = load_dataset(split / "test_All.csv", load_label_set("ferv39k"), root=root / "2_ClipsforFaceCrop")
    assert [(it.path, it.meta["label"]) for it in items] == [
        (root / "2_ClipsforFaceCrop" / "Action" / "Sad" / "0010", "sad"),
        (root / "2_ClipsforFaceCrop" / "Daily" / "Happy" / "0003", "happy"),
    ]

    (tmp_path / "dfew_set_1_test.txt").write_text("/data/DFEW/clip_224x224/00003 64 4\n/data/DFEW/clip_224x224/00010 80 1\n")
    listed = load_dataset(tmp_path / "dfew_set_1_test.txt", load_label_set("dfew"))
    assert [(str(it.path), it.meta["label"], it.meta["num_frames"]) for it in listed] == [
        ("/data/DFEW/clip_224x224/00003", "angry", "64"),
        ("/data/DFEW/clip_224x224/00010", "happy", "80"),
    ]

    # MAFW: "Train & Test Set/single/no_caption/set_1/test.txt", clips under data/clips, its own label words
    mafw = tmp_path / "MAFW" / "Train & Test Set" / "single" / "no_caption" / "set_1"
    mafw.mkdir(parents=True)
    (mafw / "test.txt").write_text("00025.mp4 happiness\n00031.mp4 helplessness\n00040.mp4 anger\n")
    clips = tmp_path / "MAFW" / "data" / "clips"
    got = load_dataset(mafw / "test.txt", load_label_set("mafw"), root=clips)
    assert [(it.path, it.meta["label"]) for it in got] == [
        (clips / "00025.mp4", "happy"),
        (clips / "00031.mp4", "helplessness"),
        (clips / "00040.mp4", "angry"),
    ]

    (tmp_path / "bad.txt").write_text("a/b 1 2 3\n")
    with pytest.raises(DatasetError, match="4 space-separated columns and no header row"):
        load_dataset(tmp_path / "bad.txt", load_label_set("dfew"))
    (tmp_path / "ragged.txt").write_text("a/b happy\nc/d\n")
    with pytest.raises(DatasetError, match=r"ragged.txt, line 2: 1 space-separated columns where the file has 2"):
        load_dataset(tmp_path / "ragged.txt", load_label_set("dfew"))


def test_numbered_images_found_one_by_one_get_a_hint_to_read_them_as_clips(frames_dir: Path, media: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from sovtp.cli import app
    from sovtp.frame_folder import frame_folder_hint

    clip = tmp_path / "in" / "clip_0001"
    clip.mkdir(parents=True)
    for n in range(1, 9):
        shutil.copy(frames_dir / f"{n * 9}.png", clip / f"{n:05d}.png")
    photos = tmp_path / "in" / "holiday"
    photos.mkdir()
    for name in ("beach.jpg", "dinner.jpg", "group.jpg"):
        shutil.copy(media / "multi_face.jpg", photos / name)

    assert frame_folder_hint(photos.iterdir()) is None  # a few named photos: nothing to say
    assert "1 folder(s) hold numbered image sequences" in (frame_folder_hint(clip.iterdir()) or "")
    args = ["prompt", str(tmp_path / "in"), "--out", str(tmp_path / "preview"), "--template", "direct", "--extractors", "faces",
            "--cache-dir", str(tmp_path / "cache")]  # fmt: skip
    said = CliRunner().invoke(app, args)
    assert said.exit_code == 0, said.output
    assert "Hint:" in said.output and "add --frame-folders" in said.output
    quiet = CliRunner().invoke(app, [*args, "--frame-folders"])
    assert quiet.exit_code == 0, quiet.output
    assert "Hint:" not in quiet.output and "Previews for 2 of 2 input(s)" in quiet.output  # every folder of images is a clip


def test_a_frame_of_another_size_is_resized_to_the_first(frames_dir: Path, tmp_path: Path) -> None:
    """Boxes and tracks live in one coordinate system, so every frame of a clip has the
    first sampled frame's size."""
    folder = tmp_path / "mixed"
    folder.mkdir()
    for n in (1, 2, 3):
        im = Image.open(frames_dir / f"{n * 20}.png")
        (im if n != 2 else im.resize((320, 180))).save(folder / f"{n}.png")
    clip = read_clip(folder, 3, max_side=None)
    assert [f.image.shape for f in clip.frames] == [(360, 640, 3)] * 3 and clip.size == (640, 360)
