"""The ablation table from results files: grid parsing, baseline choice, paired deltas,
McNemar, strata by tier and by number of faces, and stale records ignored.

The results files here are written directly (records as the pipeline writes them, with
real run keys) so every number can be checked against an independent computation; the
end-to-end run on a real model is in test_ablation_run.py.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from sklearn.metrics import accuracy_score, balanced_accuracy_score
from sovtp.eval import ablation as A
from sovtp.eval import metrics as M

from sovtp.inputs import InputItem
from sovtp.labels import DFEW
from sovtp.pipeline import RunConfig, run_key_for
from sovtp.types import Result


def test_parse_grid_and_variants():
    g = A.parse_grid(["visual=none,numbered", "cues=none,au,au+pose,all", "template=direct,sovtp"])
    assert g == {"visual": ["none", "numbered"], "cues": ["none", "au", "au+pose", "all"], "template": ["direct", "sovtp"]}
    vs = A.expand_grid(g, RunConfig(cache_dir=None))
    assert len(vs) == 16 and len({v.slug for v in vs}) == 16
    v = vs[5]
    assert v.name == "visual=none,cues=au+pose,template=sovtp"
    assert v.config.visual == "none" and v.config.include_cues == frozenset({"aus", "pose"}) and v.config.template == "sovtp"
    assert vs[0].config.include_cues == frozenset() and vs[-1].config.include_cues is None
    assert A.find_variant(vs, None) is vs[0]
    assert A.find_variant(vs, v.name) is v and A.find_variant(vs, v.slug) is v
    assert A.find_variant(vs, "template=sovtp,cues=au+pose,visual=none") is v
    with pytest.raises(A.AblationError, match="matches several variants"):
        A.find_variant(vs, "visual=none")
    with pytest.raises(A.AblationError, match="matches no variant"):
        A.find_variant(vs, "visual=sparkles")
    for bad, msg in [
        ("visual", "axis=value"),
        ("colour=red", "not one of"),
        ("cues=au+smell", "unknown cue kind"),
        ("frames=many", "whole number"),
    ]:
        with pytest.raises(A.AblationError, match=msg):
            A.expand_grid(A.parse_grid([bad]), RunConfig(cache_dir=None))


def _write(path: Path, records: list[Result]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        for r in records:
            fh.write(r.model_dump_json() + "\n")


@pytest.fixture
def synthetic(tmp_path):
    rng = random.Random(1)
    n = 90
    items = [
        InputItem(Path(f"/data/clip{i:03d}.mp4"), {"label": rng.choice(DFEW.labels[:6]), "tier": "easy" if i % 3 else "hard"})
        for i in range(n)
    ]
    faces = [rng.choice([0, 1, 1, 1, 2, 3, 5]) for _ in range(n)]
    grid = {"visual": ["none", "numbered"], "template": ["direct", "sovtp"]}
    base = RunConfig(cache_dir=None, model="m")
    variants = A.expand_grid(grid, base)
    accuracy = {0: 0.3, 1: 0.45, 2: 0.5, 3: 0.7}
    preds: dict[str, list[str | None]] = {}
    for k, v in enumerate(variants):
        recs, ps = [], []
        for i, it in enumerate(items):
            u = rng.random()
            if u < accuracy[k]:
                label, status = it.meta["label"], "ok"
            elif u < accuracy[k] + 0.08:
                label, status = None, "invalid"
            else:
                label, status = rng.choice(DFEW.labels), "ok"
            h = f"hash{i}"
            recs.append(
                Result(
                    path=it.display,
                    status=status,
                    label=label,
                    content_hash=h,
                    run_key=run_key_for(h, v.config),
                    face_ids=list(range(1, faces[i] + 1)),
                    meta=dict(it.meta),
                )
            )
            ps.append(label if status == "ok" else None)
        # a stale record from another configuration of the same file: must be ignored
        stale = RunConfig(cache_dir=None, model="m", num_frames=99)
        recs.insert(0, Result(path=items[0].display, status="ok", label="fear", content_hash="hash0", run_key=run_key_for("hash0", stale)))
        _write(tmp_path / "results" / f"{v.slug}.jsonl", recs)
        preds[v.name] = ps
    return items, variants, preds, faces, tmp_path


def test_summary_numbers_match_independent_computation(synthetic):
    items, variants, preds, faces, out = synthetic
    base = variants[1]
    summary, scores, records = A.summarize(items, variants, out, DFEW, base, n_boot=300, seed=3)
    y = [it.meta["label"] for it in items]
    assert summary["baseline"] == base.name and summary["n_items"] == len(items)
    rows = {r["name"]: r for r in summary["variants"]}
    assert set(rows) == {v.name for v in variants}
    for v in variants:
        row = rows[v.name]
        yp = [p if p is not None else "__invalid__" for p in preds[v.name]]
        assert row["n"] == len(items)
        assert row["metrics"]["war"] == pytest.approx(accuracy_score(y, yp), abs=1e-12)
        assert row["metrics"]["uar"] == pytest.approx(balanced_accuracy_score(y, yp), abs=1e-9)
        lo, hi = row["ci95"]["uar"]
        assert lo <= row["metrics"]["uar"] <= hi
        if v.name == base.name:
            assert "delta" not in row
            continue
        d = row["delta"]["war"]
        assert d["delta"] == pytest.approx(row["metrics"]["war"] - rows[base.name]["metrics"]["war"], abs=1e-12)
        assert d["ci95"][0] <= d["delta"] <= d["ci95"][1]
        hits_a = [p == t for p, t in zip(preds[base.name], y, strict=False)]
        hits_b = [p == t for p, t in zip(preds[v.name], y, strict=False)]
        b = sum(a and not c for a, c in zip(hits_a, hits_b, strict=False))
        c = sum(not a and cc for a, cc in zip(hits_a, hits_b, strict=False))
        assert (row["mcnemar"]["a_only_correct"], row["mcnemar"]["b_only_correct"]) == (b, c)
        assert row["mcnemar"]["p_value"] == pytest.approx(M.binom_two_sided_half(b, b + c))
    assert summary["best"] == max(rows.values(), key=lambda r: (r["metrics"]["uar"], r["metrics"]["war"]))["name"]

    # strata: tiers and face-count bins, each entry checked against its own subset
    assert set(summary["strata"]) == {"tier", "faces"}
    assert list(summary["strata"]["faces"]) == [b for b in A.FACE_BINS if any(A.face_bin(f) == b for f in faces)]
    for by, key in (("tier", lambda i: items[i].meta["tier"]), ("faces", lambda i: A.face_bin(faces[i]))):
        for stratum, entries in summary["strata"][by].items():
            idx = [i for i in range(len(items)) if key(i) == stratum]
            for e in entries:
                yp = [preds[e["variant"]][i] for i in idx]
                assert e["n"] == len(idx)
                assert e["war"] == pytest.approx(sum(yp[j] == y[i] for j, i in enumerate(idx)) / len(idx))
                if e["variant"] != base.name:
                    base_war = sum(preds[base.name][i] == y[i] for i in idx) / len(idx)
                    assert e["delta_war"] == pytest.approx(e["war"] - base_war)


def test_unfinished_variant_is_scored_on_what_exists(synthetic):
    items, variants, preds, faces, out = synthetic
    path = out / "results" / f"{variants[3].slug}.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:41]))  # stale line + 40 items
    summary, _, _ = A.summarize(items, variants, out, DFEW, variants[0], n_boot=50)
    row = next(r for r in summary["variants"] if r["name"] == variants[3].name)
    assert row["n"] == 40 and row["missing"] == 50 and row["paired_n"] == 40
    # the tables say on how many items the deltas were taken, and an unfinished variant is never "best"
    from sovtp.eval.report import variant_rows

    header, rows = variant_rows(summary)
    cells = dict(zip(header, next(r for r in rows if r[0] == variants[3].name), strict=True))
    assert cells["paired n"] == "40" and summary["best"] != variants[3].name


def test_grid_values_that_would_fail_every_item_are_refused():
    """frames=0 ran and failed every item (again on every rerun); per_face=ture became false."""
    base = RunConfig(backend="openai", model="m", cache_dir=None)
    with pytest.raises(A.AblationError, match="frames=0 samples no frame"):
        A.expand_grid({"frames": ["1", "0"]}, base)
    with pytest.raises(A.AblationError, match="per_face=ture is neither true nor false"):
        A.expand_grid({"per_face": ["ture"]}, base)


def test_ablate_report_only_rebuilds_the_table_from_results(synthetic):
    """`sovtp ablate --report-only`: the CLI's settings give the same run keys as the
    files (so nothing is mistaken for stale), and the report is written without a model."""
    import json

    from typer.testing import CliRunner

    from sovtp.cli import app

    items, variants, preds, faces, out = synthetic
    manifest = out / "labels.csv"
    manifest.write_text("path,label,tier\n" + "".join(f"{it.path},{it.meta['label']},{it.meta['tier']}\n" for it in items))
    res = CliRunner().invoke(
        app,
        ["ablate", str(manifest), "--grid", "visual=none,numbered", "--grid", "template=direct,sovtp", "--model", "m", "--out", str(out),
         "--report-only", "--baseline", "template=sovtp,visual=none", "--bootstrap", "100", "--examples", "0"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    summary = json.loads((out / "report" / "summary.json").read_text())
    assert summary["baseline"] == "visual=none,template=sovtp"
    assert [r["n"] for r in summary["variants"]] == [len(items)] * 4
    assert "visual=numbered,template=sovtp" in res.output.replace("\n", "") or "numbered" in res.output
    bad = CliRunner().invoke(
        app,
        ["ablate", str(manifest), "--grid", "visual=none", "--model", "m", "--out", str(out), "--report-only", "--baseline", "visual=x"],
    )
    assert bad.exit_code == 1 and "matches no variant" in bad.output


def _plan_variants(variants) -> list[dict]:
    """plan.json's variant entries, as a real run writes them."""
    return [
        {"name": v.name, "settings": v.settings, "results": f"results/{v.slug}.jsonl", "answer_key": v.config.answer_key()}
        for v in variants
    ]


def _write_plan_and_manifest(out: Path, plan: dict, items) -> Path:
    """Write ``plan`` as the run's plan.json and the items' labels as a CSV manifest."""
    import json

    (out / "plan.json").write_text(json.dumps(plan, default=str))
    manifest = out / "labels.csv"
    manifest.write_text("path,label,tier\n" + "".join(f"{it.path},{it.meta['label']},{it.meta['tier']}\n" for it in items))
    return manifest


def test_report_only_reads_the_runs_settings_from_plan_json_and_bootstrap_0_has_no_interval(synthetic):
    """A report rebuilt later, by someone who does not repeat --model and the other run
    options: the answer keys stored in plan.json select the run's records. With
    --bootstrap 0 the deltas are reported without an interval (not NaN, not a crash)."""
    import json

    from typer.testing import CliRunner

    from sovtp.cli import app

    items, variants, preds, faces, out = synthetic
    plan = {"variants": _plan_variants(variants)}
    manifest = _write_plan_and_manifest(out, plan, items)
    res = CliRunner().invoke(
        app,
        ["ablate", str(manifest), "--grid", "visual=none,numbered", "--grid", "template=direct,sovtp", "--out", str(out),
         "--report-only", "--bootstrap", "0", "--examples", "0"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    summary = json.loads((out / "report" / "summary.json").read_text(), parse_constant=lambda c: pytest.fail(f"{c} in summary.json"))
    assert [r["n"] for r in summary["variants"]] == [len(items)] * 4
    deltas = [r["delta"] for r in summary["variants"] if "delta" in r]
    assert len(deltas) == 3 and all(d["war"]["ci95"] is None for d in deltas)
    assert "nan" not in res.output.lower()
    assert json.loads((out / "plan.json").read_text()) == json.loads(json.dumps(plan, default=str))  # the run's plan is kept


def test_report_only_without_matching_results_says_so_and_writes_no_plan(synthetic):
    from typer.testing import CliRunner

    from sovtp.cli import app

    items, variants, preds, faces, out = synthetic
    manifest = out / "labels.csv"
    manifest.write_text("path,label,tier\n" + "".join(f"{it.path},{it.meta['label']},{it.meta['tier']}\n" for it in items))
    args = [
        "ablate",
        str(manifest),
        "--grid",
        "visual=none,numbered",
        "--grid",
        "template=direct,sovtp",
        "--out",
        str(out),
        "--report-only",
    ]
    res = CliRunner().invoke(app, [*args, "--model", "other-model"])  # no plan.json; the results were made with --model m
    assert res.exit_code == 1 and "found no results" in " ".join(res.output.split())
    assert not (out / "plan.json").exists()  # a report-only pass never writes the plan
    assert CliRunner().invoke(app, [*args, "--model", "m", "--bootstrap", "0"]).exit_code == 0  # the run's options: found


def test_report_only_scores_with_the_labels_the_run_used(synthetic):
    """A run made with other labels than the default (here DFEW plus 'contempt') is
    re-scored with those, read from plan.json, when --labels is not repeated; repeating
    another set is refused in one sentence instead of scoring against the wrong labels."""
    import json

    from sovtp.eval.ablation import stored_labels
    from typer.testing import CliRunner

    from sovtp.cli import app

    items, variants, preds, faces, out = synthetic
    wider = [*DFEW.labels, "contempt"]
    plan = {"labels": {"name": "custom", "labels": wider, "ids": None}, "variants": _plan_variants(variants)}
    manifest = _write_plan_and_manifest(out, plan, items)
    args = ["ablate", str(manifest), "--grid", "visual=none,numbered", "--grid", "template=direct,sovtp", "--out", str(out),
            "--report-only", "--bootstrap", "0", "--examples", "0"]  # fmt: skip
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert json.loads((out / "report" / "summary.json").read_text())["labels"] == wider
    refused = CliRunner().invoke(app, [*args, "--labels", "dfew"])
    assert refused.exit_code != 0 and "not the label set this ablation ran with" in refused.output
    # plans written before they stored the labels: read from the answer keys, built-in sets by name
    del plan["labels"]
    (out / "plan.json").write_text(json.dumps(plan, default=str))
    assert stored_labels(out) == DFEW


def test_ablate_says_an_unreadable_input_once_not_once_per_variant(media, tmp_path):
    """A broken file fails in every variant; the terminal gets its one sentence once,
    the results files get one error record per variant (they are scored as wrong)."""
    import json
    import shutil

    from typer.testing import CliRunner

    from sovtp.cli import app
    from tests.helpers.servers import FaultServer

    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(media / "single_face.jpg", data / "smile.jpg")
    (data / "broken.mp4").write_bytes(b"not a video\n" * 8)
    (data / "labels.csv").write_text("path,label\nsmile.jpg,happy\nbroken.mp4,sad\n")
    out = tmp_path / "ablation"
    with FaultServer() as server:
        res = CliRunner().invoke(
            app,
            ["ablate", str(data / "labels.csv"), "--grid", "template=direct", "--grid", "visual=none,numbered", "--backend", "openai",
             "--base-url", server.base_url, "--model", "test-model", "--out", str(out), "--bootstrap", "0", "--examples", "0",
             "--cache-dir", str(tmp_path / "cache")],
        )  # fmt: skip
    assert res.exit_code == 0, res.output
    said = [line for line in res.output.splitlines() if "broken.mp4: not a valid video" in line]
    assert len(said) == 1 and said[0].startswith("error "), res.output
    records = [json.loads(line) for f in sorted((out / "results").glob("*.jsonl")) for line in f.read_text().splitlines()]
    assert sorted(r["status"] for r in records if r["path"].endswith("broken.mp4")) == ["error", "error"]


def test_ablate_without_a_model_scores_the_model_the_server_serves(media, tmp_path):
    """`--backend openai` without `--model` answers with the first model the server lists.
    The table must score those records (before, every row had n = 0: plan.json stored
    model null and no record matched its variant), and plan.json names the model."""
    import json
    import shutil

    from tests.helpers.servers import FaultServer

    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(media / "single_face.jpg", data / "a.jpg")
    shutil.copy(media / "multi_face.jpg", data / "b.jpg")
    items = [InputItem(data / "a.jpg", {"label": "happy"}), InputItem(data / "b.jpg", {"label": "sad"})]
    out = tmp_path / "ablation"
    with FaultServer(model_id="served-model") as server:
        options = {"base_url": server.base_url, "max_retries": 0}
        base = RunConfig(backend="openai", model=None, num_frames=1, cache_dir=None, extractors=("faces",), backend_options=options)
        outcome = A.ablate(items, {"template": ["direct"], "visual": ["none", "box"]}, base, out, n_boot=0, examples=0)
    rows = {row["name"]: row for row in outcome.summary["variants"]}
    assert {name: row["n"] for name, row in rows.items()} == {"template=direct,visual=none": 2, "template=direct,visual=box": 2}
    assert rows["template=direct,visual=none"]["metrics"]["war"] == pytest.approx(0.5)  # the canned "happy": one of two right
    plan = json.loads((out / "plan.json").read_text())
    assert {v["answer_key"]["model"] for v in plan["variants"]} == {"served-model"}


def test_an_ablation_over_a_moved_dataset_keeps_its_table(media, tmp_path):
    """The dataset moved (to a faster disk) and the same ablation is run from there: no
    request is made (resume follows the content) and the table still scores every item.
    Before, every row had n = 0: the records kept the old paths, which the moved
    dataset's items no longer name."""
    import shutil

    from tests.helpers.servers import FaultServer

    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(media / "single_face.jpg", data / "a.jpg")
    shutil.copy(media / "multi_face.jpg", data / "b.jpg")
    out = tmp_path / "ablation"
    with FaultServer() as server:
        base = RunConfig(
            backend="openai", model="m", num_frames=1, cache_dir=None, extractors=("faces",), backend_options={"base_url": server.base_url}
        )
        for root in (data, tmp_path / "moved"):
            if root != data:
                shutil.move(data, root)
            items = [InputItem(root / "a.jpg", {"label": "happy"}), InputItem(root / "b.jpg", {"label": "sad"})]
            outcome = A.ablate(items, {"template": ["direct"]}, base, out, n_boot=0, examples=0)
            (row,) = outcome.summary["variants"]
            assert row["n"] == 2 and row["metrics"]["war"] == pytest.approx(0.5), root
        assert server.count == 2  # the second pass asked nothing


def test_a_second_ablation_on_the_same_folder_is_refused_and_a_grid_model_is_checked_first(media, tmp_path):
    """A second `sovtp ablate` on the same --out rewrote plan.json under the first (and
    ran beside it once the first reached another variant file). A model of the grid the
    server does not serve failed only when its variants came, after the others had run."""
    from sovtp.results import ResultsInUse, hold_run_lock
    from tests.helpers.servers import FaultServer

    items = [InputItem(media / "single_face.jpg", {"label": "happy"})]
    out = tmp_path / "ablation"
    out.mkdir()
    held = hold_run_lock(out / "plan.json")  # as a running ablation holds it
    try:
        base = RunConfig(backend="openai", model="m", cache_dir=None, backend_options={"base_url": "http://127.0.0.1:9/v1"})
        with pytest.raises(ResultsInUse, match="plan.json is being written by another sovtp run"):
            A.ablate(items, {"template": ["direct"]}, base, out)
        assert not (out / "plan.json").exists()
    finally:
        import os

        os.close(held)
    with FaultServer(model_id="test-model", owned_by="vllm") as server:
        base = RunConfig(
            backend="openai",
            model="test-model",
            num_frames=1,
            cache_dir=None,
            extractors=("faces",),
            backend_options={"base_url": server.base_url},
        )
        with pytest.raises(
            A.AblationError,
            match=r"variant model=tset-model,template=direct: The server at .* does not serve the model 'tset-model' .*; fix the model in --grid",
        ):
            A.ablate(items, {"model": ["test-model", "tset-model"], "template": ["direct"]}, base, out, n_boot=0, examples=0)
        assert server.count == 0  # nothing ran
