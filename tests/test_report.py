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
    assert "| variant | n | WAR | UAR | macro-F1 | weighted-F1 | invalid | ΔWAR [95% CI] | ΔUAR [95% CI] | McNemar p |" in md
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
