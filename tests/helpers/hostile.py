"""Generators of the hostile test corpus (issue 7), made in tmp dirs by the tests.

Nothing here is committed media: every file is written in seconds. The 10-minute
1080p video is one short x264 GOP (static-ish content, ultrafast preset) encoded once
and then muxed 300 times with shifted timestamps, so it is a genuine 15,000-frame,
25 fps, 1920x1080 H.264 MP4 of a few MB that takes about a second to write.

Also: varied copies of a real input (same pixels, different bytes -> different
content hashes), a variable-frame-rate clip, tiny and huge images, a truncated MP4,
a zero-byte file, a text file named ``.mp4``, awkward names (spaces, non-UTF-8
bytes), a directory symlink loop and an unreadable file, plus a small user template
and helpers for subprocess runs (peak memory, dropping root privileges).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

SOVTP = str(Path(sys.executable).parent / "sovtp")
NOBODY = 65534

# A user template that needs nothing: it shows whether a face was found, and the
# target's AU and posture text when present, so tests can read the cues in the
# request a local server captured.
TEMPLATE = """{#---
needs: []
visual: numbered
layout: frames
answer: label
---#}
{{ images }}
{% if visual_note %}{{ visual_note }}
{% endif %}
{% if privacy_note %}{{ privacy_note }}
{% endif %}
{% if target %}There are {{ face_ids | length }} face(s); judge {{ target_ref }}.
AUs: {{ target.au_text }}
Posture: {{ target.posture_text }}
{% endif %}
{% for s in skipped %}Not available: {{ s.cue }} ({{ s.reason }}).
{% endfor %}
Answer with one of: {{ labels_text }}.
{{ answer_format }}
"""


def write_template(folder: Path, name: str = "plain.j2", source: str = TEMPLATE) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(source, encoding="utf-8")
    return path


# --------------------------------------------------------------------------- copies


def varied_copies(src: Path, folder: Path, n: int, stem: str = "item") -> list[Path]:
    """``n`` copies of ``src`` whose bytes differ (a counter appended after the media
    data, which decoders ignore), so each has its own content hash and run key."""
    folder.mkdir(parents=True, exist_ok=True)
    data = src.read_bytes()
    out = []
    for i in range(n):
        p = folder / f"{stem}{i:03d}{src.suffix}"
        p.write_bytes(data + f"\nsovtp-copy-{i}\n".encode())
        out.append(p)
    return out


def varied_images(src: Path, folder: Path, n: int, stem: str = "item") -> list[Path]:
    """``n`` PNG copies of the image ``src``, each with a different 6x6 corner patch: the
    pixels differ, so neither the content hash nor the prompt (response cache) repeats."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    base = np.asarray(Image.open(src).convert("RGB")).copy()
    out = []
    for i in range(n):
        img = base.copy()
        img[:6, :6] = ((i * 37) % 256, (i * 91) % 256, (i * 53 + 17) % 256)
        p = folder / f"{stem}{i:03d}.png"
        Image.fromarray(img).save(p)
        out.append(p)
    return out


# --------------------------------------------------------------------------- videos


def _frame_pixels(i: int, width: int, height: int) -> np.ndarray:
    """Static-ish content: a fixed gradient with a small square that moves, so frames
    differ (a real decode), yet compress to almost nothing."""
    y = np.linspace(40, 200, height, dtype=np.uint8)[:, None]
    x = np.linspace(30, 220, width, dtype=np.uint8)[None, :]
    img = np.empty((height, width, 3), dtype=np.uint8)
    img[..., 0] = y
    img[..., 1] = x
    img[..., 2] = 128
    s = max(4, height // 10)
    cx = (i * 7) % max(1, width - s)
    img[height // 3 : height // 3 + s, cx : cx + s] = 255
    return img


def write_long_video(path: Path, seconds: int = 600, width: int = 1920, height: int = 1080, fps: int = 25, gop_seconds: int = 2) -> Path:
    """A ``seconds``-long H.264 MP4 at ``width``x``height``, ``fps`` (every frame present).

    One closed GOP of ``gop_seconds`` is encoded, then its packets are muxed again and
    again with shifted timestamps: genuine frames to decode, seconds to write."""
    import av

    gop = fps * gop_seconds
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {
            "preset": "ultrafast",
            "tune": "zerolatency",
            "crf": "35",
            "g": str(gop),
            "keyint_min": str(gop),
            "sc_threshold": "0",
            "bf": "0",
        }
        stream.codec_context.time_base = Fraction(1, fps)
        packets = []
        for i in range(gop):
            frame = av.VideoFrame.from_ndarray(_frame_pixels(i, width, height), format="rgb24")
            frame.pts = i
            frame.time_base = Fraction(1, fps)
            packets.extend(stream.encode(frame))
        packets.extend(stream.encode(None))
        saved = [(bytes(p), p.pts, p.dts, p.is_keyframe, p.time_base) for p in packets]
        assert saved and saved[0][3], "the GOP must start with a keyframe"
        tb = saved[0][4]
        step = int(round(gop / fps / tb))  # one GOP's duration in packet time-base ticks
        per_frame = int(round(1 / fps / tb))
        for rep in range(max(1, seconds // gop_seconds)):
            for data, pts, dts, key, _ in saved:
                pkt = av.Packet(data)
                pkt.stream = stream
                pkt.time_base = tb
                pkt.pts = pts + rep * step
                pkt.dts = dts + rep * step
                pkt.duration = per_frame
                pkt.is_keyframe = key
                out.mux(pkt)
    return path


def write_vfr_video(path: Path, width: int = 320, height: int = 240) -> list[float]:
    """A clip with irregular presentation times (variable frame rate): bursts of frames
    40 ms apart, then gaps of up to half a second. Returns the written times (s)."""
    import av

    gaps_ms = [40, 40, 40, 500, 40, 120, 40, 40, 300, 40, 40, 200, 40, 40, 40, 400, 40, 80, 40, 40]
    times = [0.0]
    for g in gaps_ms:
        times.append(times[-1] + g / 1000)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": "ultrafast", "bf": "0"}
        stream.codec_context.time_base = Fraction(1, 1000)
        for i, t in enumerate(times):
            frame = av.VideoFrame.from_ndarray(_frame_pixels(i * 9, width, height), format="rgb24")
            frame.pts = int(round(t * 1000))
            frame.time_base = Fraction(1, 1000)
            for pkt in stream.encode(frame):
                out.mux(pkt)
        for pkt in stream.encode(None):
            out.mux(pkt)
    return times


def faststart_copy(src: Path, dst: Path) -> Path:
    """``src`` remuxed (no re-encode) with its index (moov) at the front, as streaming
    services write MP4s: a cut-off copy of it still has a header and decodable frames."""
    import av

    with av.open(str(src)) as inp, av.open(str(dst), "w", options={"movflags": "faststart"}) as out:
        istream = inp.streams.video[0]
        ostream = out.add_stream_from_template(istream)
        for pkt in inp.demux(istream):
            if pkt.dts is None:
                continue
            pkt.stream = ostream
            out.mux(pkt)
    return dst


def truncate_copy(src: Path, dst: Path, keep: float = 0.4) -> Path:
    """The first ``keep`` share of ``src``'s bytes: a download cut off mid-file."""
    data = src.read_bytes()
    dst.write_bytes(data[: max(1, int(len(data) * keep))])
    return dst


# --------------------------------------------------------------------------- images


def write_image(path: Path, width: int, height: int) -> Path:
    """A flat-ish image (JPEG or PNG by suffix) of the given size; 8000x8000 writes in
    about a second and is a few hundred KB, yet decodes to 192 MB of RGB."""
    from PIL import Image

    if width * height <= 64:
        Image.new("RGB", (width, height), (200, 120, 90)).save(path)
        return path
    im = Image.linear_gradient("L").resize((width, height)).convert("RGB")
    im.save(path, quality=60) if path.suffix.lower() in (".jpg", ".jpeg") else im.save(path)
    return path


# --------------------------------------------------------------------------- corpus


@dataclass(frozen=True)
class Case:
    """One corpus entry: what the run must do with it. ``expect`` is ``"ok"`` (a
    labelled result), ``"error"`` (an error record whose reason contains every word of
    ``reason``), or ``"any"`` (a result or a reasoned error; e.g. the unreadable file
    when the tests run as root, who can read it anyway)."""

    path: Path
    expect: str
    reason: tuple[str, ...] = ()


def fs_display(path: Path) -> str:
    """How sovtp's results show a path whose bytes may not be UTF-8."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def make_hostile_corpus(folder: Path, media: Path, long_video: Path | None = None) -> dict[str, Case]:
    """Write the issue-7 corpus into ``folder`` (one run's input folder). ``long_video``:
    an already written 10-minute video to link in (it is reused by the memory test)."""
    folder.mkdir(parents=True, exist_ok=True)
    cases: dict[str, Case] = {}

    def add(key: str, path: Path, expect: str, *reason: str) -> None:
        cases[key] = Case(path, expect, tuple(reason))

    (folder / "zero.mp4").write_bytes(b"")
    add("zero", folder / "zero.mp4", "error", "empty")
    # index at the end (as most cameras write): the cut removes it, so the header is unreadable
    add(
        "truncated",
        truncate_copy(media / "single_face.mp4", folder / "truncated.mp4", keep=0.3),
        "error",
        "truncated.mp4",
        "not a valid video",
    )
    # index at the front: the first part of the video still decodes
    fast = faststart_copy(media / "single_face.mp4", folder.parent / "faststart_full.mp4")
    add("truncated_tail", truncate_copy(fast, folder / "truncated_tail.mp4", keep=0.6), "ok")
    (folder / "notes.mp4").write_text("this is a text file with a video extension\n" * 20)
    add("text", folder / "notes.mp4", "error", "notes.mp4")
    add("tiny", write_image(folder / "one_pixel.png", 1, 1), "ok")
    add("huge", write_image(folder / "huge_8000.jpg", 8000, 8000), "ok")
    add("noface", Path(shutil.copy(media / "no_face.mp4", folder / "no_face.mp4")), "ok")
    vfr = folder / "vfr.mp4"
    write_vfr_video(vfr)
    add("vfr", vfr, "ok")
    add("spaces", Path(shutil.copy(media / "single_face.jpg", folder / "name with  spaces.jpg")), "ok")
    raw = os.path.join(os.fsencode(folder), b"caf\xe9-\xff.jpg")  # Latin-1 bytes: not UTF-8
    shutil.copy(media / "0-f15-hao-ph.jpg", raw)
    add("non_utf8", Path(os.fsdecode(raw)), "ok")
    loop = folder / "loop"
    loop.mkdir()
    shutil.copy(media / "45-m7-di-ph.jpg", loop / "inside_loop.jpg")
    os.symlink("..", loop / "back_up")  # loop/back_up -> folder -> loop -> ...
    add("in_loop", loop / "inside_loop.jpg", "ok")
    locked = folder / "locked.jpg"
    shutil.copy(media / "15-f13-anc-ph.jpg", locked)
    os.chmod(locked, 0)
    add("unreadable", locked, "any" if os.geteuid() == 0 else "error", "permission")
    if long_video is not None:
        dst = folder / "long_1080p.mp4"
        os.link(long_video, dst) if _same_fs(long_video, folder) else shutil.copy(long_video, dst)
        add("long", dst, "ok")
    return cases


def _same_fs(a: Path, b: Path) -> bool:
    return os.stat(a).st_dev == os.stat(b).st_dev


# --------------------------------------------------------------------------- processes


def dead_port() -> int:
    """A loopback port with nothing listening (bound, then closed)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def sovtp_env(tmp: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "OPENAI_BASE_URL")}
    env.update({"SOVTP_CACHE_DIR": str(tmp / "cache"), "PYTHONUNBUFFERED": "1", "COLUMNS": "200"})
    env.update(extra)
    return env


def peak_rss_mb(
    argv: list[str], env: dict[str, str] | None = None, cwd: Path | None = None, timeout: float = 600
) -> tuple[float, subprocess.CompletedProcess]:
    """Run ``argv`` and return its peak resident memory (MB) as the kernel accounts it:
    ``ru_maxrss`` of the finished child, read by a fresh wrapper process that has no
    other children (``RUSAGE_CHILDREN`` is the maximum over all of them)."""
    import json

    wrapper = (
        "import json, resource, subprocess, sys\n"
        "p = subprocess.run(json.loads(sys.argv[1]), capture_output=True, text=True)\n"
        "print(json.dumps([p.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, p.stdout, p.stderr]))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", wrapper, json.dumps(argv)], capture_output=True, text=True, timeout=timeout, env=env, cwd=cwd
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    rc, kb, out, err = json.loads(proc.stdout)
    return kb / 1024, subprocess.CompletedProcess(argv, rc, out, err)


def can_drop_privileges() -> bool:
    """Running as root, and allowed to become ``nobody`` (probed in a forked child:
    containers without CAP_SETUID refuse)."""
    if not hasattr(os, "fork") or os.geteuid() != 0:
        return False
    pid = os.fork()
    if pid == 0:  # child: try, report, never return into the caller
        try:
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            os._exit(0)
        except BaseException:
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status) == 0


def run_as_nobody(warmup: dict, run: dict, env: dict[str, str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    """``sovtp.run(**run)`` as user ``nobody``, in a child that starts as root.

    Why the warm-up: this interpreter's own files may sit in root's home, which nobody
    cannot read, so every lazily imported module must be loaded before the ids are
    dropped. The child first calls ``sovtp.run(**warmup)`` as root (same code paths,
    readable inputs), then drops its groups, group and user ids for good, then calls
    ``sovtp.run(**run)``. Both should pass ``workers=1``: a worker process would have
    to start that unreadable interpreter again. Prints the run summary as JSON."""
    import json

    script = (
        "import dataclasses, json, os, sys\n"
        "import sovtp\n"
        "warm, real = json.loads(sys.argv[1]), json.loads(sys.argv[2])\n"
        "sovtp.run(**warm)\n"
        f"os.setgroups([]); os.setgid({NOBODY}); os.setuid({NOBODY})\n"
        f"assert os.geteuid() == {NOBODY} and os.getuid() == {NOBODY}\n"
        "s = sovtp.run(**real)\n"
        "print(json.dumps({'ok': s.ok, 'errors': s.errors, 'total': s.total}))\n"
    )
    return subprocess.run(
        [sys.executable, "-c", script, json.dumps(warmup), json.dumps(run)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=timeout,
    )
