"""Packaging: `import sovtp` and `sovtp --help` stay light, and a built wheel in a fresh
venv behaves like the editable install (CLI runs, templates found, plugins registered)."""

from __future__ import annotations

import json
import subprocess
import sys
import sysconfig
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "mediapipe", "vllm", "transformers", "cv2", "tensorflow")


def _modules_after(code: str) -> set[str]:
    probe = code + "\nimport sys, json; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def test_import_sovtp_loads_no_heavy_library():
    mods = _modules_after("import sovtp; sovtp.RunConfig; sovtp.LabelSet")
    assert not [m for m in mods if m.split(".")[0] in HEAVY]


def test_cli_help_loads_no_heavy_library():
    code = "import sys\nfrom sovtp.cli import app\ntry:\n    app(['--help'])\nexcept SystemExit:\n    pass"
    mods = _modules_after(code)
    assert "sovtp.cli" in mods
    assert not [m for m in mods if m.split(".")[0] in HEAVY]


def _probe_install(python: str, cwd: Path) -> dict:
    """What an installed sovtp looks like from `python`: plugins, templates, CLI."""
    code = (
        "import json, subprocess, sys, importlib.resources as r\n"
        "from sovtp.extract import installed_plugins\n"
        "import sovtp.extractors, sovtp.eval\n"
        "t = sorted(p.name for p in r.files('sovtp.prompts').iterdir() if p.name.endswith('.j2'))\n"
        "from sovtp.compose import load_template\n"
        "h = load_template('sovtp').sha256\n"
        "print(json.dumps({'plugins': [(p.name, p.target) for p in installed_plugins()], 'templates': t, 'hash': h}))\n"
    )
    out = subprocess.run([python, "-c", code], capture_output=True, text=True, cwd=cwd, check=True)
    info = json.loads(out.stdout.strip().splitlines()[-1])
    cli = Path(python).parent / "sovtp"
    help_text = subprocess.run([str(cli), "--help"], capture_output=True, text=True, cwd=cwd, check=True).stdout
    info["commands"] = sorted(c for c in ("run", "prompt", "extractors", "eval", "ablate") if c in help_text)
    return info


def test_wheel_in_fresh_venv_matches_editable_install(tmp_path: Path):
    dist = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(dist), str(REPO)], check=True
    )
    wheel = next(dist.glob("sovtp-*.whl"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = venv / "bin" / "python"
    # The fresh venv gets sovtp from the wheel alone; its dependencies are borrowed from
    # the test venv through a .pth file (installing mediapipe/torch again would take minutes).
    site = subprocess.run(
        [str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], capture_output=True, text=True, check=True
    ).stdout.strip()
    deps = sysconfig.get_paths()["purelib"]
    subprocess.run([str(py), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)], check=True)
    Path(site, "zz_borrowed_deps.pth").write_text(deps + "\n")
    fresh = _probe_install(str(py), tmp_path)
    editable = _probe_install(sys.executable, tmp_path)
    assert fresh == editable
    assert len(fresh["plugins"]) >= 6 and "sovtp.j2" in fresh["templates"]
    assert fresh["commands"] == ["ablate", "eval", "extractors", "prompt", "run"]
    # the fresh venv's sovtp really is the wheel, not the source tree
    where = subprocess.run(
        [str(py), "-c", "import sovtp; print(sovtp.__file__)"], capture_output=True, text=True, cwd=tmp_path, check=True
    ).stdout
    assert str(venv) in where
