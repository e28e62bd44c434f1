"""sovtp.eval.metrics against scikit-learn (the independent reference) to 1e-9."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    confusion_matrix,
    f1_score,
    precision_recall_fscore_support,
    recall_score,
)
from sovtp.eval import metrics as M

from sovtp.labels import DFEW, MAFW

SENTINEL = "__invalid__"  # how sklearn sees an answer outside the set: a class no item has


def _sk(y_true, y_pred, labels):
    """The reference numbers, computed by scikit-learn only."""
    yp = [p if p in labels else SENTINEL for p in y_pred]
    present = [c for c in labels if c in set(y_true)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return {
            "war": accuracy_score(y_true, yp),
            "uar": recall_score(y_true, yp, labels=present, average="macro", zero_division=0),
            "balanced": balanced_accuracy_score(y_true, yp),
            "macro_f1": f1_score(y_true, yp, labels=present, average="macro", zero_division=0),
            "weighted_f1": f1_score(y_true, yp, labels=list(labels), average="weighted", zero_division=0),
            "prfs": precision_recall_fscore_support(y_true, yp, labels=list(labels), zero_division=0),
            "cm": confusion_matrix(y_true, yp, labels=[*labels, SENTINEL])[: len(labels)],
        }


def _check(y_true, y_pred, labels):
    s = M.score(y_true, y_pred, labels)
    ref = _sk(y_true, y_pred, labels)
    assert s.war == pytest.approx(ref["war"], abs=1e-9)
    assert s.uar == pytest.approx(ref["uar"], abs=1e-9)
    assert s.uar == pytest.approx(ref["balanced"], abs=1e-9)
    assert s.macro_f1 == pytest.approx(ref["macro_f1"], abs=1e-9)
    assert s.weighted_f1 == pytest.approx(ref["weighted_f1"], abs=1e-9)
    prec, rec, f1, sup = ref["prfs"]
    for i, c in enumerate(labels):
        assert s.precision[c] == pytest.approx(prec[i], abs=1e-9)
        assert s.f1[c] == pytest.approx(f1[i], abs=1e-9)
        assert s.support[c] == sup[i]
        if sup[i] > 0:
            assert s.recall[c] == pytest.approx(rec[i], abs=1e-9)
        else:
            assert s.recall[c] is None  # undefined, not 0
    np.testing.assert_array_equal(s.confusion, ref["cm"])
    invalid = sum(p not in labels for p in y_pred)
    assert s.n_invalid == invalid and s.histogram[M.INVALID] == invalid
    assert s.invalid_rate == pytest.approx(invalid / len(y_true), abs=1e-12)
    assert sum(s.histogram.values()) == len(y_true)
    # UAR is the mean of the per-class recalls (not a binary recall)
    assert s.uar == pytest.approx(np.mean([s.recall[c] for c in s.present]), abs=1e-12)
    return s


@pytest.mark.parametrize("seed", range(25))
def test_random_inputs_match_sklearn(seed):
    rng = np.random.default_rng(seed)
    labels = DFEW.labels if seed % 2 else MAFW.labels
    n = int(rng.integers(1, 300))
    y_true = list(rng.choice(labels, size=n))
    pool = [*labels, None, "pain", ""]
    y_pred = [pool[i] for i in rng.integers(0, len(pool), size=n)]
    # bias predictions toward the truth so scores are not all near chance
    y_pred = [t if rng.random() < 0.4 else p for t, p in zip(y_true, y_pred, strict=False)]
    _check(y_true, y_pred, labels)


def test_class_never_predicted():
    labels = DFEW.labels
    y_true = ["happy", "sad", "fear", "fear", "neutral"]
    y_pred = ["happy", "sad", "sad", "happy", "neutral"]
    s = _check(y_true, y_pred, labels)
    assert s.precision["fear"] == 0.0 and s.recall["fear"] == 0.0 and s.f1["fear"] == 0.0


def test_class_never_present_is_left_out_of_uar():
    labels = DFEW.labels
    y_true = ["happy", "happy", "sad", "sad"]
    y_pred = ["happy", "angry", "sad", "sad"]  # angry predicted but never present
    s = _check(y_true, y_pred, labels)
    assert s.present == ("happy", "sad")
    assert s.uar == pytest.approx((0.5 + 1.0) / 2)
    assert s.recall["angry"] is None and s.precision["angry"] == 0.0


def test_all_invalid():
    labels = DFEW.labels
    y_true = ["happy", "sad", "fear"]
    s = _check(y_true, [None, "pain", "I cannot tell"], labels)
    assert (s.war, s.uar, s.macro_f1, s.weighted_f1, s.invalid_rate) == (0.0, 0.0, 0.0, 0.0, 1.0)


def test_all_correct_single_class():
    s = _check(["sad"] * 4, ["sad"] * 4, DFEW.labels)
    assert s.war == s.uar == s.macro_f1 == s.weighted_f1 == 1.0
    assert s.collapse == ("sad", 1.0)


def test_uar_is_not_binary_recall():
    """The copied-script bug: UAR near half of WAR. Balanced classes, perfect model: both 1."""
    y = [c for c in DFEW.labels for _ in range(5)]
    s = M.score(y, y, DFEW)
    assert s.war == s.uar == 1.0


def test_unknown_ground_truth_and_length_mismatch_are_clear():
    with pytest.raises(ValueError, match="'pain' is not in the label set"):
        M.score(["pain"], ["happy"], DFEW)
    with pytest.raises(ValueError, match="pair up"):
        M.score(["happy"], [], DFEW)
    with pytest.raises(ValueError, match="no items"):
        M.score([], [], DFEW)


def test_bootstrap_is_seeded_and_brackets_the_estimate():
    rng = np.random.default_rng(3)
    y_true = list(rng.choice(DFEW.labels, size=200))
    y_pred = [t if rng.random() < 0.6 else rng.choice(DFEW.labels) for t in y_true]
    s1 = M.score(y_true, y_pred, DFEW, bootstrap=500, seed=7)
    s2 = M.score(y_true, y_pred, DFEW, bootstrap=500, seed=7)
    assert s1.ci == s2.ci
    for m in M.METRICS:
        lo, hi = s1.ci[m]
        assert lo <= s1.metric(m) <= hi
        assert 0 < hi - lo < 0.3
    # the vectorised replicate equals scoring the resample directly
    idx = next(M._resamples(len(y_true), 3, seed=11))
    t, p, _ = M.encode(y_true, y_pred, DFEW)
    rep = M._replicate_metrics(t, p, len(DFEW), idx)
    for r in range(3):
        yt = [y_true[i] for i in idx[r]]
        yp = [y_pred[i] for i in idx[r]]
        ref = _sk(yt, yp, DFEW.labels)
        assert rep["war"][r] == pytest.approx(ref["war"], abs=1e-9)
        assert rep["uar"][r] == pytest.approx(ref["uar"], abs=1e-9)
        assert rep["macro_f1"][r] == pytest.approx(ref["macro_f1"], abs=1e-9)
        assert rep["weighted_f1"][r] == pytest.approx(ref["weighted_f1"], abs=1e-9)


def test_paired_delta():
    rng = np.random.default_rng(5)
    y_true = list(rng.choice(DFEW.labels, size=300))
    a = [t if rng.random() < 0.4 else None for t in y_true]
    b = [t if (p == t or rng.random() < 0.3) else "sad" for t, p in zip(y_true, a, strict=False)]  # b dominates a
    d = M.paired_bootstrap_delta(y_true, a, b, DFEW, n_boot=400, seed=1)
    assert d["war"].delta == pytest.approx(M.score(y_true, b, DFEW).war - M.score(y_true, a, DFEW).war)
    assert d["war"].lo > 0  # b never loses an item a wins: every replicate's delta is >= 0
    same = M.paired_bootstrap_delta(y_true, a, a, DFEW, n_boot=50)
    assert same["uar"].delta == 0 and same["uar"].lo == 0 and same["uar"].hi == 0


def test_mcnemar_exact_matches_scipy_binomtest():
    from scipy.stats import binomtest

    for b, c in [(0, 0), (0, 5), (3, 10), (10, 3), (7, 7), (1, 20), (40, 60), (500, 560)]:
        ca = [True] * b + [False] * c + [True] * 4 + [False] * 2
        cb = [False] * b + [True] * c + [True] * 4 + [False] * 2
        r = M.mcnemar_exact(ca, cb)
        assert (r.b, r.c) == (b, c)
        expected = 1.0 if b + c == 0 else binomtest(b, b + c, 0.5).pvalue
        assert r.p_value == pytest.approx(expected, rel=1e-9, abs=1e-300)
    assert M.binom_two_sided_half(0, 5) == pytest.approx(2 / 32)
    assert math.isclose(M.binom_two_sided_half(5000, 10000), 1.0)


def test_to_dict_is_json_ready():
    import json

    s = M.score(["happy", "sad"], ["happy", None], DFEW, bootstrap=20)
    d = json.loads(json.dumps(s.to_dict()))
    assert d["per_class"]["fear"]["recall"] is None
    assert d["confusion"]["columns"][-1] == "invalid"
    assert d["prediction_histogram"]["invalid"] == 1
