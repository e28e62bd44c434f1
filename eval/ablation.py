"""Prompt ablation: every combination of a grid of settings, run on the same items,
compared against a named baseline with paired statistics.

Layout of ``DIR``::

    DIR/plan.json                  the dataset options, the grid, the variants and their settings
    DIR/results/<variant>.jsonl    one results file per variant (resumable)
    DIR/runs.jsonl                 one line per variant per invocation (skipped, ran, cue cache)
    DIR/report/                    summary.md, report.html, summary.json, manifest.json

Why it is cheap: all variants share the extractor settings, so the cue cache (keyed on
the clip's content hash, the sampling and the extractor) makes every video's cues
computed once and reused by all variants; the response cache answers any prompt seen
before; the model and the extractor models load once for the whole grid. Why it
survives interruptions: each variant's results file is the pipeline's resumable JSONL,
so rerunning the same command completes only what is missing.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from sovtp.inputs import InputItem
from sovtp.labels import LabelSet
from sovtp.types import Result

# grid axis -> RunConfig field
AXES: dict[str, str] = {
    "visual": "visual",
    "cues": "include_cues",
    "template": "template",
    "layout": "layout",
    "frames": "num_frames",
    "sampling": "sampling",
    "target": "target",
    "structured": "structured",
    "privacy": "privacy",
    "model": "model",
    "per_face": "per_face",
    "aus": "extractors",  # which AU provider: see with_au_provider
}
# aus= grid values -> the extractor plugin that provides the AUs
AU_PROVIDERS: dict[str, str] = {"geometric": "aus", "blendshapes": "blendshapes", "pyfeat": "pyfeat"}
FACE_BINS = ("0", "1", "2-3", "4+")


class AblationError(ValueError):
    """A grid or baseline that cannot be run as given; the message names the fix."""


def parse_cues(value: str) -> frozenset[str] | None:
    """``all`` -> None (every cue), ``none`` -> nothing, ``au+pose`` -> {aus, pose}."""
    from sovtp.cuetext import parse_cue_selection

    try:
        return parse_cue_selection(value)
    except ValueError as exc:
        raise AblationError(f"{exc} (in cues={value})") from None


def parse_grid(specs: Sequence[str]) -> dict[str, list[str]]:
    """``["visual=none,numbered", "cues=none,au"]`` -> {"visual": [...], "cues": [...]}."""
    grid: dict[str, list[str]] = {}
    for spec in specs:
        if "=" not in spec:
            raise AblationError(f"--grid {spec!r} needs the form axis=value1,value2 (axes: {', '.join(AXES)})")
        axis, _, values = spec.partition("=")
        axis = axis.strip().lower()
        if axis not in AXES:
            raise AblationError(f"--grid axis {axis!r} is not one of {', '.join(AXES)}")
        vals = [v.strip() for v in values.split(",") if v.strip()]
        if axis == "aus":  # names of AU sources: one spelling, so --baseline aus=geometric finds it
            vals = [v.lower() for v in vals]
        if not vals:
            raise AblationError(f"--grid {axis}= lists no values; give at least one")
        if len(set(vals)) != len(vals):
            raise AblationError(f"--grid {axis}= lists a value twice ({values})")
        grid.setdefault(axis, [])
        grid[axis] += [v for v in vals if v not in grid[axis]]
    if not grid:
        raise AblationError("give at least one --grid axis=value1,value2 (e.g. --grid visual=none,numbered)")
    return grid


def _setting(axis: str, value: str) -> Any:
    if axis == "cues":
        return parse_cues(value)
    if axis == "frames":
        try:
            frames = int(value)
        except ValueError:
            raise AblationError(f"frames={value} is not a whole number") from None
        if frames < 1:  # a variant that fails every item (and again on every rerun)
            raise AblationError(f"frames={value} samples no frame; give 1 or more")
        return frames
    if axis == "per_face":
        word = value.lower()
        if word not in ("1", "true", "yes", "on", "0", "false", "no", "off"):
            raise AblationError(f"per_face={value} is neither true nor false")
        return word in ("1", "true", "yes", "on")
    if axis in ("visual", "layout") and value.lower() == "default":
        return None
    if axis == "aus" and value.lower() not in AU_PROVIDERS:
        raise AblationError(f"aus={value} is not one of {', '.join(AU_PROVIDERS)}")
    return value


def with_au_provider(cfg: Any, value: str) -> Any:
    """``cfg`` with its AU extractor (geometric ``aus``, ``blendshapes`` or ``pyfeat``) in
    place of any other, where the first one stood, so the AU source is the one thing a
    variant of the ``aus`` axis changes; parameters of the providers left out go too."""
    names = au_provider_names(cfg.extractors, value)
    params = {k: v for k, v in cfg.extractor_params.items() if k in names}
    return replace(cfg, extractors=names, extractor_params=params)


def au_provider_names(extractors: Sequence[str], value: str) -> tuple[str, ...]:
    """``extractors`` with the AU provider ``value`` (an ``aus=`` grid value) in place of any
    other; the geometric AUs bring the mesh they are measured on."""
    chosen = AU_PROVIDERS[value.lower()]
    names: list[str] = []
    for name in extractors:
        name = chosen if name in AU_PROVIDERS.values() else name
        if name not in names:
            names.append(name)
    if chosen not in names:
        names.append(chosen)
    if chosen == "aus" and "landmarks" not in names:
        names.insert(names.index("aus"), "landmarks")
    return tuple(names)


@dataclass(frozen=True)
class Variant:
    name: str  # "visual=none,cues=au,template=direct"
    settings: dict[str, str]  # axis -> value as given
    config: Any  # sovtp.pipeline.RunConfig

    @property
    def slug(self) -> str:
        """A file-system-safe name for the results file."""
        text = "__".join(f"{k}-{v}" for k, v in self.settings.items())
        return re.sub(r"[^A-Za-z0-9+._-]+", "_", text)[:180] or "variant"


def expand_grid(grid: Mapping[str, Sequence[str]], base: Any) -> list[Variant]:
    """Every combination, in grid order (the last axis varies fastest)."""
    # AU sources have one spelling (the Python API skips parse_grid, which lower-cases them)
    grid = {a: [v.lower() for v in vals] if a == "aus" else list(vals) for a, vals in grid.items()}
    axes = list(grid)
    variants = []
    for combo in itertools.product(*(grid[a] for a in axes)):
        settings = dict(zip(axes, combo, strict=False))
        changes = {AXES[a]: _setting(a, v) for a, v in settings.items()}
        au_source = changes.pop("extractors", None)
        config = replace(base, **changes)
        if au_source is not None:
            config = with_au_provider(config, au_source)
        name = ",".join(f"{a}={v}" for a, v in settings.items())
        variants.append(Variant(name, settings, config))
    return variants


def find_variant(variants: Sequence[Variant], spec: str | None) -> Variant:
    """The baseline: an exact variant name, its file slug, or a subset of settings that
    picks exactly one variant (``template=direct,visual=none``). None: the first."""
    if not spec:
        return variants[0]
    for v in variants:
        if spec in (v.name, v.slug):
            return v
    wanted: dict[str, str] = {}
    for part in spec.split(","):
        axis, sep, value = part.partition("=")
        if not sep:
            break
        axis = axis.strip().lower()
        wanted[axis] = value.strip().lower() if axis == "aus" else value.strip()
    matches = [v for v in variants if wanted and all(v.settings.get(a) == val for a, val in wanted.items())]
    if len(matches) == 1:
        return matches[0]
    names = "; ".join(v.name for v in variants[:8]) + (" ..." if len(variants) > 8 else "")
    reason = "matches several variants" if len(matches) > 1 else "matches no variant"
    raise AblationError(f"--baseline {spec!r} {reason}; name one variant exactly (e.g. {variants[0].name}). Variants: {names}")


# --------------------------------------------------------------------------- running


def served_model(base: Any) -> Any:
    """``base`` with the model an OpenAI-compatible server serves when none was given.

    A run without ``--model`` answers with the first model the server lists and keys its
    records on that name. The variants' configs must carry it too, or plan.json would
    store ``model: null`` and no record would match its variant: the table came out
    empty (n = 0 in every row)."""
    if base.backend != "openai" or base.model:
        return base
    return replace(base, model=_ask_server(base))


def _ask_server(cfg: Any) -> str:
    """Check the server ``cfg`` talks to and return the model it answers with: a dead
    server, a rejected key or (on vLLM) a model it does not serve is one sentence, before
    anything runs."""
    from sovtp import pipeline

    async def ask() -> str:
        backend = pipeline._make_backend(cfg)
        try:
            await backend.check()
            return backend.model
        finally:
            await backend.aclose()

    return asyncio.run(ask())


def _check_grid_models(variants: Sequence[Variant], base: Any) -> None:
    """Ask the server about every other model of the grid (the ``model`` axis) once, before
    anything runs: a model it does not serve failed only when its variants came, after
    the others had run for hours."""
    if base.backend != "openai":
        return  # a local model is loaded when its variants run; a missing one is one sentence then
    from sovtp.errors import UserError

    first: dict[str, Variant] = {}
    for v in variants:
        if v.config.model and v.config.model != base.model:
            first.setdefault(v.config.model, v)
    for v in first.values():
        try:
            _ask_server(v.config)
        except UserError as exc:
            raise AblationError(f"variant {v.name}: {str(exc).replace('fix --model', 'fix the model in --grid')}") from None


def _backend_key(cfg: Any) -> str:
    return json.dumps(
        [cfg.backend, cfg.model, cfg.backend_options, cfg.concurrency, cfg.image_max_side, str(cfg.cache_dir)], sort_keys=True, default=str
    )


def _extractor_key(cfg: Any) -> str:
    return json.dumps([list(cfg.extractors), cfg.extractor_params], sort_keys=True, default=str)


def run_variants(
    items: Sequence[InputItem],
    variants: Sequence[Variant],
    out_dir: Path | str,
    progress: Callable[[Variant, Result], None] | None = None,
    on_variant: Callable[[Variant, dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Run every variant into ``out_dir/results/<slug>.jsonl`` (resuming each).

    Variants that use the same model run back to back on one backend instance (a model
    loads once per grid, and only one is in memory at a time); all variants with the same
    extractor settings share the extractor instances. Returns one stats dict per variant
    (also appended to ``out_dir/runs.jsonl``; ``on_variant`` gets each as it finishes).
    """
    return asyncio.run(_run_variants(items, variants, Path(out_dir), progress, on_variant))


async def _run_variants(items, variants, out_dir: Path, progress, on_variant) -> list[dict[str, Any]]:
    from sovtp import pipeline

    make_backend = getattr(pipeline, "_make_backend", None)
    first_seen: dict[str, int] = {}
    for i, v in enumerate(variants):
        first_seen.setdefault(_backend_key(v.config), i)
    order = sorted(variants, key=lambda v: first_seen[_backend_key(v.config)])  # stable: grid order within a model
    extractor_sets: dict[str, list] = {}
    stats: list[dict[str, Any]] = []
    (out_dir / "results").mkdir(parents=True, exist_ok=True)
    backend, backend_key = None, None
    try:
        for v in order:
            cfg = v.config
            bkey, ekey = _backend_key(cfg), _extractor_key(cfg)
            if make_backend is not None and bkey != backend_key:
                if backend is not None:
                    await backend.aclose()
                backend, backend_key = make_backend(cfg), bkey
            preparer = pipeline.Preparer(cfg, extractors=extractor_sets.get(ekey))
            extractor_sets.setdefault(ekey, preparer.extractors)
            cb = (lambda r, v=v: progress(v, r)) if progress is not None else None
            started = time.time()
            summary = await pipeline.run_items_async(
                items, cfg, out_dir / "results" / f"{v.slug}.jsonl", progress=cb, backend=backend, preparer=preparer
            )
            row = {
                "variant": v.name,
                "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
                "seconds": round(summary.seconds, 3),
                "total": summary.total,
                "skipped_already_done": summary.skipped,
                "ok": summary.ok,
                "invalid": summary.invalid,
                "errors": summary.errors,
                "extractor_runs": dict(summary.extractor_runs),
                "cue_cache_hits": summary.cue_cache_hits,
                "cue_cache_misses": summary.cue_cache_misses,
            }
            with open(out_dir / "runs.jsonl", "a", encoding="utf-8") as fh:
                fh.write(json.dumps(row) + "\n")
            stats.append(row)
            if on_variant is not None:
                on_variant(v, row)
    finally:
        if backend is not None:
            await backend.aclose()
    return stats


# --------------------------------------------------------------------------- scoring


def face_bin(n: int) -> str:
    return "0" if n <= 0 else "1" if n == 1 else "2-3" if n <= 3 else "4+"


def variant_records(
    path: Path,
    config: Any,
    wanted: set[str],
    answer_key: Mapping[str, Any] | None = None,
    rename: Callable[[str], str] | None = None,
) -> dict[str, Result]:
    """This variant's record per item path: only records made with exactly this config
    (an earlier ablation with other settings may have left others in the file), or, for
    ``--report-only``, with the ``answer_key`` the run stored in plan.json. ``rename``
    maps a recorded path to where the dataset is now (see :func:`moved_dataset`)."""
    from sovtp.cache import stable_key
    from sovtp.pipeline import run_key_for
    from sovtp.results import load_results

    found: dict[str, Result] = {}
    for r in load_results(path):
        if r.path not in wanted and rename is not None:
            r = r.model_copy(update={"path": rename(r.path)})  # recorded before the dataset moved
        if r.path not in wanted:
            continue
        expected = stable_key("result", r.content_hash, answer_key) if answer_key is not None else run_key_for(r.content_hash, config)
        if r.content_hash and r.run_key != expected:
            continue
        found[r.path] = r
    return found


def moved_dataset(ran_on: Mapping[str, Any] | None, now: Mapping[str, Any] | None) -> Callable[[str], str] | None:
    """For ``--report-only`` over a dataset that moved since the run (a new DATA or
    ``--data-root``): a function taking a recorded path to the same file under the new
    folder, or None when the folder is the same. A full rerun moves the records
    themselves; a report alone must not need one."""

    from sovtp.eval.datasets import MANIFEST_SUFFIXES

    def base(ds: Mapping[str, Any]) -> str | None:
        if ds.get("data_root"):
            return str(ds["data_root"])
        data = str(ds.get("data") or "")
        if not data or data.startswith("hf:"):
            return None
        return str(Path(data).parent) if Path(data).suffix.lower() in MANIFEST_SUFFIXES else data

    old, new = (base(ds) if ds else None for ds in (ran_on, now))
    if not old or not new or old == new:
        return None
    prefix = old.rstrip("/") + "/"

    def rename(path: str) -> str:
        return str(Path(new) / path[len(prefix) :]) if path.startswith(prefix) else path

    return rename


def summarize(
    items: Sequence[InputItem],
    variants: Sequence[Variant],
    out_dir: Path | str,
    labels: LabelSet,
    baseline: Variant,
    n_boot: int = 1000,
    seed: int = 0,
    answer_keys: Mapping[str, Mapping[str, Any]] | None = None,
    rename: Callable[[str], str] | None = None,
) -> tuple[dict[str, Any], dict[str, Any], dict[str, dict[str, Result]]]:
    """The ablation table from the results files: (summary dict, Scores per variant,
    records per variant). Items not (yet) finished in a variant are left out of its
    row and of its paired comparisons; the row's ``n`` says how many were scored."""
    from sovtp.eval import metrics as M
    from sovtp.eval.datasets import fingerprint

    out_dir = Path(out_dir)
    gt = {it.display: it.meta["label"] for it in items}
    tiers = {it.display: str(it.meta["tier"]) for it in items if it.meta.get("tier") not in (None, "")}
    keys = answer_keys or {}
    records = {
        v.name: variant_records(out_dir / "results" / f"{v.slug}.jsonl", v.config, set(gt), keys.get(v.name), rename) for v in variants
    }
    faces: dict[str, int] = {}
    for recs in records.values():
        for p, r in recs.items():
            faces[p] = max(faces.get(p, 0), len(r.face_ids))

    def pred(r: Result) -> str | None:
        return r.label if r.status == "ok" else None

    scores: dict[str, Any] = {}
    rows: list[dict[str, Any]] = []
    base_recs = records[baseline.name]
    for v in variants:
        recs = records[v.name]
        paths = [p for p in gt if p in recs]
        row: dict[str, Any] = {"name": v.name, "slug": v.slug, "settings": v.settings, "n": len(paths), "missing": len(gt) - len(paths)}
        if not paths:
            row["metrics"] = dict.fromkeys(("war", "uar", "macro_f1", "weighted_f1", "invalid_rate"), float("nan"))
            rows.append(row)
            continue
        yt = [gt[p] for p in paths]
        yp = [pred(recs[p]) for p in paths]
        s = M.score(yt, yp, labels, bootstrap=n_boot, seed=seed)
        scores[v.name] = s
        row["metrics"] = {m: s.metric(m) for m in (*M.METRICS, "invalid_rate")}
        row["ci95"] = {k: list(c) for k, c in s.ci.items()}
        row["per_class"] = s.to_dict()["per_class"]
        row["prediction_histogram"] = dict(s.histogram)
        row["confusion"] = s.confusion.tolist()
        row["template_hashes"] = sorted({r.template_hash for r in recs.values() if r.template_hash})
        if v.name != baseline.name:
            shared = [p for p in paths if p in base_recs]
            if shared:
                ys = [gt[p] for p in shared]
                pa = [pred(base_recs[p]) for p in shared]
                pb = [pred(recs[p]) for p in shared]
                deltas = M.paired_bootstrap_delta(ys, pa, pb, labels, n_boot=n_boot, seed=seed)
                # --bootstrap 0: no interval (None, not NaN: summary.json stays strict JSON)
                row["delta"] = {m: {"delta": d.delta, "ci95": None if math.isnan(d.lo) else [d.lo, d.hi]} for m, d in deltas.items()}
                row["mcnemar"] = M.mcnemar_exact(M.correct(ys, pa), M.correct(ys, pb)).to_dict()
                row["paired_n"] = len(shared)
        rows.append(row)

    strata: dict[str, dict[str, list[dict[str, Any]]]] = {}
    groupings = {}
    if tiers:
        groupings["tier"] = tiers
    groupings["faces"] = {p: face_bin(n) for p, n in faces.items()}
    for by, assign in groupings.items():
        values = sorted(set(assign.values()), key=lambda x: (FACE_BINS.index(x) if by == "faces" and x in FACE_BINS else 99, x))
        table: dict[str, list[dict[str, Any]]] = {}
        for value in values:
            entries = []
            for v in variants:
                recs = records[v.name]
                paths = [p for p in gt if assign.get(p) == value and p in recs]
                if not paths:
                    continue
                yt = [gt[p] for p in paths]
                s = M.score(yt, [pred(recs[p]) for p in paths], labels)
                e = {"variant": v.name, "n": len(paths), "war": s.war, "uar": s.uar, "macro_f1": s.macro_f1, "invalid_rate": s.invalid_rate}
                if v.name != baseline.name:
                    shared = [p for p in paths if p in base_recs]
                    if shared:
                        hits_b = M.correct([gt[p] for p in shared], [pred(recs[p]) for p in shared])
                        hits_a = M.correct([gt[p] for p in shared], [pred(base_recs[p]) for p in shared])
                        e["delta_war"] = float(hits_b.mean() - hits_a.mean())
                entries.append(e)
            table[value] = entries
        strata[by] = table

    scored = [r for r in rows if r["name"] in scores]
    complete = [r for r in scored if not r.get("missing")] or scored  # an unfinished variant is not "best" on fewer items
    best = max(complete, key=lambda r: (r["metrics"]["uar"], r["metrics"]["war"]))["name"] if complete else None
    summary = {
        "kind": "ablation",
        "title": "sovtp prompt ablation",
        "labels_name": labels.name,
        "labels": list(labels.labels),
        "n_items": len(gt),
        "baseline": baseline.name,
        "best": best,
        "bootstrap": {"resamples": n_boot, "seed": seed, "interval": "percentile 95%"},
        "data_fingerprint": fingerprint(items),
        "variants": rows,
        "strata": strata,
    }
    return summary, scores, records


# --------------------------------------------------------------------------- examples


def _shown_answer(r: Result | None) -> str:
    if r is None:
        return "not run yet"
    return r.label if r.status == "ok" and r.label else r.status


def _draws_marks(config: Any) -> bool:
    """Whether a variant's images carry visual prompts (boxes, numbers, landmarks...)."""
    visual = config.visual
    if visual is None:
        try:
            from sovtp.compose import load_template

            visual = load_template(config.template).visual
        except Exception:
            return False
    return visual not in (None, "none")


def collect_examples(
    items: Sequence[InputItem],
    variants: Sequence[Variant],
    records: Mapping[str, Mapping[str, Result]],
    summary: Mapping[str, Any],
    out_dir: Path,
    count: int = 3,
) -> list[dict[str, Any]]:
    """Annotated frames (the best variant's visual prompt) for a few items, captioned with
    the ground truth and the baseline's and best variant's answers. Never fails the report."""
    if count <= 0 or not summary.get("best"):
        return []
    from sovtp.eval.report import example_from_png

    by_name = {v.name: v for v in variants}
    base = by_name[summary["baseline"]]
    # frames are shown as the best variant that draws marks sees them (raw frames say little)
    ranked = sorted(
        (r for r in summary["variants"] if r["name"] in records and r.get("n")), key=lambda r: (-r["metrics"]["uar"], -r["metrics"]["war"])
    )
    marked = [by_name[r["name"]] for r in ranked if _draws_marks(by_name[r["name"]].config)]
    best = marked[0] if marked else by_name[summary["best"]]
    shown = list(dict.fromkeys([base.name, summary["best"], best.name]))

    # prefer items where the two disagree (the interesting ones), then the rest
    def interesting(it: InputItem) -> int:
        a, b = records[base.name].get(it.display), records[best.name].get(it.display)
        return 0 if a and b and a.label != b.label else 1

    chosen = sorted(
        [it for it in items if it.display in records[best.name] and records[best.name][it.display].status != "error"], key=interesting
    )[:count]
    if not chosen:
        return []
    try:
        from sovtp.pipeline import preview_items

        previews = preview_items(chosen, best.config, out_dir / "previews" / best.slug)
    except Exception:  # previews are decoration; the numbers must still be reported
        return []
    examples = []
    for item, written in previews:
        if isinstance(written, str):
            continue
        pngs = [Path(p) for p in written if str(p).lower().endswith(".png")]
        if not pngs:
            continue
        png = pngs[len(pngs) // 2]
        preds = {n: _shown_answer(records[n].get(item.display)) for n in shown}
        ex = example_from_png(png, name=item.path.name, label=item.meta.get("label"), predictions=preds, frames_of=best.name)
        if ex is not None:
            examples.append(ex)
    return examples


# --------------------------------------------------------------------------- one call


@dataclass
class AblationOutcome:
    summary: dict[str, Any]
    scores: dict[str, Any]
    report: dict[str, Path]
    runs: list[dict[str, Any]]


def stored_plan(out_dir: Path | str) -> dict[str, Any]:
    """The ablation's plan.json (empty when missing or torn): what ``--report-only`` reads
    the run's dataset, grid, labels and answer keys from."""
    try:
        plan = json.loads((Path(out_dir) / "plan.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return plan if isinstance(plan, dict) else {}


def _stored_answer_keys(out_dir: Path) -> dict[str, dict[str, Any]]:
    """Variant name -> the answer key its results were made with, from plan.json (empty
    for ablations written before plan.json carried them, or a missing/torn plan)."""
    try:
        variants = stored_plan(out_dir).get("variants", [])
        return {v["name"]: v["answer_key"] for v in variants if isinstance(v.get("answer_key"), dict)}
    except (KeyError, TypeError, AttributeError):
        return {}


def _labels_record(labels: LabelSet) -> dict[str, Any]:
    """A label set as plan.json and the report manifest store it (read by stored_labels)."""
    return {"name": labels.name, "labels": list(labels.labels), "ids": list(labels.ids) if labels.ids else None}


def stored_labels(out_dir: Path | str) -> LabelSet | None:
    """The label set an ablation ran with, from its plan.json (None without one): what
    ``--report-only`` must score with, whatever ``--labels`` says by default. Plans
    written before they stored it name the labels in each variant's answer key."""
    from sovtp.labels import BUILTIN_LABEL_SETS

    try:
        plan = stored_plan(out_dir)
        stored = plan.get("labels")
        if isinstance(stored, dict):
            ids = stored.get("ids")
            return LabelSet(str(stored["name"]), tuple(stored["labels"]), tuple(ids) if ids else None)
        words = next((tuple(v["answer_key"]["labels"]) for v in plan.get("variants", []) if "labels" in v.get("answer_key", {})), None)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    if not words:
        return None
    return next((s for s in BUILTIN_LABEL_SETS.values() if s.labels == words), None) or LabelSet("custom", words)


def _previous_manifest(out_dir: Path) -> dict[str, Any]:
    try:
        data = json.loads((out_dir / "report" / "manifest.json").read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def ablate(
    items: Sequence[InputItem],
    grid: Mapping[str, Sequence[str]],
    base: Any,
    out_dir: Path | str,
    baseline: str | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    examples: int = 3,
    run: bool = True,
    progress: Callable[[Variant, Result], None] | None = None,
    on_variant: Callable[[Variant, dict[str, Any]], None] | None = None,
    dataset: Mapping[str, Any] | None = None,
) -> AblationOutcome:
    """Run (or with ``run=False`` only re-score) an ablation and write its report.

    ``dataset``: how the items were loaded (DATA and the options that pick and locate
    rows), kept in plan.json so that ``--report-only`` needs none of them repeated."""
    out_dir = Path(out_dir)
    if not items:
        raise AblationError("the dataset has no items; check DATA (and --split)")
    from sovtp.results import run_lock

    out_dir.mkdir(parents=True, exist_ok=True)
    # one ablation (or report) per folder at a time: a second one on the same --out rewrote
    # plan.json and the report under the first, and ran beside it once it reached a variant
    # the first was not writing
    with run_lock(out_dir / "plan.json"):
        from sovtp.eval.report import model_fingerprint, versions, write_report

        from sovtp.results import write_json_atomic

        if run:
            base = served_model(base)
        variants = expand_grid(grid, base)
        base_variant = find_variant(variants, baseline)
        if len({v.slug for v in variants}) != len(variants):
            raise AblationError("two variants map to the same results file name; use simpler grid values")
        if run:  # a variant every item would fail (its template, cues or settings) stops the grid before any runs
            from sovtp.errors import UserError
            from sovtp.pipeline import Preparer, warn_skipped, without_unavailable

            checked: list[Variant] = []
            for v in variants:
                preparer = Preparer(v.config)
                try:
                    preparer.check(warn=False)  # what each variant's run checks first, for all of them at once
                except UserError as exc:
                    raise AblationError(f"variant {v.name}: {exc}") from None
                source = AU_PROVIDERS.get(v.settings.get("aus", ""))
                if source in preparer.unavailable:  # the one thing the variant is about cannot run
                    raise AblationError(f"variant {v.name}: the {source} extractor cannot run: {preparer.unavailable[source]}")
                for name, reason in preparer.unavailable.items():
                    warn_skipped(name, reason)
                checked.append(replace(v, config=without_unavailable(v.config, preparer)))  # the keys its run will make
            variants = checked
            base_variant = find_variant(variants, base_variant.name)
            _check_grid_models(variants, base)
        # --report-only scores the records the run made: with the answer keys that run stored
        # in plan.json (model, frames, labels...), so the options need not be repeated
        stored = _stored_answer_keys(out_dir) if not run else {}
        if run:  # a report-only pass never writes the plan: its options may not be the run's
            write_json_atomic(
                out_dir / "plan.json",
                {
                    "grid": dict(grid),
                    "baseline": base_variant.name,
                    "labels": _labels_record(base.labels),
                    **({"dataset": dict(dataset)} if dataset else {}),
                    # the base extractors and their parameters (a --face-landmarker path), for
                    # --report-only's example frames
                    "extractors": list(base.extractors),
                    "extractor_params": base.extractor_params,
                    "variants": [
                        {"name": v.name, "settings": v.settings, "results": f"results/{v.slug}.jsonl", "answer_key": v.config.answer_key()}
                        for v in variants
                    ],
                },
            )
        runs = run_variants(items, variants, out_dir, progress, on_variant) if run else []
        rename = None if run else moved_dataset(stored_plan(out_dir).get("dataset"), dataset)
        summary, scores, records = summarize(
            items, variants, out_dir, base.labels, base_variant, n_boot=n_boot, seed=seed, answer_keys=stored or None, rename=rename
        )
        if not run and not any(records.values()):
            where = (
                "plan.json has no stored settings (an ablation from an older sovtp)"
                if not stored
                else "plan.json's settings match no record"
            )
            raise AblationError(
                f"--report-only found no results in {out_dir / 'results'} made with these settings ({where}); "
                "repeat the run's --model, --frames, --labels and other options, or rerun the ablation"
            )
        shown = collect_examples(items, variants, records, summary, out_dir, examples)
        # --report-only: the model and settings are those of the run that made the results
        previous = _previous_manifest(out_dir) if not run else {}
        manifest = {
            "sovtp_ablation_manifest": 1,
            "written": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "versions": versions(),
            "model": previous.get("model") or model_fingerprint(base.model),
            "backend": previous.get("backend") or base.backend,
            "labels": _labels_record(base.labels),
            "seeds": {"bootstrap": seed, "decoding": base.seed, "temperature": base.temperature},
            "data": {"fingerprint": summary["data_fingerprint"], "items": len(items)},
            "grid": dict(grid),
            "baseline": base_variant.name,
            "templates": {v.name: sorted({r.template_hash for r in records[v.name].values() if r.template_hash}) for v in variants},
            "base_config": previous.get("base_config") or (base.public_dict() if hasattr(base, "public_dict") else {}),
            "variants": {
                v.name: {
                    "settings": v.settings,
                    "results": f"results/{v.slug}.jsonl",
                    "answer_key": stored.get(v.name) or v.config.answer_key(),
                }
                for v in variants
            },
            "runs_this_invocation": runs,
        }
        report = write_report(out_dir / "report", summary, scores, manifest, shown)
        return AblationOutcome(summary, scores, report, runs)
