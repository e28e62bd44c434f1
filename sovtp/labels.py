"""Label sets and the one synonym table shared by the answer parser and the evaluator.

Keeping a single table means "happiness" in a model answer and "Happiness" in a
dataset manifest normalise the same way, so metrics never depend on which side
spelled a class differently.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class LabelSet:
    """An ordered label set. ``ids`` are the dataset's official numeric ids, in order."""

    name: str
    labels: tuple[str, ...]
    ids: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        if len(set(self.labels)) != len(self.labels):
            raise ValueError(f"label set {self.name!r} has duplicate labels: {self.labels}")
        if self.ids is not None and len(self.ids) != len(self.labels):
            raise ValueError(f"label set {self.name!r} has {len(self.ids)} ids for {len(self.labels)} labels")

    def __contains__(self, label: object) -> bool:
        return label in self.labels

    def __iter__(self):
        return iter(self.labels)

    def __len__(self) -> int:
        return len(self.labels)

    def id_of(self, label: str) -> int | None:
        if self.ids is None or label not in self.labels:
            return None
        return self.ids[self.labels.index(label)]


# Official orders: DFEW (Jiang et al. 2020) 1 happy .. 7 fear, the ids of its set_N.csv
# files; MAFW (Liu et al. 2022) 11 classes. FERV39k's (Wang et al. 2022) split files name
# their labels ("Action/Sad/0010 Sad"), so its ids 0 angry .. 6 surprise (alphabetical, as
# class-folder loaders number them) matter only for manifests that others wrote with
# numbers: check which order those used (some preprocessing scripts number in DFEW's order).
DFEW = LabelSet("dfew", ("happy", "sad", "neutral", "angry", "surprise", "disgust", "fear"), (1, 2, 3, 4, 5, 6, 7))
FERV39K = LabelSet("ferv39k", ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"), (0, 1, 2, 3, 4, 5, 6))
MAFW = LabelSet(
    "mafw",
    (
        "angry",
        "disgust",
        "fear",
        "happy",
        "neutral",
        "sad",
        "surprise",
        "contempt",
        "anxiety",
        "helplessness",
        "disappointment",
    ),
    (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11),
)

BUILTIN_LABEL_SETS: dict[str, LabelSet] = {
    "dfew": DFEW,
    "dfew-7": DFEW,
    "ferv39k": FERV39K,
    "ferv39k-7": FERV39K,
    "mafw": MAFW,
    "mafw-11": MAFW,
}

# Canonical label -> spellings that mean the same class. Only true synonyms: a word
# that names a different emotion (e.g. "pain", "contempt" for a 7-class set) stays
# out, so it is reported as invalid instead of being silently mapped.
SYNONYMS: dict[str, tuple[str, ...]] = {
    "happy": ("happiness", "happily", "joy", "joyful", "glad"),
    "sad": ("sadness", "sorrow", "unhappy"),
    "neutral": ("neutrality", "calm"),
    "angry": ("anger", "mad"),
    "surprise": ("surprised", "surprising"),
    "disgust": ("disgusted", "disgusting"),
    "fear": ("fearful", "afraid", "scared"),
    "contempt": ("contemptuous",),
    "anxiety": ("anxious",),
    "helplessness": ("helpless",),
    "disappointment": ("disappointed",),
}
# Dataset codes (CREMA-D's ANG/DIS/FEA/HAP/NEU/SAD, two-letter file-name codes). They are
# read in annotation and prediction files only: in a model's answer "an" or "dis" is a
# cut-off word ("an..." of "anxiety"), not an answer, so the answer parser leaves them out.
CODES: dict[str, tuple[str, ...]] = {
    "happy": ("hap", "ha"),
    "sad": ("sa",),
    "neutral": ("ne", "neu"),
    "angry": ("an", "ang"),
    "surprise": ("su", "sur"),
    "disgust": ("di", "dis"),
    "fear": ("fe", "fea"),
}

_SPELLING_TO_CANONICAL: dict[str, str] = {}
for _canon, _spellings in SYNONYMS.items():
    _SPELLING_TO_CANONICAL[_canon] = _canon
    for _s in _spellings:
        _SPELLING_TO_CANONICAL[_s] = _canon
_CODE_TO_CANONICAL: dict[str, str] = {code: canon for canon, codes in CODES.items() for code in codes}


def _clean(word: str) -> str:
    return re.sub(r"[^a-z]", "", word.strip().lower())


def normalize_label(word: str, labels: LabelSet | tuple[str, ...] | list[str], codes: bool = False) -> str | None:
    """Map one word to a label of ``labels``, or None if it names no label of the set.

    Exact label names win (a custom set may contain any word); otherwise the shared
    synonym table is consulted: the word maps to the set's label of the same canonical
    form, whichever spelling the set uses (a custom set spelled like MAFW's own files,
    "anger, happiness, sadness", takes "angry", "happy" and "sad" too). ``codes`` also
    reads dataset codes (``CODES``), for annotation and prediction files.
    """
    names = labels.labels if isinstance(labels, LabelSet) else tuple(labels)
    lowered = {n.lower(): n for n in names}
    raw = word.strip().lower()
    if raw in lowered:
        return lowered[raw]
    cleaned = _clean(word)
    if cleaned in lowered:
        return lowered[cleaned]
    canonical = _SPELLING_TO_CANONICAL.get(cleaned) or (_CODE_TO_CANONICAL.get(cleaned) if codes else None)
    if canonical is None:
        return None
    if canonical in lowered:
        return lowered[canonical]
    same = [n for n in names if _SPELLING_TO_CANONICAL.get(_clean(n)) == canonical]
    return same[0] if len(same) == 1 else None  # two labels of one meaning: no guess


def load_label_set(spec: str | None) -> LabelSet:
    """``spec`` is a built-in name (dfew, mafw, ferv39k), a comma-separated list, or a
    file with one label per line. None means DFEW-7."""
    if spec is None or spec == "":
        return DFEW
    key = spec.strip().lower()
    if key in BUILTIN_LABEL_SETS:
        return BUILTIN_LABEL_SETS[key]
    path = Path(spec)
    if "," not in spec and path.is_file():
        words = [ln.strip() for ln in path.read_text(encoding="utf-8-sig").splitlines() if ln.strip() and not ln.startswith("#")]
        return LabelSet(path.stem, tuple(w.lower() for w in words))
    words = [w.strip().lower() for w in spec.split(",") if w.strip()]
    if len(words) < 2:
        raise ValueError(
            f"--labels {spec!r} is neither a built-in set (dfew, mafw, ferv39k), a file, nor a comma-separated list of at least two labels"
        )
    return LabelSet("custom", tuple(words))
