"""Score a predictions file from anywhere (``sovtp eval score``).

The file is CSV/TSV or JSONL. Columns are named with ``--gt`` / ``--pred``; a dotted
name reaches into nested JSON (``meta.label``), so a sovtp results file scores with
its defaults. A predicted field may be a ranked list (``"sad, neutral, fear"`` or a
JSON list): the first entry is the prediction that is scored. Predictions pass
through the same synonym table as the answer parser; anything that is not a label of
the set is an invalid answer and counts as wrong.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sovtp.eval.datasets import DatasetError, gt_label, label_by_id, line_of, read_table

from sovtp.labels import LabelSet, normalize_label

_SPLIT = re.compile(r"[,;|>\n]+")


def field_value(row: dict[str, Any], name: str) -> Any:
    """``row[name]``, or for a dotted name the nested value (``meta.label``)."""
    if name in row:
        return row[name]
    value: Any = row
    for part in name.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def top1(value: Any, labels: LabelSet) -> str | None:
    """The scored prediction: the first entry of a ranked list, normalised; None = invalid."""
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        value = value[0] if value else None
        return top1(value, labels)
    if isinstance(value, dict):  # {"label": ..} or label -> score
        if "label" in value:
            return top1(value["label"], labels)
        if value and all(isinstance(v, (int, float)) for v in value.values()):
            return top1(max(value, key=lambda k: value[k]), labels)
        return None
    text = str(value).strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    first = next((w.strip().strip("'\"") for w in _SPLIT.split(text) if w.strip().strip("'\"")), "")
    return (label_by_id(first, labels) or normalize_label(first, labels, codes=True)) if first else None


def looks_like_results(rows: list[dict[str, Any]]) -> bool:
    return bool(rows) and all(k in rows[0] for k in ("status", "run_key", "meta"))


@dataclass
class Predictions:
    y_true: list[str]
    y_pred: list[str | None]
    rows: list[dict[str, Any]]
    gt_col: str
    pred_col: str
    fingerprint: str
    superseded: int = 0  # sovtp results: older records left out (one record per input is scored)


def latest_per_input(path: Path) -> tuple[list[dict[str, Any]], int]:
    """A sovtp results file's records, one per input path (its latest), and how many
    older records were left out. The file is append-only across runs: a rerun with other
    settings (another temperature, template or model) adds records beside the earlier
    ones, and each must not be scored as another item."""
    import os

    from sovtp.results import load_results

    latest: dict[str, dict[str, Any]] = {}
    total = 0
    for r in load_results(path):
        total += 1
        # one input however it was named (relative, absolute, a link), where it still exists
        key = os.path.realpath(r.path) if os.path.lexists(r.path) else r.path
        latest.pop(key, None)  # the input's place is its latest record's
        latest[key] = r.model_dump(mode="json")
    return list(latest.values()), total - len(latest)


def read_predictions(path: Path | str, labels: LabelSet, gt: str | None = None, pred: str | None = None) -> Predictions:
    """Ground truth and top-1 predictions of every row. A sovtp results file needs no
    column names (ground truth ``meta.label``, prediction ``label``; ``invalid`` and
    ``error`` records count as wrong), and each input is scored once, by its latest
    record (:func:`latest_per_input`)."""
    path = Path(path)
    if not path.is_file():
        what = "is a folder" if path.is_dir() else "does not exist"
        raise DatasetError(f"{path} {what}; give a CSV or JSONL file of predictions (sovtp ablate takes a dataset folder)")
    rows = read_table(path)
    if not rows:
        raise DatasetError(f"{path} has no rows to score")
    is_results = looks_like_results(rows)
    superseded = 0
    if is_results:
        rows, superseded = latest_per_input(path)
    gt = gt or ("meta.label" if is_results else None)
    pred = pred or ("label" if is_results else None)
    if gt is None or pred is None:
        cols = ", ".join(rows[0].keys())
        raise DatasetError(
            f"{path} is not a sovtp results file; name its ground-truth and prediction columns with --gt and --pred (columns: {cols})"
        )
    for name, what in ((gt, "--gt"), (pred, "--pred")):
        if all(field_value(r, name) is None for r in rows):
            raise DatasetError(f"{path} has no column {name!r} with values (columns: {', '.join(rows[0].keys())}); check {what}")
    y_true: list[str] = []
    y_pred: list[str | None] = []
    for i, row in enumerate(rows):
        n = line_of(rows, i)
        where = f"{path.name}, the record of {row.get('path')}" if is_results else f"{path.name}, row {n}"
        y_true.append(gt_label(field_value(row, gt), labels, where))
        if is_results and row.get("status") != "ok":
            y_pred.append(None)
        else:
            y_pred.append(top1(field_value(row, pred), labels))
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    return Predictions(y_true, y_pred, rows, gt, pred, digest, superseded)
