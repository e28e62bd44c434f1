"""`sovtp eval score` on predictions files: ranked lists, synonyms, sovtp results files."""

from __future__ import annotations

import csv
import json
import random
import subprocess
import sys
from collections import Counter

import pytest
from sovtp.eval.score import top1
from typer.testing import CliRunner

from sovtp.cli import app
from sovtp.labels import DFEW

runner = CliRunner()


def _independent(y_true, y_pred, labels):
    """WAR, UAR, weighted-F1 by hand, straight from the definitions (no sovtp, no sklearn)."""
    n = len(y_true)
    war = sum(t == p for t, p in zip(y_true, y_pred, strict=False)) / n
    present = [c for c in labels if c in y_true]
    recalls, f1w = [], 0.0
    for c in labels:
        tp = sum(t == c and p == c for t, p in zip(y_true, y_pred, strict=False))
        sup = sum(t == c for t in y_true)
        npred = sum(p == c for p in y_pred)
        if sup:
            recalls.append(tp / sup)
        prec = tp / npred if npred else 0.0
        rec = tp / sup if sup else 0.0
        f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
        f1w += f1 * sup / n
    assert len(recalls) == len(present)
    return war, sum(recalls) / len(recalls), f1w


def _ranked_predictions(path, n=120, seed=0):
    rng = random.Random(seed)
    labels = list(DFEW.labels)
    spellings = {"happy": "Happiness", "angry": "anger", "sad": "SAD", "surprise": "surprised", "fear": "fearful"}
    rows, y_true, y_top = [], [], []
    for i in range(n):
        t = rng.choice(labels[:-1])  # "fear" never present: excluded from UAR
        ranked = rng.sample(labels, 3)
        if rng.random() < 0.5:
            ranked = [t] + [x for x in ranked if x != t][:2]
        shown = [spellings.get(x, x) if rng.random() < 0.5 else x for x in ranked]
        cell = ", ".join(shown)
        top = ranked[0]
        if i % 17 == 0:
            cell, top = "I am not sure, maybe pain", None  # invalid answer
        rows.append({"video": f"clip_{i:03d}.mp4", "truth": t.upper() if i % 5 == 0 else t, "ranked": cell})
        y_true.append(t)
        y_top.append(top)
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["video", "truth", "ranked"])
        w.writeheader()
        w.writerows(rows)
    return y_true, y_top


def test_top1_of_ranked_lists():
    assert top1("Happiness, sad, fear", DFEW) == "happy"
    assert top1(["anger", "sad"], DFEW) == "angry"
    assert top1('["sad", "happy"]', DFEW) == "sad"
    assert top1({"happy": 0.2, "fear": 0.7}, DFEW) == "fear"
    assert top1("", DFEW) is None and top1(None, DFEW) is None and top1("pain, happy", DFEW) is None


def test_score_ranked_csv_matches_independent_computation(tmp_path):
    preds = tmp_path / "preds.csv"
    y_true, y_top = _ranked_predictions(preds)
    war, uar, wf1 = _independent(y_true, y_top, DFEW.labels)
    res = runner.invoke(
        app,
        [
            "eval",
            "score",
            str(preds),
            "--gt",
            "truth",
            "--pred",
            "ranked",
            "--labels",
            "dfew",
            "--out",
            str(tmp_path / "rep"),
            "--bootstrap",
            "200",
        ],
    )
    assert res.exit_code == 0, res.output
    summary = json.loads((tmp_path / "rep" / "summary.json").read_text())
    m = summary["variants"][0]["metrics"]
    assert m["war"] == pytest.approx(war, abs=1e-12)
    assert m["uar"] == pytest.approx(uar, abs=1e-12)
    assert m["weighted_f1"] == pytest.approx(wf1, abs=1e-12)
    assert m["invalid_rate"] == pytest.approx(sum(p is None for p in y_top) / len(y_top))
    assert summary["scores"]["per_class"]["fear"]["recall"] is None
    # the printed table carries the same numbers
    assert f"{100 * war:.1f}" in res.output and f"{100 * uar:.1f}" in res.output
    for name in ("summary.md", "report.html", "manifest.json"):
        assert (tmp_path / "rep" / name).stat().st_size > 0
    manifest = json.loads((tmp_path / "rep" / "manifest.json").read_text())
    assert manifest["labels"]["name"] == "dfew" and manifest["seeds"]["bootstrap"] == 0
    html = (tmp_path / "rep" / "report.html").read_text()
    assert html.count("data:image/png;base64,") >= 3 and "http://" not in html and "https://" not in html


def test_score_sovtp_results_file_needs_no_columns(tmp_path):
    from sovtp.types import Result

    recs = [
        Result(path="a.mp4", status="ok", label="happy", run_key="1", meta={"label": "happy"}),
        Result(path="b.mp4", status="ok", label="sad", run_key="2", meta={"label": "happy"}),
        Result(path="c.mp4", status="invalid", raw_answer="contempt", run_key="3", meta={"label": "sad"}),
        Result(path="d.mp4", status="error", error="x", run_key="4", meta={"label": "sad"}),
    ]
    f = tmp_path / "results.jsonl"
    f.write_text("".join(r.model_dump_json() + "\n" for r in recs))
    res = runner.invoke(app, ["eval", "score", str(f), "--bootstrap", "0", "--out", str(tmp_path / "r")])
    assert res.exit_code == 0, res.output
    m = json.loads((tmp_path / "r" / "summary.json").read_text())["variants"][0]["metrics"]
    assert m["war"] == 0.25 and m["uar"] == 0.25 and m["invalid_rate"] == 0.5


def test_score_errors_are_one_sentence(tmp_path):
    f = tmp_path / "p.csv"
    f.write_text("truth,pred\nhappy,sad\npain,happy\n")
    res = runner.invoke(app, ["eval", "score", str(f), "--gt", "truth", "--pred", "pred"])
    assert res.exit_code == 1 and "p.csv, row 3: ground-truth label 'pain'" in res.output
    res = runner.invoke(app, ["eval", "score", str(f)])
    assert res.exit_code == 1 and "--gt and --pred" in res.output
    res = runner.invoke(app, ["eval", "score", str(f), "--gt", "nope", "--pred", "pred"])
    assert res.exit_code == 1 and "no column 'nope'" in res.output


def test_sovtp_command_line_entry(tmp_path):
    """The installed console script, as a user runs it."""
    preds = tmp_path / "p.jsonl"
    preds.write_text(
        "".join(json.dumps({"gt": g, "top": p}) + "\n" for g, p in [("happy", ["happy", "sad"]), ("sad", "sad,happy"), ("sad", "happy")])
    )
    proc = subprocess.run(
        [sys.executable, "-c", "from sovtp.cli import app; app()", "eval", "score", str(preds), "--gt", "gt", "--pred", "top", "--bootstrap", "0"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "66.7" in proc.stdout and "75.0" in proc.stdout  # WAR 2/3, UAR (1 + 1/2)/2
    assert Counter(proc.stdout.split())["happy"] >= 1


def test_a_results_file_rerun_with_other_settings_scores_each_input_once(tmp_path):
    """`sovtp run` appends: a rerun into the same file with another temperature adds a
    second record per clip beside the first, and a missing clip is reported by each
    run. `eval score` scores each input once, by its latest record, and says so (before,
    n was the number of lines: 5 for 2 clips)."""
    from sovtp.types import Result

    first = [
        Result(path="a.mp4", status="ok", label="sad", content_hash="ha", run_key="a-t0", meta={"label": "happy"}),
        Result(path="b.mp4", status="ok", label="sad", content_hash="hb", run_key="b-t0", meta={"label": "sad"}),
        Result(path="gone.mp4", status="error", error="missing", run_key="gone", meta={"label": "sad", "error_kind": "input"}),
    ]
    second = [
        Result(path="a.mp4", status="ok", label="happy", content_hash="ha", run_key="a-t7", meta={"label": "happy"}),
        Result(path="gone.mp4", status="error", error="missing", run_key="gone", meta={"label": "sad", "error_kind": "input"}),
    ]
    f = tmp_path / "results.jsonl"
    f.write_text("".join(r.model_dump_json() + "\n" for r in first + second))
    res = runner.invoke(app, ["eval", "score", str(f), "--bootstrap", "0", "--out", str(tmp_path / "r")])
    assert res.exit_code == 0, res.output
    row = json.loads((tmp_path / "r" / "summary.json").read_text())["variants"][0]
    assert row["n"] == 3 and row["metrics"]["war"] == pytest.approx(2 / 3)  # a (latest: happy) and b right, gone wrong
    assert "holds 1 older record(s)" in " ".join(res.output.split())


def test_predictions_given_as_official_ids_or_in_a_sets_own_spelling_are_scored(tmp_path):
    """DFEW-style numeric predictions (1..7) score like their names, as numeric ground
    truth already did; a custom set spelled with MAFW's nouns takes the adjectives a model
    answers with (before: 100% invalid, WAR 0, without a word)."""
    cases = [
        ("gt,pred\n1,1\n2,2\n5,5\n3,1\n", "dfew"),  # DFEW ids: happy, sad, surprise; one neutral read as happy
        ("gt,pred\nhappiness,happy\nsadness,sad\nanger,angry\nanger,happy\n", "anger,happiness,sadness"),
    ]
    for i, (rows, labels) in enumerate(cases):
        f = tmp_path / f"p{i}.csv"
        f.write_text(rows)
        args = [
            "eval",
            "score",
            str(f),
            "--gt",
            "gt",
            "--pred",
            "pred",
            "--labels",
            labels,
            "--bootstrap",
            "0",
            "--out",
            str(tmp_path / f"r{i}"),
        ]
        res = runner.invoke(app, args)
        assert res.exit_code == 0, res.output
        m = json.loads((tmp_path / f"r{i}" / "summary.json").read_text())["variants"][0]["metrics"]
        assert m["war"] == pytest.approx(0.75) and m["invalid_rate"] == 0, labels


def test_a_label_file_saved_with_a_byte_order_mark_keeps_its_first_label(tmp_path):
    from sovtp.labels import load_label_set, normalize_label

    f = tmp_path / "labels.txt"
    f.write_bytes("\ufeffhappy\r\nsad\r\nneutral\r\n".encode())
    labels = load_label_set(str(f))
    assert labels.labels == ("happy", "sad", "neutral") and normalize_label("Happy", labels) == "happy"
    assert normalize_label("angry", ("anger", "mad")) is None  # two labels of one meaning: no guess


def test_a_bad_row_is_named_by_its_line_in_the_file(tmp_path):
    """Blank lines and quoted line breaks used to shift "row N" away from the line to fix."""
    f = tmp_path / "p.jsonl"
    f.write_text('{"gt": "happy", "p": "happy"}\n\n{"gt": "pain", "p": "sad"}\n')
    res = runner.invoke(app, ["eval", "score", str(f), "--gt", "gt", "--pred", "p"])
    assert res.exit_code == 1 and "p.jsonl, row 3: ground-truth label 'pain'" in res.output
    c = tmp_path / "p.csv"
    c.write_text('gt,p,note\nhappy,happy,"two\nlines"\n\npain,sad,x\npain,sad,"and\nmore"\n')
    res = runner.invoke(app, ["eval", "score", str(c), "--gt", "gt", "--pred", "p"])
    assert res.exit_code == 1 and "p.csv, row 5: ground-truth label 'pain'" in res.output
    c.write_text('gt,p,note\nhappy,happy,x\npain,sad,"a row over\ntwo lines"\n')
    res = runner.invoke(app, ["eval", "score", str(c), "--gt", "gt", "--pred", "p"])
    assert res.exit_code == 1 and "p.csv, row 3: ground-truth label 'pain'" in res.output  # where the row starts
