"""Classification metrics for emotion recognition, pure numpy, checked against scikit-learn.

Conventions (the ones a paper needs stated; every figure sovtp reports follows them):

- **Invalid answers are wrong.** A prediction that is not a label of the set (the model
  answered outside it, or the item errored) is kept as a separate "invalid" column of the
  confusion matrix: it counts in every denominator and never as a hit. Dropping such
  items would flatter a model that refuses hard clips.
- **WAR** (weighted average recall) is plain accuracy: hits / all items.
- **UAR** (unweighted average recall) is the mean of the per-class recalls over the
  classes of the label set that occur in the ground truth. A class with no ground-truth
  item has an undefined recall (0/0); it is left out of the mean rather than counted as
  0 (which would punish the model for the data set) or 1 (which would reward it). This is
  exactly ``sklearn.metrics.balanced_accuracy_score`` and
  ``recall_score(average="macro", labels=<present classes>)``. When every class occurs
  (DFEW, MAFW, FERV39k test folds) it is the mean over the whole label set. It is *not*
  a binary recall, the mistake of a widely copied script whose "UAR" comes out near
  half of WAR.
- **macro-F1** averages per-class F1 over the same present classes as UAR; a class that
  occurs but is never predicted has precision 0/0 taken as 0, hence F1 0
  (``f1_score(average="macro", labels=present, zero_division=0)``).
- **weighted-F1** weights per-class F1 by ground-truth support
  (``f1_score(average="weighted", zero_division=0)``); absent classes weigh nothing.
- Bootstrap intervals are percentile intervals over items resampled with replacement,
  seeded, so a rerun prints the same interval. Deltas between two variants resample the
  *same* items for both (paired), which is what makes a small delta detectable.
- McNemar's test is the exact two-sided binomial test on the discordant pairs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np

from sovtp.labels import LabelSet

INVALID = "invalid"  # the extra confusion-matrix column for answers outside the set
METRICS = ("war", "uar", "macro_f1", "weighted_f1")
METRIC_NAMES = {"war": "WAR", "uar": "UAR", "macro_f1": "macro-F1", "weighted_f1": "weighted-F1", "invalid_rate": "invalid"}


def _label_names(labels: LabelSet | Sequence[str]) -> tuple[str, ...]:
    return labels.labels if isinstance(labels, LabelSet) else tuple(labels)


def encode(
    y_true: Sequence[str], y_pred: Sequence[str | None], labels: LabelSet | Sequence[str]
) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """Integer codes: ground truth 0..K-1, predictions 0..K-1 or K for invalid.

    Ground truth must already be a label of the set (datasets normalise it and name a
    bad row); a prediction outside the set (None, "", a non-label) becomes invalid.
    """
    names = _label_names(labels)
    if len(y_true) != len(y_pred):
        raise ValueError(f"{len(y_true)} ground-truth labels but {len(y_pred)} predictions; they must pair up item by item")
    index = {n: i for i, n in enumerate(names)}
    k = len(names)
    try:
        t = np.fromiter((index[y] for y in y_true), dtype=np.int64, count=len(y_true))
    except KeyError as exc:
        raise ValueError(
            f"ground-truth label {exc.args[0]!r} is not in the label set ({', '.join(names)}); normalise it or choose --labels"
        ) from None
    p = np.fromiter((index.get(y, k) if isinstance(y, str) else k for y in y_pred), dtype=np.int64, count=len(y_pred))
    return t, p, names


def confusion(t: np.ndarray, p: np.ndarray, k: int) -> np.ndarray:
    """K x (K+1) counts: rows ground truth, columns predictions, last column invalid."""
    return np.bincount(t * (k + 1) + p, minlength=k * (k + 1)).reshape(k, k + 1)


def _from_confusion(cm: np.ndarray) -> dict[str, Any]:
    """All scalar and per-class metrics from one K x (K+1) confusion matrix.

    ``cm`` may carry leading batch axes (bootstrap replicates): (..., K, K+1).
    """
    k = cm.shape[-2]
    cm = cm.astype(np.float64)
    tp = np.diagonal(cm[..., :, :k], axis1=-2, axis2=-1)
    support = cm.sum(axis=-1)  # ground-truth items per class
    predicted = cm[..., :, :k].sum(axis=-2)  # items predicted as each class
    n = support.sum(axis=-1)
    present = support > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        recall = np.where(present, tp / np.where(present, support, 1), np.nan)
        precision = np.where(predicted > 0, tp / np.where(predicted > 0, predicted, 1), 0.0)
        rec0 = np.nan_to_num(recall, nan=0.0)
        denom = precision + rec0
        f1 = np.where(denom > 0, 2 * precision * rec0 / np.where(denom > 0, denom, 1), 0.0)
        n_present = present.sum(axis=-1)
        war = tp.sum(axis=-1) / n
        uar = np.where(present, rec0, 0.0).sum(axis=-1) / n_present
        macro_f1 = np.where(present, f1, 0.0).sum(axis=-1) / n_present
        weighted_f1 = (f1 * support).sum(axis=-1) / n
        invalid_rate = cm[..., :, k].sum(axis=-1) / n
    return {
        "war": war,
        "uar": uar,
        "macro_f1": macro_f1,
        "weighted_f1": weighted_f1,
        "invalid_rate": invalid_rate,
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "support": support,
        "predicted": predicted,
    }


def _none_if_nan(x: float) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else float(x)


@dataclass
class Scores:
    """Metrics of one set of predictions. ``confusion`` rows are ground truth in label
    order, columns predictions in label order plus a last ``invalid`` column."""

    labels: tuple[str, ...]
    n: int
    war: float
    uar: float
    macro_f1: float
    weighted_f1: float
    invalid_rate: float
    n_invalid: int
    confusion: np.ndarray
    precision: dict[str, float]
    recall: dict[str, float | None]  # None: class absent from the ground truth
    f1: dict[str, float]
    support: dict[str, int]
    histogram: dict[str, int]  # predicted label (or "invalid") -> count
    ci: dict[str, tuple[float, float]] = field(default_factory=dict)

    @property
    def present(self) -> tuple[str, ...]:
        """The classes UAR and macro-F1 average over."""
        return tuple(c for c in self.labels if self.support[c] > 0)

    @property
    def collapse(self) -> tuple[str, float]:
        """The most predicted answer and its share of all items (1.0 = total collapse)."""
        top = max(self.histogram, key=lambda c: self.histogram[c])
        return top, self.histogram[top] / self.n

    def metric(self, name: str) -> float:
        return float(getattr(self, name))

    def to_dict(self) -> dict[str, Any]:
        top, share = self.collapse
        return {
            "n": self.n,
            "labels": list(self.labels),
            "present_classes": list(self.present),
            "war": self.war,
            "uar": self.uar,
            "macro_f1": self.macro_f1,
            "weighted_f1": self.weighted_f1,
            "invalid_rate": self.invalid_rate,
            "n_invalid": self.n_invalid,
            "ci95": {k: list(v) for k, v in self.ci.items()},
            "per_class": {
                c: {"precision": self.precision[c], "recall": self.recall[c], "f1": self.f1[c], "support": self.support[c]}
                for c in self.labels
            },
            "confusion": {"rows": list(self.labels), "columns": [*self.labels, INVALID], "counts": self.confusion.tolist()},
            "prediction_histogram": dict(self.histogram),
            "most_predicted": {"label": top, "share": share},
        }


def score(
    y_true: Sequence[str],
    y_pred: Sequence[str | None],
    labels: LabelSet | Sequence[str],
    bootstrap: int = 0,
    seed: int = 0,
) -> Scores:
    """Score predictions against ground truth over ``labels`` (see the module docstring
    for the conventions). ``bootstrap`` > 0 adds 95 % percentile intervals to ``ci``."""
    t, p, names = encode(y_true, y_pred, labels)
    if len(t) == 0:
        raise ValueError("there are no items to score; check the predictions file and its ground-truth column")
    k = len(names)
    cm = confusion(t, p, k)
    m = _from_confusion(cm)
    hist = {c: int(m["predicted"][i]) for i, c in enumerate(names)}
    hist[INVALID] = int(cm[:, k].sum())
    s = Scores(
        labels=names,
        n=int(len(t)),
        war=float(m["war"]),
        uar=float(m["uar"]),
        macro_f1=float(m["macro_f1"]),
        weighted_f1=float(m["weighted_f1"]),
        invalid_rate=float(m["invalid_rate"]),
        n_invalid=hist[INVALID],
        confusion=cm,
        precision={c: float(m["precision"][i]) for i, c in enumerate(names)},
        recall={c: _none_if_nan(float(m["recall"][i])) for i, c in enumerate(names)},
        f1={c: float(m["f1"][i]) for i, c in enumerate(names)},
        support={c: int(m["support"][i]) for i, c in enumerate(names)},
        histogram=hist,
    )
    if bootstrap > 0:
        s.ci = bootstrap_ci(y_true, y_pred, names, n_boot=bootstrap, seed=seed)
    return s


# --------------------------------------------------------------------------- bootstrap


def _replicate_metrics(t: np.ndarray, p: np.ndarray, k: int, idx: np.ndarray) -> dict[str, np.ndarray]:
    """Metrics of each bootstrap replicate; ``idx`` is (B, n) item indices."""
    b = idx.shape[0]
    cells = k * (k + 1)
    flat = (t[idx] * (k + 1) + p[idx]) + (np.arange(b)[:, None] * cells)
    cm = np.bincount(flat.ravel(), minlength=b * cells).reshape(b, k, k + 1)
    return _from_confusion(cm)


def _resamples(n: int, n_boot: int, seed: int, chunk: int = 200):
    """Seeded resample index blocks; chunked so memory stays bounded for big test sets."""
    rng = np.random.default_rng(seed)
    done = 0
    while done < n_boot:
        size = min(chunk, n_boot - done)
        yield rng.integers(0, n, size=(size, n))
        done += size


def _percentile(values: np.ndarray, alpha: float) -> tuple[float, float]:
    values = values[~np.isnan(values)]
    if values.size == 0:
        return (float("nan"), float("nan"))
    lo, hi = np.percentile(values, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return float(lo), float(hi)


def bootstrap_ci(
    y_true: Sequence[str],
    y_pred: Sequence[str | None],
    labels: LabelSet | Sequence[str],
    metrics: Sequence[str] = (*METRICS, "invalid_rate"),
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
) -> dict[str, tuple[float, float]]:
    """Percentile bootstrap (1 - alpha) intervals of each metric, resampling items."""
    t, p, names = encode(y_true, y_pred, labels)
    k = len(names)
    collected: dict[str, list[np.ndarray]] = {m: [] for m in metrics}
    for idx in _resamples(len(t), n_boot, seed):
        rep = _replicate_metrics(t, p, k, idx)
        for m in metrics:
            collected[m].append(rep[m])
    return {m: _percentile(np.concatenate(v), alpha) for m, v in collected.items()}


@dataclass(frozen=True)
class Delta:
    """``b - a`` for one metric with its paired bootstrap interval."""

    metric: str
    a: float
    b: float
    delta: float
    lo: float
    hi: float

    def to_dict(self) -> dict[str, Any]:
        return {"metric": self.metric, "a": self.a, "b": self.b, "delta": self.delta, "ci95": [self.lo, self.hi]}


def paired_bootstrap_delta(
    y_true: Sequence[str],
    pred_a: Sequence[str | None],
    pred_b: Sequence[str | None],
    labels: LabelSet | Sequence[str],
    metrics: Sequence[str] = (*METRICS, "invalid_rate"),
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
) -> dict[str, Delta]:
    """Metric(b) - metric(a) on the same items, with a paired percentile interval: each
    replicate resamples one set of items and scores both variants on it."""
    t, pa, names = encode(y_true, pred_a, labels)
    _, pb, _ = encode(y_true, pred_b, labels)
    k = len(names)
    full_a = _from_confusion(confusion(t, pa, k))
    full_b = _from_confusion(confusion(t, pb, k))
    collected: dict[str, list[np.ndarray]] = {m: [] for m in metrics}
    for idx in _resamples(len(t), n_boot, seed):
        ra = _replicate_metrics(t, pa, k, idx)
        rb = _replicate_metrics(t, pb, k, idx)
        for m in metrics:
            collected[m].append(rb[m] - ra[m])
    out: dict[str, Delta] = {}
    for m in metrics:
        # --bootstrap 0: no resamples, no interval (NaN, shown as "n/a"), the deltas still stand
        lo, hi = _percentile(np.concatenate(collected[m]), alpha) if collected[m] else (float("nan"), float("nan"))
        a, b = float(full_a[m]), float(full_b[m])
        out[m] = Delta(m, a, b, b - a, lo, hi)
    return out


# --------------------------------------------------------------------------- McNemar


@dataclass(frozen=True)
class McNemar:
    """Exact McNemar test. ``b``: items only variant A got right; ``c``: only B."""

    b: int
    c: int
    p_value: float

    def to_dict(self) -> dict[str, Any]:
        return {"a_only_correct": self.b, "b_only_correct": self.c, "p_value": self.p_value}


def binom_two_sided_half(k: int, n: int) -> float:
    """Exact two-sided p-value of k successes in n trials at p = 1/2, in exact rational
    arithmetic (no overflow or cancellation for large n): min(1, 2 * P[X <= min(k, n-k)])."""
    if n == 0:
        return 1.0
    m = min(k, n - k)
    tail = Fraction(sum(math.comb(n, i) for i in range(m + 1)), 2**n)
    return float(min(Fraction(1), 2 * tail))


def mcnemar_exact(correct_a: Sequence[bool], correct_b: Sequence[bool]) -> McNemar:
    """Do variants A and B, scored on the same items, differ in accuracy? Only items
    where exactly one of them is right carry information; under the null each such item
    is equally likely to favour either side."""
    a = np.asarray(correct_a, dtype=bool)
    b = np.asarray(correct_b, dtype=bool)
    if a.shape != b.shape:
        raise ValueError(f"McNemar needs both variants on the same items; got {a.size} and {b.size} items")
    only_a = int(np.sum(a & ~b))
    only_b = int(np.sum(~a & b))
    return McNemar(only_a, only_b, binom_two_sided_half(only_a, only_a + only_b))


def correct(y_true: Sequence[str], y_pred: Sequence[str | None]) -> np.ndarray:
    """Per-item hit vector (invalid is a miss)."""
    return np.array([isinstance(p, str) and p == t for t, p in zip(y_true, y_pred, strict=True)], dtype=bool)
