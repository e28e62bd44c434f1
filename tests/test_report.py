"""Reports: markdown, self-contained HTML (rendered in headless Chromium when present), JSON, manifest."""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sovtp.eval import ablation as A
from sovtp.eval.report import example_from_png, write_report

from sovtp.labels import DFEW
from tests.test_ablation_table import synthetic  # noqa: F401  (fixture)

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
]  # fmt: skip


@pytest.fixture
def report(synthetic, media):  # noqa: F811
    items, variants, preds, faces, out = synthetic
    summary, scores, records = A.summarize(items, variants, out, DFEW, variants[0], n_boot=200)
    examples = [
        example_from_png(media / n, name=n, label=lab, predictions={variants[0].name: "sad", summary["best"]: lab})
        for n, lab in [("single_face.jpg", "happy"), ("multi_face.jpg", "neutral")]
    ]
    manifest = {"versions": {"sovtp": "test"}, "labels": {"name": "dfew"}, "data": {"fingerprint": summary["data_fingerprint"]}}
    paths = write_report(out / "report", summary, scores, manifest, examples)
    return paths, summary


def test_report_files(report):
    paths, summary = report
    md = paths["markdown"].read_text()
    assert "| variant | n | WAR | UAR | macro-F1 | weighted-F1 | invalid | ΔWAR [95% CI] | ΔUAR [95% CI] | McNemar p | paired n |" in md
    assert "## By tier" in md and "## By faces" in md and "(baseline)" in md
    data = json.loads(paths["json"].read_text())
    assert [v["name"] for v in data["variants"]] == [v["name"] for v in summary["variants"]]
    assert json.loads(paths["manifest"].read_text())["labels"]["name"] == "dfew"
    html = paths["html"].read_text()
    # self-contained: no scripts, no external resources, every image inline and a real PNG
    assert "<script" not in html and not re.search(r'(src|href)="(https?:|//|file:)', html)
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', html)
    assert len(images) >= 6  # ablation chart, confusions, per-class bars, histogram, examples
    for b64 in images:
        assert base64.b64decode(b64)[:8] == b"\x89PNG\r\n\x1a\n"
    for v in summary["variants"]:
        assert v["name"] in html


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install -y chromium)")
def test_html_renders_in_headless_chromium(report, tmp_path):
    paths, summary = report
    shot = tmp_path / "report.png"
    with tempfile.TemporaryDirectory() as profile:
        base = [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}"]
        proc = subprocess.run(
            [*base, f"--screenshot={shot}", "--window-size=1280,2400", paths["html"].as_uri()], capture_output=True, text=True, timeout=120
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
        dom = subprocess.run([*base, "--dump-dom", paths["html"].as_uri()], capture_output=True, text=True, timeout=120).stdout
    assert "Results (percent, 95% CI)" in dom and summary["baseline"] in dom
    img = np.asarray(Image.open(shot).convert("RGB"))
    assert img.shape[:2] == (2400, 1280)
    # something was drawn: not a blank page (tables, heatmaps and bars give many colours)
    assert img.std() > 20 and len(np.unique(img.reshape(-1, 3)[::97], axis=0)) > 50
    keep = Path(tempfile.gettempdir()) / "sovtp-report-screenshot.png"  # for a person to look at
    shutil.copy(shot, keep)


def test_a_variant_without_scored_items_is_null_in_strict_json_and_only_the_baseline_is_highlighted(tmp_path):
    """A report-only pass over a grid whose new variant has not run yet: its metrics are
    null in summary.json (before: bare NaN, which strict JSON readers refuse). The
    baseline "template=sov" lights up its own row, not "template=sovtp" too."""
    from sovtp.eval.report import html_report

    nan = float("nan")
    metrics = {"war": 0.5, "uar": 0.5, "macro_f1": 0.5, "weighted_f1": 0.5, "invalid_rate": 0.0}
    summary = {
        "kind": "ablation", "title": "t", "labels_name": "dfew", "labels": list(DFEW.labels), "n_items": 2, "baseline": "template=sov",
        "best": "template=sov", "data_fingerprint": "x",
        "variants": [
            {"name": "template=sov", "n": 2, "metrics": metrics, "ci95": {}},
            {"name": "template=sovtp", "n": 0, "missing": 2, "metrics": dict.fromkeys(metrics, nan)},
        ],
    }  # fmt: skip
    paths = write_report(tmp_path, summary, {}, {"versions": {}, "ratio": nan})
    data = json.loads(paths["json"].read_text(), parse_constant=lambda c: pytest.fail(f"{c} in summary.json"))
    assert data["variants"][1]["metrics"]["war"] is None
    assert json.loads(paths["manifest"].read_text(), parse_constant=lambda c: pytest.fail(c))["ratio"] is None
    rows = re.findall(r'<tr class="base"><td>([^<]*)</td>', html_report(summary, {}))
    assert rows == ["template=sov"]


def test_without_matplotlib_the_report_has_its_tables_and_says_why_no_figures(tmp_path, monkeypatch):
    """`pip install sovtp` without [eval]: `eval score --out` ended in a traceback after
    writing summary.md alone (no summary.json, report.html or manifest.json)."""
    import sys

    from typer.testing import CliRunner

    from sovtp.cli import app

    monkeypatch.setitem(sys.modules, "matplotlib", None)
    preds = tmp_path / "p.csv"
    preds.write_text("gt,pred\nhappy,happy\nsad,happy\n")
    res = CliRunner().invoke(
        app, ["eval", "score", str(preds), "--gt", "gt", "--pred", "pred", "--bootstrap", "0", "--out", str(tmp_path / "r")]
    )
    assert res.exit_code == 0, res.output
    assert {p.name for p in (tmp_path / "r").iterdir()} >= {"summary.md", "summary.json", "report.html", "manifest.json"}
    page = (tmp_path / "r" / "report.html").read_text()
    assert "No figures: they are drawn with matplotlib, which is not installed" in page and "<img" not in page


def test_a_dollar_sign_in_a_name_is_text_in_the_figures(tmp_path):
    """A predictions file named "a$\\frac$.csv" ended `eval score --out` in a matplotlib
    mathtext traceback: figure titles and ticks parsed $...$ as math."""
    from typer.testing import CliRunner

    from sovtp.cli import app

    preds = tmp_path / "a$\\frac$.csv"
    preds.write_text("gt,pred\nhappy,happy\nsad,happy\n")
    res = CliRunner().invoke(
        app, ["eval", "score", str(preds), "--gt", "gt", "--pred", "pred", "--bootstrap", "0", "--out", str(tmp_path / "r")]
    )
    assert res.exit_code == 0, res.output
    assert "<img" in (tmp_path / "r" / "report.html").read_text()
