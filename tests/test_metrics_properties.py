"""Property tests: any labels, any predictions (in set, outside it, missing) -> sklearn's numbers."""

from __future__ import annotations

import warnings

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score, recall_score  # noqa: E402
from sovtp.eval import metrics as M  # noqa: E402

LABELS = ("happy", "sad", "neutral", "angry", "surprise")
PRED = st.one_of(st.sampled_from(LABELS), st.none(), st.just("pain"))


@st.composite
def pairs(draw):
    n = draw(st.integers(1, 60))
    # ground truth from a random subset of the classes: some classes never present
    classes = draw(st.lists(st.sampled_from(LABELS), min_size=1, max_size=len(LABELS), unique=True))
    y_true = draw(st.lists(st.sampled_from(classes), min_size=n, max_size=n))
    y_pred = draw(st.lists(PRED, min_size=n, max_size=n))
    return y_true, y_pred


@settings(max_examples=300, deadline=None)
@given(pairs())
def test_matches_sklearn(data):
    y_true, y_pred = data
    yp = [p if p in LABELS else "__invalid__" for p in y_pred]
    present = sorted(set(y_true))
    s = M.score(y_true, y_pred, LABELS)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert abs(s.war - accuracy_score(y_true, yp)) < 1e-9
        assert abs(s.uar - balanced_accuracy_score(y_true, yp)) < 1e-9
        assert abs(s.uar - recall_score(y_true, yp, labels=present, average="macro", zero_division=0)) < 1e-9
        assert abs(s.macro_f1 - f1_score(y_true, yp, labels=present, average="macro", zero_division=0)) < 1e-9
        assert abs(s.weighted_f1 - f1_score(y_true, yp, labels=list(LABELS), average="weighted", zero_division=0)) < 1e-9
    assert 0.0 <= s.uar <= 1.0 and 0.0 <= s.invalid_rate <= 1.0
