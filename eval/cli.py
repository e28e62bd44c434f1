"""``sovtp eval score`` and ``sovtp ablate``.

Top-level imports are typer and rich only (``sovtp --help`` must stay fast); numpy,
matplotlib and the pipeline load inside the commands. The coordinator mounts these with
``app.add_typer(eval_app, name="eval")`` and ``app.command("ablate")(ablate_command)``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

eval_app = typer.Typer(no_args_is_help=True, help="Score predictions and compare prompt variants.", pretty_exceptions_show_locals=False)
err = Console(stderr=True)
out = Console()

LabelsOpt = Annotated[
    str | None, typer.Option("--labels", help="dfew (default), mafw, ferv39k, a comma-separated list, or a file with one label per line.")
]
BootOpt = Annotated[int, typer.Option("--bootstrap", min=0, help="Bootstrap resamples for the 95% intervals (0: none).")]
SeedOpt = Annotated[int, typer.Option("--seed", help="Seed of the bootstrap resamples.")]


def _labels(spec: str | None):
    from sovtp.labels import load_label_set

    try:
        return load_label_set(spec)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


def _fail(exc: Exception) -> typer.Exit:
    err.print(f"[red]Error:[/] {escape(str(exc))}", soft_wrap=True)
    return typer.Exit(1)


def print_table(summary: dict[str, Any]) -> None:
    """The variant x metrics table, the deltas against the baseline, and the strata."""
    from rich.console import Console
    from rich.table import Table
    from sovtp.eval.report import strata_rows, variant_rows

    console = out if out.is_terminal else Console(width=max(out.width, 160))  # logs and pipes: no truncated names
    header, rows = variant_rows(summary)
    split = header.index("invalid") + 1
    title = f"{summary.get('title', 'evaluation')} — {summary['labels_name']}, {summary['n_items']} items (percent, 95% CI)"
    table = Table(*header[:split], title=title)
    table.columns[0].overflow = "fold"
    for r in rows:
        table.add_row(*(escape(c.replace(" [", "\n[")) for c in r[:split]))  # text, not markup (names may hold [ ])
    console.print(table)
    if len(header) > split:
        deltas = Table(header[0], *header[split:], title=f"against the baseline {escape(str(summary.get('baseline')))}")
        deltas.columns[0].overflow = "fold"
        for r in rows:
            deltas.add_row(*(escape(c) for c in (r[0], *r[split:])))
        console.print(deltas)
    for by, h, r in strata_rows(summary):
        t = Table(*h, title=f"by {by}")
        t.columns[1].overflow = "fold"
        for row in r:
            t.add_row(*(escape(c) for c in row))
        console.print(t)


# --------------------------------------------------------------------------- eval score


@eval_app.command("score")
def score_command(
    file: Annotated[
        Path, typer.Argument(help="Predictions: CSV/TSV (header row) or JSONL, e.g. a sovtp results file.", show_default=False)
    ],
    gt: Annotated[
        str | None,
        typer.Option("--gt", help="Ground-truth column (dotted for nested JSON, e.g. meta.label). Default for sovtp results: meta.label."),
    ] = None,
    pred: Annotated[
        str | None,
        typer.Option(
            "--pred", help="Prediction column; a ranked comma-separated list scores its first entry. Default for sovtp results: label."
        ),
    ] = None,
    labels: LabelsOpt = None,
    out_dir: Annotated[
        Path | None, typer.Option("--out", "-o", help="Report folder (summary.md, report.html, summary.json, manifest.json).")
    ] = None,
    bootstrap: BootOpt = 1000,
    seed: SeedOpt = 0,
) -> None:
    """Score a predictions file (WAR, UAR, macro/weighted F1, per class, invalid rate) and write a report."""
    import time

    from sovtp.eval.datasets import DatasetError
    from sovtp.eval.metrics import score
    from sovtp.eval.report import per_class_rows, versions, write_report
    from sovtp.eval.score import read_predictions

    label_set = _labels(labels)
    try:
        preds = read_predictions(file, label_set, gt=gt, pred=pred)
        s = score(preds.y_true, preds.y_pred, label_set, bootstrap=bootstrap, seed=seed)
    except (DatasetError, ValueError) as exc:
        raise _fail(exc) from None
    if preds.superseded:
        err.print(
            f"[yellow]note:[/] {escape(file.name)} holds {preds.superseded} older record(s) of inputs it has a later record for "
            "(a rerun with other settings appends beside the earlier run); each input is scored once, by its latest record. "
            "Write runs you compare to separate --out files, or use sovtp ablate.",
            soft_wrap=True,
        )
    name = file.stem
    summary = {
        "kind": "score",
        "title": f"sovtp evaluation of {file.name}",
        "labels_name": label_set.name,
        "labels": list(label_set.labels),
        "n_items": s.n,
        "baseline": None,
        "best": name,
        "bootstrap": {"resamples": bootstrap, "seed": seed, "interval": "percentile 95%"},
        "data_fingerprint": preds.fingerprint,
        "columns": {"gt": preds.gt_col, "pred": preds.pred_col},
        "variants": [
            {
                "name": name,
                "n": s.n,
                "metrics": {m: s.metric(m) for m in ("war", "uar", "macro_f1", "weighted_f1", "invalid_rate")},
                "ci95": {k: list(v) for k, v in s.ci.items()},
            }
        ],
        "scores": s.to_dict(),
    }
    print_table(summary)
    from rich.table import Table

    h, r = per_class_rows(s)
    t = Table(*h, title="per class (percent)")
    for row in r:
        t.add_row(*(escape(c) for c in row))
    out.print(t)
    top, share = s.collapse
    out.print(
        f"Most predicted answer: [bold]{top}[/] ({100 * share:.1f}% of items); invalid answers: {s.n_invalid} ({100 * s.invalid_rate:.1f}%)."
    )
    if out_dir is not None:
        manifest = {
            "sovtp_score_manifest": 1,
            "written": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "predictions_file": str(file.resolve()),
            "predictions_sha256_16": preds.fingerprint,
            "columns": {"gt": preds.gt_col, "pred": preds.pred_col},
            "labels": {"name": label_set.name, "labels": list(label_set.labels), "ids": list(label_set.ids) if label_set.ids else None},
            "seeds": {"bootstrap": seed},
            "versions": versions(),
        }
        paths = write_report(out_dir, summary, {name: s}, manifest)
        err.print(f"Report written to {escape(str(paths['html']))} (and summary.md, summary.json, manifest.json).", soft_wrap=True)


# --------------------------------------------------------------------------- ablate


def ablate_command(
    data: Annotated[
        str | None,
        typer.Argument(
            help="Labelled data: a folder with one subfolder per label, a CSV/TSV/JSONL manifest (path,label[,split,fold,tier...]) or a space-separated list (FERV39k split files), or hf:owner/name. --report-only reads it from the run's plan.json when left out.",
            metavar="DATA",
            show_default=False,
        ),
    ] = None,
    grid: Annotated[
        list[str] | None,
        typer.Option(
            "--grid",
            "-g",
            help="axis=value1,value2 (repeatable). Axes: visual, cues, template, layout, frames, sampling, target, structured, privacy, per_face, model, aus (geometric, blendshapes, pyfeat).",
            show_default=False,
        ),
    ] = None,
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Ablation folder; rerunning with the same folder resumes.")] = Path(
        "ablation"
    ),
    baseline: Annotated[
        str | None,
        typer.Option(
            "--baseline",
            help="Variant to compare against: its name (e.g. visual=none,cues=none,template=direct) or settings picking one. Default: the first.",
        ),
    ] = None,
    backend: Annotated[str, typer.Option("--backend", "-b", help="transformers, openai or vllm.")] = "transformers",
    model: Annotated[str | None, typer.Option("--model", "-m", help="Model id or local checkpoint folder.")] = None,
    labels: LabelsOpt = None,
    split: Annotated[str | None, typer.Option("--split", help="Only manifest rows (or the Hugging Face split) with this split.")] = None,
    path_col: Annotated[str | None, typer.Option("--path-col", help="Manifest column with the file path (default: path).")] = None,
    path_format: Annotated[
        str | None,
        typer.Option(
            "--path-format",
            help="Build each manifest row's path from its columns instead, e.g. 'Clip/clip_224x224/{video_name:0>5}' for DFEW's official set_N.csv.",
        ),
    ] = None,
    data_root: Annotated[
        Path | None, typer.Option("--data-root", help="Folder that relative manifest paths start from (default: the manifest's folder).")
    ] = None,
    label_col: Annotated[str | None, typer.Option("--label-col", help="Manifest column with the ground truth (default: label).")] = None,
    limit: Annotated[
        int | None, typer.Option("--limit", min=1, help="A pilot run on N items, taken in turn from each label (in dataset order).")
    ] = None,
    frames: Annotated[int, typer.Option("--frames", "-n", min=1, help="Frames sampled per video.")] = 8,
    structured: Annotated[str, typer.Option("--structured", help="auto, json, choice, rank or off.")] = "auto",
    extractors: Annotated[
        str | None, typer.Option("--extractors", help="Comma-separated extractor plugins (default: the standard set).")
    ] = None,
    face_landmarker: Annotated[
        Path | None,
        typer.Option(
            "--face-landmarker",
            exists=True,
            dir_okay=False,
            help="A local copy of MediaPipe's face_landmarker.task: the model of the blendshapes AUs (aus=blendshapes in the grid; without an aus axis, every variant uses it instead of the geometric AUs).",
        ),
    ] = None,
    base_url: Annotated[
        list[str] | None,
        typer.Option(
            "--base-url", help="OpenAI-compatible server URL (key from $OPENAI_API_KEY); repeat for several endpoints (failover)."
        ),
    ] = None,
    device: Annotated[str | None, typer.Option("--device", help="transformers device (vLLM chooses its own).")] = None,
    vllm_python: Annotated[
        str | None,
        typer.Option("--vllm-python", envvar="SOVTP_VLLM_PYTHON", help="--backend vllm: python of the environment that has vllm."),
    ] = None,
    concurrency: Annotated[int, typer.Option("--concurrency", "-c", min=1, help="Requests in flight per endpoint.")] = 8,
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds per request before it is retried.")] = 120.0,
    max_retries: Annotated[int, typer.Option("--max-retries", min=0, help="Retries per request on 429/5xx/timeouts.")] = 5,
    temperature: Annotated[float, typer.Option("--temperature", help="Sampling temperature (0: greedy).")] = 0.0,
    max_tokens: Annotated[int, typer.Option("--max-tokens")] = 512,
    max_side: Annotated[int, typer.Option("--max-side", help="Downscale decoded frames whose longer side exceeds this.")] = 1280,
    frame_folders: Annotated[
        bool,
        typer.Option(
            "--frame-folders",
            help="In a label-subfolder dataset, read every folder that holds images as one clip of those frames (manifest rows naming a folder always are).",
        ),
    ] = False,
    frame_rate: Annotated[
        float | None,
        typer.Option("--frame-rate", min=0.001, help="Frames per second of frame folders (default: none; frames are named by number)."),
    ] = None,
    cache_dir: Annotated[
        Path | None,
        typer.Option("--cache-dir", help="Cue and response cache (default $SOVTP_CACHE_DIR or ~/.cache/sovtp); shared by all variants."),
    ] = None,
    bootstrap: BootOpt = 1000,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the bootstrap resamples and of decoding (temperature > 0).")] = 0,
    examples: Annotated[int, typer.Option("--examples", min=0, help="Annotated example frames in the HTML report.")] = 3,
    report_only: Annotated[
        bool, typer.Option("--report-only", help="Do not run anything; rebuild the table and report from the results files.")
    ] = False,
) -> None:
    """Run every combination of --grid on a labelled dataset and compare the variants to a baseline."""
    from sovtp.eval.ablation import AblationError, ablate, parse_grid
    from sovtp.eval.datasets import DatasetError, load_dataset

    from sovtp.pipeline import DEFAULT_EXTRACTORS, RunConfig

    label_set = _labels(labels)
    stored_grid: dict[str, list[str]] | None = None
    if report_only:  # score with the labels the run used (plan.json), not the default set
        from sovtp.eval.ablation import stored_labels, stored_plan

        plan = stored_plan(out_dir)
        # DATA, the options that locate its rows and the grid default to the run's (an
        # option given here wins: a dataset that moved takes a new DATA or --data-root)
        ran_on = plan.get("dataset") if isinstance(plan.get("dataset"), dict) else {}
        data = data if data is not None else ran_on.get("data")
        split = split if split is not None else ran_on.get("split")
        path_col = path_col if path_col is not None else ran_on.get("path_col")
        label_col = label_col if label_col is not None else ran_on.get("label_col")
        path_format = path_format if path_format is not None else ran_on.get("path_format")
        if data_root is None and ran_on.get("data_root") is not None:
            data_root = Path(ran_on["data_root"])
        frame_folders = frame_folders or bool(ran_on.get("frame_folders"))
        limit = limit if limit is not None else ran_on.get("limit")
        if not grid and isinstance(plan.get("grid"), dict):
            stored_grid = {str(axis): [str(v) for v in values] for axis, values in plan["grid"].items()}
        baseline = baseline if baseline is not None else plan.get("baseline")
        if data is None or (not grid and stored_grid is None):
            what = " and ".join(n for n, missing in (("DATA", data is None), ("--grid", not grid and stored_grid is None)) if missing)
            raise _fail(
                DatasetError(
                    f"--report-only needs {what}: {out_dir / 'plan.json'} does not record them "
                    "(no ablation ran into this folder yet, or an older sovtp wrote it); give them as in the run"
                )
            )
        ran_with = stored_labels(out_dir)
        if ran_with is not None and labels is not None and ran_with.labels != label_set.labels:
            raise typer.BadParameter(
                f"--labels {labels!r} is not the label set this ablation ran with ({ran_with.name}: {', '.join(ran_with.labels)}); "
                "drop --labels to use the run's"
            )
        label_set = ran_with or label_set
    if backend not in ("transformers", "openai", "vllm"):
        raise typer.BadParameter(f"--backend {backend!r} is not one of transformers, openai, vllm")
    if backend != "openai" and not model and not report_only:
        raise typer.BadParameter("--model is required (a model id or a local checkpoint folder)")
    if data is None:
        raise typer.BadParameter("DATA is required: a label-subfolder folder, a manifest or split file, or hf:owner/name")
    dataset: dict[str, Any] = {
        "data": data, "split": split, "path_col": path_col, "label_col": label_col, "path_format": path_format,
        "data_root": str(data_root) if data_root is not None else None, "frame_folders": frame_folders, "limit": limit,
    }  # fmt: skip
    try:
        g = stored_grid if stored_grid is not None else parse_grid(grid or [])
        items = load_dataset(
            data, label_set, split=split, path_col=path_col, label_col=label_col, frame_folders=frame_folders, path_format=path_format,
            root=data_root,
        )  # fmt: skip
    except (AblationError, DatasetError) as exc:
        raise _fail(exc) from None
    if not report_only and items and not any(it.path.exists() for it in items):
        # a wrong --data-root or --path-format: one sentence, not one error per row (scoring
        # alone, --report-only, needs no media: results travel without their dataset)
        how = (
            "--data-root and --path-format" if path_format else "the paths (relative ones start from the manifest's folder, or --data-root)"
        )
        raise _fail(DatasetError(f"none of the {len(items)} inputs exists (the first is {items[0].display}); check {how}"))
    from sovtp.cli import _hint_frame_folders

    _hint_frame_folders(items, frame_folders)
    if limit:
        from sovtp.eval.datasets import pilot

        items = pilot(items, limit)
    options: dict[str, Any] = {"timeout": timeout, "max_retries": max_retries}
    if backend == "openai" and not report_only:  # --report-only sends nothing anywhere
        from sovtp.cli import _warn_network

        for url in base_url or [None]:
            _warn_network(url, "none")  # ablation grids may vary privacy; warn as for unblurred frames
        if base_url:
            options["base_url"] = base_url[0] if len(base_url) == 1 else list(base_url)
    if device:
        options["device"] = device
    if backend == "vllm" and vllm_python:
        options["vllm_python"] = vllm_python
    names = tuple(e.strip() for e in extractors.split(",") if e.strip()) if extractors else DEFAULT_EXTRACTORS
    extractor_params: dict[str, dict[str, Any]] = {}
    if report_only:  # the run's extractors and model file, for the report's example frames
        if not extractors and isinstance(plan.get("extractors"), list):
            names = tuple(str(n) for n in plan["extractors"])
        stored_model = ((plan.get("extractor_params") or {}).get("blendshapes") or {}).get("model")
        if face_landmarker is None and isinstance(stored_model, str) and Path(stored_model).is_file():
            face_landmarker = Path(stored_model)
    if face_landmarker is not None:
        # absolute: plan.json keeps it for --report-only, which may run from another folder
        extractor_params["blendshapes"] = {"model": str(Path(face_landmarker).expanduser().resolve())}
        if "aus" not in g:  # as `sovtp run --face-landmarker`
            from sovtp.cli import with_blendshapes

            names = with_blendshapes(names)
    kw: dict[str, Any] = {}
    if cache_dir is not None:
        kw["cache_dir"] = cache_dir
    base = RunConfig(
        backend=backend, model=model, labels=label_set, num_frames=frames, structured=structured, extractors=names,
        concurrency=concurrency, temperature=temperature, max_tokens=max_tokens, max_side=max_side, seed=seed,
        frame_folders=frame_folders, frame_rate=frame_rate, backend_options=options, extractor_params=extractor_params, **kw,
    )  # fmt: skip
    n_variants = 1
    for v in g.values():
        n_variants *= len(v)
    err.print(f"{len(items)} item(s) x {n_variants} variant(s) -> {escape(str(out_dir))}", soft_wrap=True)

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=err, transient=True)
    task = bar.add_task("ablation", total=len(items) * n_variants)
    finished = 0

    said: set[str] = set()  # an unreadable input fails in every variant: say it once

    def progress(variant, result) -> None:
        if result.status == "error" and (result.error or "") not in said:
            from sovtp.progress import item_message

            said.add(result.error or "")
            bar.console.print(f"{item_message(result)} ({escape(variant.name)})", soft_wrap=True)
            said.update(result.notes)
        for note in result.notes:  # a cut-short video: said once, not once per variant
            if note not in said:
                said.add(note)
                from sovtp.progress import note_message

                bar.console.print(note_message(note), soft_wrap=True)
        bar.update(task, advance=1, description=escape(variant.name))

    def on_variant(variant, row) -> None:
        nonlocal finished
        finished += 1
        bar.update(task, completed=finished * len(items))
        skipped = f", {row['skipped_already_done']} already done" if row["skipped_already_done"] else ""
        bar.console.print(
            f"[{finished}/{n_variants}] {escape(variant.name)}: {row['ok']} labelled, {row['invalid']} invalid, {row['errors']} error(s){skipped} in {row['seconds']:.1f}s",
            soft_wrap=True,
        )

    from sovtp.cli import stop_on_sigterm

    with stop_on_sigterm():
        try:
            from sovtp.cli import say_skipped_extractors

            with bar, say_skipped_extractors():
                outcome = ablate(
                    items,
                    g,
                    base,
                    out_dir,
                    baseline=baseline,
                    n_boot=bootstrap,
                    seed=seed,
                    examples=examples,
                    run=not report_only,
                    progress=progress,
                    on_variant=on_variant,
                    dataset=dataset,
                )
        except KeyboardInterrupt as stop:
            from sovtp.cli import was_terminated

            said = "Terminated" if was_terminated(stop) else "Interrupted"
            err.print(
                f"\n[yellow]{said}.[/] Finished items are saved under {escape(str(out_dir))}/results; run the same command again to resume."
            )
            raise typer.Exit(143 if was_terminated(stop) else 130) from None
        except (AblationError, DatasetError) as exc:
            raise _fail(exc) from None
        except Exception as exc:
            from sovtp.errors import UserError

            if isinstance(exc, UserError):
                raise _fail(exc) from None
            raise
    print_table(outcome.summary)
    err.print(f"Report written to {escape(str(outcome.report['html']))} (and summary.md, summary.json, manifest.json).", soft_wrap=True)
