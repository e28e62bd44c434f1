"""Frame folders: a folder of image files read as one clip, in natural name order.

FERV39k ships only frame folders, and DFEW's and MAFW's face-cropped versions
(``clip_224x224/00001/*.jpg``) are frame folders too, so the research scripts this package
replaces all read them. A dataset manifest row that names a folder is one; a folder
given to ``sovtp run`` / ``prompt`` is one only with ``--frame-folders`` (without it, a
folder of photos is a folder of separate items, as it always was).

- **Order**: natural order of the file names (``2.jpg`` before ``10.jpg``), because frame
  dumps are often not zero-padded; ties by the raw name.
- **Sampling**: the same uniform positions as a video (:func:`sovtp.video.uniform_positions`
  over the number of images); only the sampled images are decoded.
- **Time**: a folder has no timestamps. With ``frame_rate`` (``--frame-rate``), frame *i*
  is at *i* / rate seconds, as in the video the frames came from; without it the
  timestamps are ``None`` and captions and templates name the frame number instead of
  inventing a time.
- **Content hash**: sha256 over every image's name and sha256, in order (so renaming,
  reordering, adding or editing a frame is a new input for the caches and resume).
- **Size**: the clip has the first sampled frame's size; a frame of another size is
  resized to it, so face boxes and tracks stay in one coordinate system.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from sovtp.types import Clip, Frame, file_sha256
from sovtp.video import IMAGE_EXTENSIONS, MediaError, load_image, uniform_positions

_DIGITS = re.compile(r"(\d+)")


def natural_key(name: str) -> tuple:
    """Sort key that orders digit runs by value: ``frame2`` before ``frame10``.

    ``re.split`` with a capturing group puts text at even and digits at odd places, so
    the tuples always compare text with text and numbers with numbers."""
    parts = _DIGITS.split(name)
    return tuple(int(p) if i % 2 else p.lower() for i, p in enumerate(parts)), name


def frame_files(folder: Path) -> list[Path]:
    """The image files directly inside ``folder`` (hidden files and other types are
    ignored), in natural name order. Raises :class:`MediaError` when there are none."""
    try:
        entries = list(os.scandir(folder))
    except PermissionError:
        raise MediaError(
            f"{folder.name}: permission denied on the frame folder; make it readable (chmod +rx) or run as its owner"
        ) from None
    except FileNotFoundError:
        raise MediaError(f"{folder.name}: the frame folder does not exist (was it moved or deleted?)") from None
    except OSError as exc:
        raise MediaError(f"{folder.name}: the frame folder cannot be read ({exc.strerror}); check the path") from None
    names = [e.name for e in entries if is_frame(e)]
    if not names:
        raise MediaError(
            f"{folder.name}: the folder holds no image files (jpg, png, ...); a frame folder needs its frames as images directly inside it"
        )
    return [folder / n for n in sorted(names, key=natural_key)]


def is_frame(entry: os.DirEntry) -> bool:
    """Whether a folder entry is a frame: a visible image file (links followed)."""
    if entry.name.startswith(".") or Path(entry.name).suffix.lower() not in IMAGE_EXTENSIONS:
        return False
    try:
        return entry.is_file(follow_symlinks=True)
    except OSError:
        return False


def frame_folder_sha256(folder: Path) -> str:
    """sha256 over every frame's name and content hash, in frame order."""
    h = hashlib.sha256(b"sovtp-frame-folder-v1\0")
    for path in frame_files(folder):
        try:
            digest = file_sha256(path)
        except OSError as exc:
            raise MediaError(f"{folder.name}/{path.name}: the frame cannot be read ({exc.strerror}); fix or remove it") from None
        h.update(os.fsencode(path.name) + b"\0" + digest.encode("ascii") + b"\0")
    return h.hexdigest()


def read_frame_folder(folder: Path, digest: str, num_frames: int, max_side: int | None, frame_rate: float | None = None) -> Clip:
    """The folder's frames at uniform positions as a clip (see the module docstring)."""
    from PIL import Image

    if frame_rate is not None and not frame_rate > 0:
        raise ValueError(f"frame_rate must be a positive number of frames per second, not {frame_rate!r}")
    files = frame_files(folder)
    frames: list[Frame] = []
    size: tuple[int, int] | None = None
    for position, index in enumerate(uniform_positions(len(files), num_frames)):
        path = files[index]
        try:
            image = load_image(path, max_side)
        except MediaError as exc:
            raise MediaError(f"{folder.name}/{exc}".rstrip(".") + " (or remove the frame from the folder)") from None
        if size is None:
            size = (image.shape[1], image.shape[0])
        elif (image.shape[1], image.shape[0]) != size:
            image = np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BILINEAR))
        timestamp = index / frame_rate if frame_rate else None
        frames.append(Frame(position=position, index=index, timestamp=timestamp, image=image))
    assert size is not None  # frame_files never returns an empty list
    return Clip(
        path=folder,
        content_hash=digest,
        frames=tuple(frames),
        fps=frame_rate,
        duration=len(files) / frame_rate if frame_rate else None,
        width=size[0],
        height=size[1],
        frame_count=len(files),
        is_image=False,
    )


def frame_folder_hint(paths: Iterable[Path], min_frames: int = 8) -> str | None:
    """A one-line hint when images found one by one look like the frames of clips: folders
    holding ``min_frames`` or more images, nearly all with numbered names (``00001.jpg``,
    ``frame_12.png``). Without ``--frame-folders`` each would be a separate item, which is
    right for a folder of photos and a long, wrong run for DFEW's ``clip_224x224``."""
    by_folder: dict[Path, list[str]] = {}
    for p in paths:
        if p.suffix.lower() in IMAGE_EXTENSIONS:
            by_folder.setdefault(p.parent, []).append(p.stem)
    numbered = [
        folder
        for folder, stems in by_folder.items()
        if len(stems) >= min_frames and sum(s[-1:].isdigit() for s in stems) >= 0.9 * len(stems)
    ]
    if not numbered:
        return None
    example = sorted(numbered)[0]
    return (
        f"{len(numbered)} folder(s) hold numbered image sequences (e.g. {example}, {len(by_folder[example])} images), "
        "each image now a separate item; if they are the frames of clips, add --frame-folders to read each folder as one clip."
    )
