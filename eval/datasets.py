"""Labelled datasets -> :class:`sovtp.inputs.InputItem` s with the ground truth in ``meta``.

Three sources, one output: every item's ``meta`` holds ``label`` (a label of the chosen
set, normalised through the same synonym table as the answer parser) plus whatever else
the source knows (``split``, ``fold``, ``tier``, extra manifest columns), and the runner
copies ``meta`` into each result line, so scoring needs nothing but the results file.

- a folder with one subfolder per label (``data/happy/*.mp4``, ``data/Anger/...``);
- a CSV or JSONL manifest with ``path`` and ``label`` columns (relative paths are
  resolved against the manifest's folder, so a dataset folder can move);
- a Hugging Face dataset: a local ``videofolder``/``imagefolder`` or a hub id
  (``hf:owner/name``), through the optional ``datasets`` package.

A ground-truth label that names no class of the set is an error that names the row:
silently dropping or mapping it would change the test set without anyone noticing.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from sovtp.inputs import InputItem, discover
from sovtp.labels import LabelSet, normalize_label

PATH_COLUMNS = ("path", "file", "filename", "video", "video_path", "image")
LABEL_COLUMNS = ("label", "emotion", "gt", "class")
MANIFEST_SUFFIXES = (".csv", ".tsv", ".txt", ".jsonl", ".ndjson", ".json")
# Space-separated lists without a header row, named by their number of columns: FERV39k's
# official 4_setups/*/*.csv ("Action/Sad/0010 Sad") and the "path num_frames label" list
# files of DFER-CLIP-style training code.
HEADERLESS_COLUMNS = {2: ("path", "label"), 3: ("path", "num_frames", "label")}


class DatasetError(ValueError):
    """A dataset that cannot be read as given; the message names the row or folder and the fix."""


def label_by_id(value: Any, labels: LabelSet) -> str | None:
    """The label whose official numeric id ``value`` is (DFEW's 1..7), or None."""
    if labels.ids is None or isinstance(value, bool):
        return None
    try:
        number = float(str(value).strip())
    except ValueError:
        return None
    if not number.is_integer() or int(number) not in labels.ids:
        return None
    return labels.labels[labels.ids.index(int(number))]


def gt_label(value: Any, labels: LabelSet, where: str) -> str:
    """Normalise one ground-truth value to a label of ``labels``.

    Accepts a label name or synonym in any case, or the set's official numeric id
    (DFEW annotation files use 1..7), so official split files load unchanged.
    """
    if value is None or (isinstance(value, str) and not value.strip()):
        raise DatasetError(f"{where}: the ground-truth label is empty; fill it in or drop the row")
    text = str(value).strip()
    found = label_by_id(value, labels) or normalize_label(text, labels, codes=True)
    if found is None:
        raise DatasetError(
            f"{where}: ground-truth label {text!r} is not in the {labels.name} label set ({', '.join(labels.labels)}); fix the row or pass the right --labels"
        )
    return found


# --------------------------------------------------------------------------- folder


def from_folder(root: Path | str, labels: LabelSet, frame_folders: bool = False) -> list[InputItem]:
    """One subfolder per label; every media file below a subfolder (recursively) has its
    label (with ``frame_folders``, every folder of images below it is one clip)."""
    root = Path(root)
    subdirs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not subdirs:
        raise DatasetError(
            f"{root} has no label subfolders; put each class's clips in a subfolder named after the label (e.g. {root}/happy/)"
        )
    items: list[InputItem] = []
    for d in subdirs:
        label = gt_label(d.name, labels, f"folder {d}")
        for it in discover([d], frame_folders):
            items.append(InputItem(it.path, {"label": label, "source_label": d.name}))
    if not items:
        raise DatasetError(f"no video or image files under the label subfolders of {root}")
    return items


# --------------------------------------------------------------------------- manifest


def read_table(path: Path | str) -> list[dict[str, Any]]:
    """Rows of a CSV/TSV/TXT (header row, or a space-separated list: see
    ``HEADERLESS_COLUMNS``) or JSONL/JSON (objects) file, in file order."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in (".csv", ".tsv", ".txt"):
        with open(path, newline="", encoding="utf-8-sig") as fh:
            sample = fh.read(4096)
            fh.seek(0)
            first = sample.splitlines()[0] if sample.strip() else ""
            if suffix != ".tsv" and first and "," not in first and "\t" not in first and " " in first.strip():
                return _space_separated(path, fh.read())
            delimiter = "\t" if suffix == ".tsv" or ("\t" in sample and "," not in first) else ","
            table = _Rows()
            reader = csv.DictReader(fh, delimiter=delimiter)
            for r in reader:
                table.append(dict(r))
                # the row's first line: line_num is its last, after any quoted line breaks
                breaks = sum(v.count("\n") for v in r.values() if isinstance(v, str))
                table.lines.append(reader.line_num - breaks)
            return table
    if suffix in (".jsonl", ".ndjson"):
        rows = _Rows()
        with open(path, encoding="utf-8") as fh:
            for n, line in enumerate(fh, 1):
                if line.strip():
                    try:
                        rows.append(json.loads(line))
                    except json.JSONDecodeError as exc:
                        raise DatasetError(f"{path}, line {n}: not valid JSON ({exc.msg}); fix or remove the line") from None
                    rows.lines.append(n)
        return rows
    if suffix == ".json":
        data = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(data, dict):
            data = next((v for v in data.values() if isinstance(v, list)), None)
        if not isinstance(data, list):
            raise DatasetError(f"{path} holds no list of rows; use JSONL (one object per line) or a JSON list of objects")
        return data
    raise DatasetError(f"{path}: unknown manifest type {suffix!r}; use .csv, .tsv, .txt, .jsonl or .json")


def _space_separated(path: Path, text: str) -> list[dict[str, Any]]:
    """Rows of a space-separated list. With a header row (it names a path or label column)
    the header names the columns; without one, ``HEADERLESS_COLUMNS`` does."""
    lines = [(n, line.split()) for n, line in enumerate(text.splitlines(), 1) if line.strip()]
    header = [c.lower() for c in lines[0][1]]
    if any(c in PATH_COLUMNS or c in LABEL_COLUMNS for c in header):
        names, lines = tuple(lines[0][1]), lines[1:]
    else:
        names = HEADERLESS_COLUMNS.get(len(lines[0][1]), ())
        if not names:
            raise DatasetError(
                f"{path} has {len(lines[0][1])} space-separated columns and no header row; add a header naming the path and label columns"
            )
    rows = _Rows()
    for n, cells in lines:
        if len(cells) != len(names):
            raise DatasetError(f"{path}, line {n}: {len(cells)} space-separated columns where the file has {len(names)}; fix the line")
        rows.append(dict(zip(names, cells, strict=True)))
        rows.lines.append(n)
    return rows


class _Rows(list):
    """Rows that know their file lines, so "row N" in a message is the line to fix (blank
    lines and a header row do not shift it)."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[int] = []


def line_of(rows: list[Any], i: int, first: int = 1) -> int:
    """The file line of ``rows[i]`` (``first + i`` for rows read without line numbers)."""
    lines = getattr(rows, "lines", None)
    return lines[i] if lines and i < len(lines) else first + i


def _pick(columns: Iterable[str], wanted: str | None, candidates: tuple[str, ...], what: str, source: Path) -> str:
    cols = list(columns)
    if wanted is not None:
        if wanted not in cols:
            raise DatasetError(f"{source} has no column {wanted!r} (columns: {', '.join(cols)}); pass the right --{what}-col")
        return wanted
    lowered = {c.lower(): c for c in cols}
    for c in candidates:
        if c in lowered:
            return lowered[c]
    raise DatasetError(
        f"{source} has no {what} column (looked for {', '.join(candidates)}; columns: {', '.join(cols)}); name one with --{what}-col"
    )


def _path_fields(path_format: str, columns: Iterable[str], source: Path) -> list[str]:
    """The columns a ``--path-format`` names; plain column names only (no ``.attr`` or
    ``[key]``: the template fills in text, it does not reach into objects)."""
    import string

    cols = list(columns)
    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(path_format) if f is not None]
    except ValueError as exc:
        raise DatasetError(f"--path-format {path_format!r} is not a valid template ({exc}); write columns as {{video_name}}") from None
    for f in fields:
        if not f or f.isdigit() or any(c in f for c in ".["):
            raise DatasetError(f"--path-format {path_format!r}: {{{f}}} is not a column name; write columns as {{video_name}}")
        if f not in cols:
            raise DatasetError(f"--path-format {path_format!r} names column {f!r}, which {source.name} lacks (columns: {', '.join(cols)})")
    return fields


def from_manifest(
    manifest: Path | str,
    labels: LabelSet,
    path_col: str | None = None,
    label_col: str | None = None,
    root: Path | str | None = None,
    path_format: str | None = None,
    split: str | None = None,
) -> list[InputItem]:
    """Rows -> items. Extra columns (split, fold, tier, anything) are kept in ``meta``.
    ``split`` keeps only the rows of that split, before their labels are checked (a train
    row may use a class the test split leaves out). A path listed twice is an error: the
    scores would count the input twice, or under two ground truths.

    ``path_format`` builds each row's path from its columns (``str.format`` over the
    cells as text), for annotation files that hold ids rather than paths: DFEW's official
    ``EmoLabel_DataSplit/test(single-labeled)/set_1.csv`` has ``video_name,label`` rows
    such as ``1,5``, and its clips are ``Clip/original/1.mp4`` or the frame folders
    ``Clip/clip_224x224/00001`` (``{video_name:0>5}``). Relative paths resolve against
    ``root`` (default: the manifest's folder)."""
    manifest = Path(manifest)
    rows = read_table(manifest)
    if not rows:
        raise DatasetError(f"{manifest} has no rows")
    if path_format is not None:
        fields = _path_fields(path_format, rows[0].keys(), manifest)
        pcol = None
    else:
        fields = []
        pcol = _pick(rows[0].keys(), path_col, PATH_COLUMNS, "path", manifest)
    lcol = _pick(rows[0].keys(), label_col, LABEL_COLUMNS, "label", manifest)
    base = Path(root) if root is not None else manifest.parent
    if split is not None and not any("split" in row for row in rows):
        raise DatasetError(f"{manifest} has no 'split' column for --split {split!r}; drop --split or give the split's own file")
    items: list[InputItem] = []
    seen: dict[Path, int] = {}
    for i, row in enumerate(rows):
        n = line_of(rows, i)
        if split is not None and str(row.get("split", "")).strip() != split:
            continue
        where = f"{manifest.name}, row {n}"
        if path_format is not None:
            cells = {f: "" if row.get(f) is None else str(row.get(f)).strip() for f in fields}
            empty = [f for f, v in cells.items() if not v]
            if empty:
                raise DatasetError(f"{where}: the {empty[0]!r} column is empty; --path-format needs it to build the path")
            try:
                raw_path = path_format.format(**cells)
            except (ValueError, IndexError, KeyError) as exc:
                raise DatasetError(
                    f"--path-format {path_format!r} cannot be filled from {where} ({exc}); cells are text, so pad with {{video_name:0>5}}, not :05d"
                ) from None
        else:
            raw_path = row.get(pcol)
            if not raw_path:
                raise DatasetError(f"{where}: the {pcol!r} column is empty; every row needs a file path")
        p = Path(str(raw_path)).expanduser()
        if not p.is_absolute():
            p = base / p
        if p in seen:
            raise DatasetError(f"{where} lists {raw_path} again (first in row {seen[p]}); keep one row per input, or each is scored twice")
        seen[p] = n
        label = gt_label(row.get(lcol), labels, where)
        meta = {k: v for k, v in row.items() if k not in (pcol, lcol) and v not in (None, "")}
        meta["label"] = label
        if str(row.get(lcol)).strip() != label:
            meta["source_label"] = row.get(lcol)
        items.append(InputItem(p, meta))
    return items


# --------------------------------------------------------------------------- Hugging Face


def from_huggingface(
    spec: str,
    labels: LabelSet,
    split: str | None = None,
    label_col: str | None = None,
    cache_dir: Path | str | None = None,
) -> list[InputItem]:
    """A Hugging Face dataset: ``spec`` is a local folder (loaded as ``videofolder`` or
    ``imagefolder``) or ``hf:owner/name`` on the hub. Media are never decoded here: local
    files keep their paths; hub files stored as bytes are written once under ``cache_dir``."""
    try:
        import datasets as hfds
    except ImportError:
        raise DatasetError(
            "Hugging Face datasets are read with the optional 'datasets' package, which is not installed; run: pip install 'sovtp[hf]'"
        ) from None

    hub = spec.startswith("hf:")
    name = spec[3:] if hub else spec
    if hub:
        dsd = hfds.load_dataset(name)
    else:
        folder = Path(name)
        has_video = any(p.suffix.lower() in (".mp4", ".avi", ".mov", ".mkv", ".webm") for p in folder.rglob("*") if p.is_file())
        dsd = hfds.load_dataset("videofolder" if has_video else "imagefolder", data_dir=str(folder))
    splits = list(dsd.keys()) if isinstance(dsd, Mapping) else [None]
    chosen = split or ("test" if "test" in splits else splits[0])
    if chosen not in splits:
        raise DatasetError(f"{spec} has no split {chosen!r} (splits: {', '.join(map(str, splits))}); pass one of them with --split")
    ds = dsd[chosen] if chosen is not None else dsd
    media_col = next((c for c, f in ds.features.items() if type(f).__name__ in ("Video", "Image")), None)
    if media_col is None:
        raise DatasetError(f"{spec} has no Image or Video column (features: {', '.join(ds.features)}); use a manifest instead")
    ds = ds.cast_column(media_col, type(ds.features[media_col])(decode=False))
    lcol = label_col or next((c for c in ds.features if c.lower() in LABEL_COLUMNS), None)
    if lcol is None:
        raise DatasetError(f"{spec} has no label column (features: {', '.join(ds.features)}); name it with --label-col")
    names = getattr(ds.features[lcol], "names", None)  # ClassLabel -> class names
    out_dir = Path(cache_dir or Path.home() / ".cache" / "sovtp" / "hf-media") / name.replace("/", "__")
    items: list[InputItem] = []
    for n, row in enumerate(ds):
        media = row[media_col]
        raw = row[lcol]
        value = names[raw] if names is not None and isinstance(raw, int) else raw
        label = gt_label(value, labels, f"{spec} [{chosen}] row {n}")
        path = Path(media["path"]) if media.get("path") and Path(media["path"]).is_file() else None
        if path is None:
            if not media.get("bytes"):
                raise DatasetError(f"{spec} [{chosen}] row {n}: the media has neither a local path nor bytes")
            out_dir.mkdir(parents=True, exist_ok=True)
            suffix = Path(media.get("path") or "").suffix or ".bin"
            path = out_dir / f"{chosen}-{n:07d}{suffix}"
            if not path.exists():
                path.write_bytes(media["bytes"])
        meta = {k: v for k, v in row.items() if k not in (media_col, lcol) and isinstance(v, (str, int, float, bool))}
        meta.update({"label": label, "split": chosen})
        items.append(InputItem(path, meta))
    return items


# --------------------------------------------------------------------------- entry point


def load_dataset(
    spec: str | Path,
    labels: LabelSet,
    split: str | None = None,
    path_col: str | None = None,
    label_col: str | None = None,
    cache_dir: Path | str | None = None,
    frame_folders: bool = False,
    path_format: str | None = None,
    root: Path | str | None = None,
) -> list[InputItem]:
    """Items of a labelled dataset given as a label-subfolder folder, a manifest file, or
    ``hf:owner/name`` / a Hugging Face ``videofolder``/``imagefolder`` (``hf:`` + path).

    ``split`` keeps only manifest rows whose ``split`` column matches (and picks the
    Hugging Face split). A manifest row may name a frame folder (a folder of images, read
    as one clip); ``frame_folders`` makes the folders of images in a label-subfolder
    dataset clips too. ``path_format`` and ``root``: see :func:`from_manifest`.
    """
    text = str(spec)
    if text.startswith("hf:") and not Path(text).exists():
        local = Path(text[3:])
        if local.is_dir():
            return from_huggingface(str(local), labels, split=split, label_col=label_col, cache_dir=cache_dir)
        return from_huggingface(text, labels, split=split, label_col=label_col, cache_dir=cache_dir)
    path = Path(text)
    if path.is_file():
        if path.suffix.lower() not in MANIFEST_SUFFIXES:
            raise DatasetError(
                f"{path} is a single file, not a dataset; give a folder with one subfolder per label or a CSV/JSONL manifest"
            )
        items = from_manifest(path, labels, path_col=path_col, label_col=label_col, root=root, path_format=path_format, split=split)
        if split is not None and not items:
            raise DatasetError(f"{path} has no rows with split {split!r}")
        return items
    if path.is_dir():
        if split is not None:
            raise DatasetError(
                f"--split picks manifest rows, and {path} is a folder with one subfolder per label (no split column); give the split's own folder instead"
            )
        return from_folder(path, labels, frame_folders)
    raise DatasetError(f"{text} does not exist; give a folder with one subfolder per label, a CSV/JSONL manifest, or hf:owner/name")


def pilot(items: Sequence[InputItem], n: int) -> list[InputItem]:
    """``n`` items taken in turn from each ground-truth label, each label's items in
    dataset order, returned in dataset order. The first ``n`` rows of a label-subfolder
    dataset (sorted: all "angry", then all "disgust"...) would make a pilot of one or two
    classes, whose UAR says nothing."""
    if n >= len(items):
        return list(items)
    queues: dict[Any, list[int]] = {}
    for i, it in enumerate(items):
        queues.setdefault(it.meta.get("label"), []).append(i)
    chosen: list[int] = []
    turn = [q[::-1] for q in queues.values()]
    while len(chosen) < n:
        for q in turn:
            if q and len(chosen) < n:
                chosen.append(q.pop())
    return [items[i] for i in sorted(chosen)]


def fingerprint(items: Iterable[InputItem]) -> str:
    """A short hash of the dataset as evaluated: every path (as given), its ground truth and
    its size, in order. Two runs with the same fingerprint scored the same items."""
    import hashlib

    h = hashlib.sha256()
    for it in items:
        try:
            size = it.path.stat().st_size
        except OSError:
            size = -1
        h.update(json.dumps([it.display, it.meta.get("label"), size]).encode())
    return h.hexdigest()[:16]
