"""Reports: a markdown summary, one self-contained HTML page, a JSON summary and a run manifest.

One writer serves ``sovtp eval score`` (one variant) and ``sovtp ablate`` (many). The
HTML embeds every figure as a base64 PNG and carries its own CSS, so the single file can
be mailed, attached to a paper's supplement or opened offline. matplotlib runs on the
Agg backend (no display needed) and is imported only when a report is written.
"""

from __future__ import annotations

import base64
import contextlib
import html
import io
import json
import math
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from sovtp.eval.metrics import INVALID, METRIC_NAMES, Scores

from sovtp.results import write_json_atomic

TABLE_METRICS = ("war", "uar", "macro_f1", "weighted_f1", "invalid_rate")


# --------------------------------------------------------------------------- formatting


def pct(x: float | None, digits: int = 1) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    return f"{100 * x:.{digits}f}"


def pct_ci(x: float, ci: Sequence[float] | None) -> str:
    if not ci:
        return pct(x)
    return f"{pct(x)} [{pct(ci[0])}, {pct(ci[1])}]"


def signed(x: float | None, ci: Sequence[float] | None = None) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"

    def one(v: float) -> str:
        r = round(100 * v, 1)
        return "±0.0" if r == 0 else f"{r:+.1f}"

    text = one(x)
    if ci and not any(v is None or math.isnan(v) for v in ci):
        text += f" [{one(ci[0])}, {one(ci[1])}]"
    return text


def pval(p: float | None) -> str:
    if p is None:
        return "–"
    return "<0.001" if p < 1e-3 else f"{p:.3f}"


def variant_rows(summary: Mapping[str, Any]) -> tuple[list[str], list[list[str]]]:
    """The main table (variant x metrics, then deltas vs the baseline), as text cells."""
    header = ["variant", "n", *(METRIC_NAMES[m] for m in TABLE_METRICS)]
    has_delta = any(v.get("delta") for v in summary["variants"])
    if has_delta:
        header += ["ΔWAR [95% CI]", "ΔUAR [95% CI]", "McNemar p", "paired n"]
    rows = []
    for v in summary["variants"]:
        m, ci = v["metrics"], v.get("ci95", {})
        row = [v["name"] + (" (baseline)" if v["name"] == summary.get("baseline") and has_delta else ""), str(v["n"])]
        row += [pct_ci(m[k], ci.get(k)) if k != "invalid_rate" else pct(m[k]) for k in TABLE_METRICS]
        if has_delta:
            d = v.get("delta") or {}
            row += [
                signed(d["war"]["delta"], d["war"]["ci95"]) if "war" in d else "–",
                signed(d["uar"]["delta"], d["uar"]["ci95"]) if "uar" in d else "–",
                pval(v.get("mcnemar", {}).get("p_value")) if v.get("mcnemar") else "–",
                str(v["paired_n"]) if v.get("paired_n") is not None else "–",  # the deltas' items, when a variant is unfinished
            ]
        rows.append(row)
    return header, rows


def strata_rows(summary: Mapping[str, Any]) -> list[tuple[str, list[str], list[list[str]]]]:
    """One table per stratification (tier, number of faces): stratum x variant."""
    tables = []
    for by, strata in (summary.get("strata") or {}).items():
        header = [by, "variant", "n", "WAR", "UAR", "macro-F1", "invalid", "ΔWAR"]
        rows = []
        for stratum, entries in strata.items():
            for e in entries:
                rows.append(
                    [
                        str(stratum),
                        e["variant"],
                        str(e["n"]),
                        pct(e["war"]),
                        pct(e["uar"]),
                        pct(e["macro_f1"]),
                        pct(e["invalid_rate"]),
                        signed(e.get("delta_war")),
                    ]
                )
        tables.append((by, header, rows))
    return tables


# --------------------------------------------------------------------------- markdown


def _md_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    esc = [[c.replace("|", "\\|") for c in r] for r in [header, *rows]]
    lines = ["| " + " | ".join(esc[0]) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in esc[1:]]
    return "\n".join(lines)


def per_class_rows(s: Scores) -> tuple[list[str], list[list[str]]]:
    header = ["class", "support", "predicted", "precision", "recall", "F1"]
    rows = [[c, str(s.support[c]), str(s.histogram[c]), pct(s.precision[c]), pct(s.recall[c]), pct(s.f1[c])] for c in s.labels]
    rows.append([INVALID, "–", str(s.histogram[INVALID]), "–", "–", "–"])
    return header, rows


CONVENTIONS = (
    "WAR = accuracy; UAR = mean of per-class recalls over the classes present in the ground truth "
    "(sklearn balanced_accuracy); macro-F1 over the same classes; weighted-F1 weighted by support. "
    "Invalid answers and errors count as wrong. Intervals: 95% percentile bootstrap over items "
    "(paired for deltas); McNemar: exact two-sided binomial test on discordant items. Deltas and "
    "McNemar compare a variant with the baseline on the items both have scored (paired n), which is "
    "fewer than n while a variant is unfinished."
)


def markdown(summary: Mapping[str, Any], scores: Mapping[str, Scores]) -> str:
    parts = [f"# {summary.get('title', 'sovtp evaluation')}", ""]
    parts += [f"Label set: **{summary['labels_name']}** ({', '.join(summary['labels'])}). Items: {summary['n_items']}.", ""]
    if summary.get("baseline"):
        parts += [f"Baseline: **{summary['baseline']}**.", ""]
    header, rows = variant_rows(summary)
    parts += ["## Results (percent)", "", _md_table(header, rows), ""]
    for by, h, r in strata_rows(summary):
        parts += [f"## By {by}", "", _md_table(h, r), ""]
    focus = summary.get("baseline") or next(iter(scores), None)
    for name in dict.fromkeys([focus, summary.get("best")]):
        if name and name in scores:
            h, r = per_class_rows(scores[name])
            top, share = scores[name].collapse
            parts += [f"## Per class: {name}", "", _md_table(h, r), "", f"Most predicted answer: **{top}** ({pct(share)}% of items).", ""]
    parts += ["## Conventions", "", CONVENTIONS, ""]
    return "\n".join(parts)


# --------------------------------------------------------------------------- figures


def _png(fig) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _plt():
    try:
        import matplotlib
    except ImportError:
        raise RuntimeError(
            "the HTML report draws its figures with matplotlib, which is not installed; run: pip install 'sovtp[eval]'"
        ) from None

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


@contextlib.contextmanager
def _names_as_text() -> Iterator[None]:
    """Figure text as plain text while the report is drawn: "a$\\frac$" in a file or
    variant name was parsed as math (a traceback); the caller's own settings come back."""
    try:
        import matplotlib
    except ImportError:
        yield
        return
    with matplotlib.rc_context({"text.parse_math": False}):
        yield


def confusion_figure(s: Scores, title: str) -> str:
    """Row-normalised heatmap (recall on the diagonal) with the raw counts written in."""
    import numpy as np

    plt = _plt()
    cm = s.confusion.astype(float)
    rows = cm.sum(axis=1, keepdims=True)
    norm = np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0)
    k = len(s.labels)
    fig, ax = plt.subplots(figsize=(1.0 + 0.5 * (k + 1), 0.8 + 0.45 * k))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1, aspect="auto")
    ax.set_xticks(range(k + 1), [*s.labels, INVALID], rotation=45, ha="right")
    ax.set_yticks(range(k), [f"{c} (n={s.support[c]})" for c in s.labels])
    ax.set_xlabel("predicted")
    ax.set_ylabel("ground truth")
    for i in range(k):
        for j in range(k + 1):
            if cm[i, j]:
                ax.text(j, i, int(cm[i, j]), ha="center", va="center", fontsize=8, color="white" if norm[i, j] > 0.5 else "black")
    ax.set_title(title, fontsize=10)
    fig.colorbar(im, ax=ax, fraction=0.04, label="share of row")
    return _png(fig)


def per_class_figure(scores: Mapping[str, Scores], metric: str = "recall") -> str:
    """Grouped bars: per-class recall (or F1) of each variant shown."""
    import numpy as np

    plt = _plt()
    names = list(scores)
    labels = next(iter(scores.values())).labels
    k, v = len(labels), len(names)
    width = 0.8 / v
    fig, ax = plt.subplots(figsize=(max(5.5, 0.8 * k + 0.25 * k * v / 2), 3.2))
    for i, name in enumerate(names):
        vals = [getattr(scores[name], metric)[c] for c in labels]
        vals = [np.nan if x is None else x for x in vals]
        ax.bar(np.arange(k) + (i - (v - 1) / 2) * width, vals, width, label=name)
    ax.set_xticks(range(k), labels, rotation=30, ha="right")
    ax.set_ylim(0, 1)
    ax.set_ylabel(metric)
    ax.set_title(f"per-class {metric}", fontsize=10)
    if v > 1:
        ax.legend(fontsize=7, ncol=2 if v > 4 else 1, loc="upper right")
    return _png(fig)


def histogram_figure(scores: Mapping[str, Scores]) -> str:
    """Share of answers per label (+ invalid): a tall bar is a model collapsing onto one class."""
    import numpy as np

    plt = _plt()
    names = list(scores)
    cats = [*next(iter(scores.values())).labels, INVALID]
    width = 0.8 / len(names)
    fig, ax = plt.subplots(figsize=(max(6.0, 0.8 * len(cats)), 3.2))
    for i, name in enumerate(names):
        s = scores[name]
        ax.bar(np.arange(len(cats)) + (i - (len(names) - 1) / 2) * width, [s.histogram[c] / s.n for c in cats], width, label=name)
    truth = next(iter(scores.values()))
    ax.plot(range(len(cats) - 1), [truth.support[c] / truth.n for c in cats[:-1]], "k_", markersize=18, label="ground truth")
    ax.set_xticks(range(len(cats)), cats, rotation=30, ha="right")
    ax.set_ylabel("share of answers")
    ax.set_title("prediction histogram", fontsize=10)
    ax.legend(fontsize=7)
    return _png(fig)


def ablation_figure(summary: Mapping[str, Any]) -> str:
    """WAR and UAR of every variant with their bootstrap intervals."""
    import numpy as np

    plt = _plt()
    vs = summary["variants"]
    y = np.arange(len(vs))
    fig, ax = plt.subplots(figsize=(7.5, 0.9 + 0.42 * len(vs)))
    for off, m, color in ((-0.18, "war", "#4c72b0"), (0.18, "uar", "#dd8452")):
        vals = np.array([v["metrics"][m] for v in vs])
        cis = [v.get("ci95", {}).get(m) for v in vs]
        err = np.array([[val - c[0], c[1] - val] if c else [0, 0] for val, c in zip(vals, cis, strict=False)]).T
        ax.barh(y + off, vals, 0.36, xerr=err, color=color, label=METRIC_NAMES[m], capsize=2)
    ax.set_yticks(y, [v["name"] for v in vs], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("score (95% bootstrap CI)")
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title("variants", fontsize=10)
    return _png(fig)


# --------------------------------------------------------------------------- HTML

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;max-width:1200px;color:#222;padding:0 16px}
h1{font-size:1.5em;margin-bottom:4px} h2{font-size:1.15em;margin-top:28px;border-bottom:1px solid #ddd;padding-bottom:4px}
table{border-collapse:collapse;font-size:13px;margin:8px 0} th,td{border:1px solid #ccc;padding:4px 8px;text-align:right}
th{background:#f3f4f6} td:first-child,th:first-child{text-align:left} table.strata td:nth-child(2),table.strata th:nth-child(2){text-align:left} tr.base td{background:#fff8e1}
.meta{color:#555;font-size:13px} .figs{display:flex;flex-wrap:wrap;gap:12px;align-items:flex-start}
.figs figure{margin:0} figcaption{font-size:12px;color:#555} img{max-width:100%}
.ex{display:flex;flex-wrap:wrap;gap:12px} .ex figure{width:360px;border:1px solid #ddd;padding:6px;margin:0}
.ok{color:#1a7f37;font-weight:600} .bad{color:#c62828;font-weight:600} code{font-size:12px}
"""


def _html_table(header: Sequence[str], rows: Sequence[Sequence[str]], highlight: str | None = None, cls: str = "") -> str:
    out = [f'<table class="{cls}"><thead><tr>', *(f"<th>{html.escape(h)}</th>" for h in header), "</tr></thead><tbody>"]
    for r in rows:
        # the row's name, or the name and a " (baseline)" / " *" tag: "visual=none,template=sov"
        # must not light up "visual=none,template=sovtp" too
        cls = ' class="base"' if highlight and (r[0] == highlight or r[0].startswith(highlight + " ")) else ""
        out.append(f"<tr{cls}>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def _img(b64: str, caption: str, alt: str) -> str:
    return (
        f'<figure><img alt="{html.escape(alt)}" src="data:image/png;base64,{b64}"><figcaption>{html.escape(caption)}</figcaption></figure>'
    )


def html_report(
    summary: Mapping[str, Any], scores: Mapping[str, Scores], examples: Sequence[Mapping[str, Any]] = (), max_confusions: int = 4
) -> str:
    """The self-contained page (inline CSS, base64 figures, no scripts, no links out)."""
    title = summary.get("title", "sovtp evaluation")
    body = [f"<h1>{html.escape(title)}</h1>"]
    body.append(
        f'<p class="meta">Label set <b>{html.escape(summary["labels_name"])}</b> ({html.escape(", ".join(summary["labels"]))}) · '
        f"{summary['n_items']} items · data fingerprint <code>{html.escape(str(summary.get('data_fingerprint', '')))}</code>"
        + (f" · baseline <b>{html.escape(summary['baseline'])}</b>" if summary.get("baseline") else "")
        + "</p>"
    )
    header, rows = variant_rows(summary)
    body += ["<h2>Results (percent, 95% CI)</h2>", _html_table(header, rows, highlight=summary.get("baseline"))]
    import importlib.util

    figures = importlib.util.find_spec("matplotlib") is not None  # without it: the tables, and a note
    if not figures:
        body.append(
            "<p class='meta'>No figures: they are drawn with matplotlib, which is not installed (pip install 'sovtp[eval]'); the tables hold every number.</p>"
        )
    if len(summary["variants"]) > 1 and figures:
        body.append(
            '<div class="figs">'
            + _img(ablation_figure(summary), "WAR and UAR per variant with bootstrap intervals", "ablation chart")
            + "</div>"
        )
    for by, h, r in strata_rows(summary):
        body += [f"<h2>By {html.escape(by)}</h2>", _html_table(h, r, cls="strata")]
    # confusion matrices: baseline and best first, then the rest up to max_confusions;
    # a variant without scored items (none finished, or none made with these settings) has none
    order = [n for n in dict.fromkeys([n for n in (summary.get("baseline"), summary.get("best")) if n] + list(scores)) if n in scores]
    order = order[:max_confusions]
    if not order:
        body.append("<p class='meta'>No variant has scored items yet: no confusion matrices or per-class figures.</p>")
    elif not figures:
        h, r = per_class_rows(scores[order[0]])
        body += ["<h2>Per class</h2>", f"<p class='meta'>{html.escape(order[0])}</p>", _html_table(h, r)]
    else:
        body.append("<h2>Confusion matrices</h2>")
        body.append(
            '<div class="figs">'
            + "".join(
                _img(confusion_figure(scores[n], n), f"{n}: rows ground truth, colour = share of row", f"confusion matrix {n}")
                for n in order
            )
            + "</div>"
        )
        shown = {n: scores[n] for n in order}
        body.append("<h2>Per class</h2>")
        body.append(
            '<div class="figs">'
            + _img(per_class_figure(shown, "recall"), "per-class recall (absent classes left blank)", "per-class recall")
            + _img(per_class_figure(shown, "f1"), "per-class F1", "per-class F1")
            + _img(histogram_figure(shown), "answers per label; black ticks: ground-truth shares", "prediction histogram")
            + "</div>"
        )
        h, r = per_class_rows(scores[order[0]])
        body += [f"<p class='meta'>{html.escape(order[0])}</p>", _html_table(h, r)]
    if examples:
        body.append("<h2>Examples</h2>")
        if examples[0].get("frames_of"):
            body.append(
                f"<p class='meta'>Frames as the variant <b>{html.escape(str(examples[0]['frames_of']))}</b> sends them to the model.</p>"
            )
        body.append("<div class='ex'>")
        for ex in examples:
            verdict = "ok" if ex.get("prediction") == ex.get("label") else "bad"
            caption = (
                f"<b>{html.escape(str(ex.get('name', '')))}</b><br>ground truth <b>{html.escape(str(ex.get('label')))}</b> · "
                + "; ".join(
                    f"{html.escape(k)}: <span class='{('ok' if v == ex.get('label') else 'bad')}'>{html.escape(str(v))}</span>"
                    for k, v in (ex.get("predictions") or {}).items()
                )
            )
            if not ex.get("predictions"):
                caption += f"predicted <span class='{verdict}'>{html.escape(str(ex.get('prediction')))}</span>"
            body.append(
                f'<figure><img alt="annotated frame" src="data:image/png;base64,{ex["png_b64"]}"><figcaption>{caption}</figcaption></figure>'
            )
        body.append("</div>")
    body += ["<h2>Conventions</h2>", f"<p class='meta'>{html.escape(CONVENTIONS)}</p>"]
    return f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title><style>{_CSS}</style></head><body>{"".join(body)}</body></html>\n'


# --------------------------------------------------------------------------- writer


def example_from_png(path: Path, max_side: int = 480, **fields: Any) -> dict[str, Any] | None:
    """An example card: the PNG downscaled (keeps the HTML small) + its fields."""
    try:
        from PIL import Image

        with Image.open(path) as im:
            im = im.convert("RGB")
            im.thumbnail((max_side, max_side))
            buf = io.BytesIO()
            im.save(buf, format="PNG", optimize=True)
    except (OSError, ValueError):
        return None
    return {**fields, "png_b64": base64.b64encode(buf.getvalue()).decode("ascii")}


def write_report(
    out_dir: Path | str,
    summary: Mapping[str, Any],
    scores: Mapping[str, Scores],
    manifest: Mapping[str, Any],
    examples: Sequence[Mapping[str, Any]] = (),
) -> dict[str, Path]:
    """Write summary.md, report.html, summary.json and manifest.json into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"markdown": out / "summary.md", "html": out / "report.html", "json": out / "summary.json", "manifest": out / "manifest.json"}
    _write_text(paths["markdown"], markdown(summary, scores))
    with _names_as_text():
        _write_text(paths["html"], html_report(summary, scores, examples))
    write_json_atomic(paths["json"], _strict(json.loads(json.dumps(summary, default=_jsonable))))
    write_json_atomic(paths["manifest"], _strict(json.loads(json.dumps(manifest, default=_jsonable))))
    return paths


def _strict(x: Any) -> Any:
    """``x`` with every NaN or infinity as None: summary.json must parse in strict JSON
    readers (JavaScript, jq, pandas with a strict engine), and a variant with no scored
    item has no metric, not the bare token NaN."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _strict(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_strict(v) for v in x]
    return x


def _jsonable(x: Any) -> Any:
    if hasattr(x, "tolist"):
        return x.tolist()
    if hasattr(x, "to_dict"):
        return x.to_dict()
    return str(x)


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


# --------------------------------------------------------------------------- manifest


def versions(extra: Sequence[str] = ()) -> dict[str, str]:
    """Installed versions of the packages that can change a number in the report."""
    import sys
    from importlib.metadata import PackageNotFoundError, version

    found = {"python": sys.version.split()[0]}
    for pkg in ("sovtp", "numpy", "scikit-learn", "matplotlib", "transformers", "torch", "vllm", "mediapipe", "openai", *extra):
        try:
            found[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    return found


def model_fingerprint(model: str | None) -> dict[str, Any]:
    """For a local checkpoint folder, a hash of its config and weight-file names/sizes
    (so "the same model id" that was re-trained is told apart); for a hub id, the id."""
    import hashlib

    if not model:
        return {"model": None}
    p = Path(model)
    if not p.is_dir():
        return {"model": model}
    h = hashlib.sha256()
    for f in sorted(p.rglob("*")):
        if f.is_file():
            h.update(f"{f.relative_to(p)}:{f.stat().st_size}".encode())
            if f.suffix in (".json", ".txt", ".jinja") and f.stat().st_size < 5_000_000:
                h.update(f.read_bytes())
    return {"model": str(p), "checkpoint_sha256": h.hexdigest()[:16]}
