"""What the model will see, written to disk for a person: the annotated images as PNGs,
the rendered prompt as text, and optionally one self-contained HTML page (images as
data URIs, the text, a cue table) that opens offline in any browser.

Everything that comes from inputs (file names, labels, cue text) is HTML-escaped, and
the page loads nothing from the network.
"""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path

import numpy as np
from PIL import Image

from sovtp.types import Cues, ImagePart, Prompt, TextPart


def png_bytes(image: np.ndarray) -> bytes:
    """Deterministic PNG (fixed compression, no metadata): same image, same bytes."""
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image), mode="RGB").save(buf, format="PNG", compress_level=6)
    return buf.getvalue()


def prompt_as_text(prompt: Prompt) -> str:
    """The prompt as one text, each image shown as ``[image N: caption]`` where it goes."""
    out: list[str] = []
    if prompt.system:
        out += [f"[system] {prompt.system}", ""]
    n = 0
    for part in prompt.parts:
        if isinstance(part, TextPart):
            out += [part.text, ""]
        else:
            n += 1
            out.append(f"[image {n}: {part.caption}]" if part.caption else f"[image {n}]")
    while out and out[-1] == "":
        out.pop()
    return "\n".join(out) + "\n"


def _cue_rows(cues: Cues) -> list[list[str]]:
    rows = []
    for track in sorted(cues.faces, key=lambda t: t.id):
        obs = track.observations
        n = max(1, len(obs))
        box = [round(sum(getattr(o.box, k) for o in obs) / n) for k in ("x1", "y1", "x2", "y2")]
        fa = cues.aus.get(track.id)
        aus = ", ".join(f"AU{a.number} {a.intensity:.2f}" for a in (fa.top(5, 0.0) if fa else []))
        provider = ", ".join(sorted({a.provider for a in fa.summary})) if fa else ""
        pose = cues.poses.get(track.id)
        expr = cues.expressions.get(track.id)
        motion = cues.scene.person_motion.get(track.id) if cues.scene else None
        rows.append(
            [
                str(track.id),
                "yes" if track.id == cues.target_id else "",
                str(len(obs)),
                str(box),
                "yes" if any(o.landmarks for o in obs) else "",
                f"{aus} ({provider})" if aus else "",
                "; ".join(pose.posture) if pose else "",
                f"{expr.label} {max(expr.scores.values(), default=0.0):.2f} (estimate, {expr.provider})" if expr else "",
                "" if motion is None else f"{motion:.3f}",
            ]
        )
    return rows


def _table(head: list[str], rows: list[list[str]]) -> str:
    th = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"


_CSS = """
body{font-family:sans-serif;margin:16px;background:#fafafa;color:#111;max-width:1400px}
h1{font-size:20px;margin:0 0 4px} h2{font-size:16px;margin:20px 0 6px}
.meta{color:#555;font-size:13px}
.gallery{display:flex;flex-wrap:wrap;gap:8px;margin:8px 0}
figure{margin:0;background:#fff;border:1px solid #ddd;padding:4px}
figure img{display:block;max-width:640px;max-height:480px;height:auto;width:auto}
figcaption{font-size:12px;color:#444;margin-top:2px}
pre{white-space:pre-wrap;background:#fff;border:1px solid #ddd;padding:8px;font-size:13px}
table{border-collapse:collapse;font-size:13px;background:#fff}
td,th{border:1px solid #ccc;padding:3px 6px;text-align:left;vertical-align:top}
"""


def preview_html(name: str, prompt: Prompt, cues: Cues) -> str:
    """One self-contained page: images inline where the prompt puts them, the text, cues."""
    parts_html: list[str] = []
    gallery: list[str] = []
    n = 0

    def flush() -> None:
        if gallery:
            parts_html.append('<div class="gallery">' + "".join(gallery) + "</div>")
            gallery.clear()

    for part in prompt.parts:
        if isinstance(part, ImagePart):
            n += 1
            data = base64.b64encode(png_bytes(part.image)).decode("ascii")
            cap = html.escape(f"image {n}" + (f": {part.caption}" if part.caption else ""))
            gallery.append(f'<figure><img alt="{cap}" src="data:image/png;base64,{data}"><figcaption>{cap}</figcaption></figure>')
        else:
            flush()
            parts_html.append(f"<pre>{html.escape(part.text)}</pre>")
    flush()
    head = ["face", "target", "frames", "mean box", "landmarks", "AUs", "posture", "expression", "motion"]
    scene = cues.scene
    scene_rows = []
    if scene is not None:
        for key in ("num_people", "motion_energy", "brightness", "contrast"):
            value = getattr(scene, key)
            scene_rows.append([key, "" if value is None else str(value)])
    provenance = [[k, "ran", v] for k, v in sorted(cues.ran.items())] + [[k, "skipped", v] for k, v in sorted(cues.skipped.items())]
    schema = json.dumps(prompt.answer_schema, indent=1) if prompt.answer_schema else "(label only)"
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>sovtp prompt: {html.escape(name)}</title><style>{_CSS}</style></head><body>"
        f"<h1>{html.escape(name)}</h1>"
        f'<div class="meta">template {html.escape(prompt.template_name)} · sha256 {html.escape(prompt.template_hash[:16])} · '
        f"{n} image(s) · labels: {html.escape(', '.join(prompt.labels))}</div>"
        + (f"<h2>System</h2><pre>{html.escape(prompt.system)}</pre>" if prompt.system else "")
        + "<h2>Prompt, in the order the model receives it</h2>"
        + "".join(parts_html)
        + "<h2>Cues</h2>"
        + (_table(head, _cue_rows(cues)) if cues.faces else "<p>No face was found.</p>")
        + ("<h2>Scene measurements</h2>" + _table(["measurement", "value"], scene_rows) if scene_rows else "")
        + ("<h2>Extractors</h2>" + _table(["extractor", "status", "version / reason"], provenance) if provenance else "")
        + f"<h2>Answer schema</h2><pre>{html.escape(schema)}</pre>"
        + "</body></html>\n"
    )


def write_preview(out_dir: Path, name: str, prompt: Prompt, cues: Cues, html: bool = False) -> list[Path]:
    """Write ``out_dir/name/``: image_01.png.., prompt.txt, answer_schema.json (when
    the template asks for JSON) and, with ``html``, preview.html. Returns the paths.
    ``name`` must already be file-system safe (``sovtp.inputs.safe_name``)."""
    if not name or "/" in name or "\\" in name or name in (".", ".."):
        raise ValueError(f"preview name {name!r} is not a plain file name; pass sovtp.inputs.safe_name(item)")
    folder = Path(out_dir) / name
    folder.mkdir(parents=True, exist_ok=True)
    # A preview of other settings may be there (more frames, a JSON template, --html):
    # remove the files this function writes, so the folder shows this prompt only.
    # Nothing else in the folder is touched.
    for old in [*folder.glob("image_[0-9][0-9].png"), *(folder / f for f in ("prompt.txt", "answer_schema.json", "preview.html"))]:
        if old.is_file() and not old.is_symlink():
            old.unlink()
    written: list[Path] = []
    for i, part in enumerate(prompt.images, start=1):
        p = folder / f"image_{i:02d}.png"
        p.write_bytes(png_bytes(part.image))
        written.append(p)
    p = folder / "prompt.txt"
    p.write_text(prompt_as_text(prompt), encoding="utf-8")
    written.append(p)
    if prompt.answer_schema:
        p = folder / "answer_schema.json"
        p.write_text(json.dumps(prompt.answer_schema, indent=2) + "\n", encoding="utf-8")
        written.append(p)
    if html:
        p = folder / "preview.html"
        p.write_text(preview_html(name, prompt, cues), encoding="utf-8")
        written.append(p)
    return written
