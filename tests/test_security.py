"""Security (issue 7, bar 4): the API key never reaches a file, a log line or an
exception text; templates cannot execute code; caches load without pickle; outputs
cannot escape --out; plain HTTP to another host is warned about.

Requests go only to servers on 127.0.0.1 (a FAKE model with canned answers behind real
HTTP) or to a dead loopback port; the non-loopback warning is tested by calling the
CLI's check directly, so no traffic ever leaves the machine.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import shutil
import subprocess
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from tests.helpers.hostile import SOVTP, dead_port, sovtp_env, varied_images, write_template
from tests.helpers.servers import FaultServer

KEY = "sk-CANARY-9f3a7c1e5b2d4a6f8e0c1b3d5f7a9c2e"
FRAGMENTS = (KEY, KEY[:14], KEY[-14:])  # scrubbing must not leave recognisable pieces either
REPO = Path(__file__).resolve().parents[1]


class KeyEchoServer(FaultServer):
    """FAKE model whose error bodies echo the request's Authorization header, as some
    proxies and misconfigured gateways do: the worst case for a key leaking into error
    records. ``echo``: actions for the first chat requests (``"echo500"`` is retried,
    ``"echo400"`` is final); ``models_401``: /models refuses the key, echoing it."""

    def __init__(self, echo: list[str] | None = None, models_401: bool = False, **kw) -> None:
        super().__init__(**kw)
        self.echo = list(echo or [])
        self.models_401 = models_401

    def _get(self, h: BaseHTTPRequestHandler) -> None:
        if self.models_401:
            self.send_json(
                h, 401, {"error": {"message": f"Incorrect API key provided: {h.headers.get('Authorization')}", "code": "invalid_api_key"}}
            )
        else:
            super()._get(h)

    def _post(self, h: BaseHTTPRequestHandler) -> None:
        with self.lock:
            n = len(self.requests)
        action = self.echo[n] if n < len(self.echo) else None
        if action is None:
            return super()._post(h)
        body = self.read_body(h)
        with self.lock:
            self.requests.append({"path": h.path, "headers": dict(h.headers), "body": body, "action": action})
        status = int(action[-3:])
        self.send_json(
            h, status, {"error": {"message": f"gateway error for credentials {h.headers.get('Authorization')} (x-api-key={KEY})"}}
        )


def _auth(request: dict) -> str | None:
    return next((v for k, v in request["headers"].items() if k.lower() == "authorization"), None)


def _assert_no_key(text: str | bytes, where: str) -> None:
    data = text.encode() if isinstance(text, str) else text
    for frag in FRAGMENTS:
        assert frag.encode() not in data, f"the API key (or a piece of it) leaked into {where}"


def _scan_tree(root: Path, skip: Path | None = None) -> int:
    n = 0
    for p in root.rglob("*"):
        if p.is_file() and not p.is_symlink() and (skip is None or skip not in p.parents):
            _assert_no_key(p.read_bytes(), str(p))
            n += 1
    return n


def test_api_key_is_in_no_file_log_or_error_text(media: Path, tmp_path: Path):
    inputs = tmp_path / "in"
    varied_images(media / "single_face.jpg", inputs, 4)
    out = tmp_path / "res" / "results.jsonl"
    template = write_template(tmp_path)
    env = sovtp_env(tmp_path, OPENAI_API_KEY=KEY)
    with KeyEchoServer(echo=["echo500", "echo400"]) as server:
        cmd = [SOVTP, "run", str(inputs), "--backend", "openai", "--base-url", server.base_url, "--out", str(out), "--template", str(template),
               "--extractors", "faces", "--concurrency", "1", "--workers", "1"]  # fmt: skip
        proc = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
        sent = list(server.requests)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert all(_auth(rq) == f"Bearer {KEY}" for rq in sent), "the key was really used"
    records = [json.loads(line) for line in out.read_text().splitlines()]
    refused = [r for r in records if r["status"] == "error"]
    assert len(refused) == 1 and "HTTP 400" in refused[0]["error"] and "***" in refused[0]["error"]  # the echo was scrubbed
    assert sum(r["retries"] for r in records) == 1  # the echoed 500 was retried

    # `sovtp prompt` previews, then an unreachable server (exception path), same key
    prev = subprocess.run([SOVTP, "prompt", str(inputs), "--out", str(tmp_path / "preview"), "--template", str(template), "--extractors", "faces"],
                          env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert prev.returncode == 0, prev.stderr[-2000:]
    dead = subprocess.run([SOVTP, "run", str(inputs), "--backend", "openai", "--base-url", f"http://127.0.0.1:{dead_port()}/v1", "--out", str(tmp_path / "dead.jsonl")],
                          env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert dead.returncode == 1 and "Cannot reach" in dead.stderr
    # a server that refuses the key and echoes it back in its 401 message
    with KeyEchoServer(models_401=True) as server:
        refused_key = subprocess.run([SOVTP, "run", str(inputs), "--backend", "openai", "--base-url", server.base_url, "--out", str(tmp_path / "401.jsonl")],
                                     env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert refused_key.returncode == 1 and "rejected the API key" in refused_key.stderr

    for name, p in {"run": proc, "prompt": prev, "dead server": dead, "401": refused_key}.items():
        _assert_no_key(p.stdout, f"stdout of {name}")
        _assert_no_key(p.stderr, f"stderr of {name}")
    assert _scan_tree(tmp_path, skip=inputs) >= 6  # results, manifest, caches, previews


def test_api_key_given_in_python_is_not_in_manifest_or_repr(media: Path, tmp_path: Path):
    import sovtp
    from sovtp.api import make_config

    config = make_config(backend="openai", api_key=KEY, base_url="http://127.0.0.1:9/v1")
    _assert_no_key(repr(config), "repr(RunConfig)")
    _assert_no_key(json.dumps(config.public_dict(), default=str), "the manifest's config")
    inputs = tmp_path / "in"
    varied_images(media / "single_face.jpg", inputs, 2)
    with FaultServer() as server:
        summary = sovtp.run(inputs, out=tmp_path / "r.jsonl", backend="openai", base_url=server.base_url, api_key=KEY, template=str(write_template(tmp_path)),
                            extractors=["faces"], cache_dir=tmp_path / "cache", workers=1)  # fmt: skip
        assert all(_auth(rq) == f"Bearer {KEY}" for rq in server.requests)
    assert summary.ok == 2
    _scan_tree(tmp_path, skip=inputs)


def test_a_template_that_reaches_for_python_internals_fails_before_any_request(media: Path, tmp_path: Path):
    """The sandbox itself is covered in tests/test_templates.py; here: a hostile template
    ends the run with one sentence and nothing is decoded or sent."""
    evil = write_template(
        tmp_path, "evil.j2", "{#---\nneeds: []\nanswer: label\n---#}\n{{ ''.__class__.__mro__[1].__subclasses__() }}\n{{ labels_text }}\n"
    )
    inputs = tmp_path / "in"
    varied_images(media / "single_face.jpg", inputs, 2)
    with FaultServer() as server:
        proc = subprocess.run([SOVTP, "run", str(inputs), "--backend", "openai", "--base-url", server.base_url, "--template", str(evil), "--out", str(tmp_path / "r.jsonl")],
                              env=sovtp_env(tmp_path, OPENAI_API_KEY="sk-local"), cwd=tmp_path, capture_output=True, text=True, timeout=120)  # fmt: skip
        assert server.count == 0
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "evil" in proc.stderr and "sandbox" in proc.stderr
    assert not (tmp_path / "r.jsonl").exists() or (tmp_path / "r.jsonl").read_text() == ""


# --------------------------------------------------------------------------- caches


def test_no_code_path_unpickles():
    """Caches and results are JSON: no pickle/marshal/shelve/joblib loads, and no
    np.load / torch.load that could unpickle, anywhere in the shipped code but the
    runners, which pickle items in memory between the processes of one run (as Ray and
    multiprocessing do themselves) and never read a pickle from disk."""
    pattern = re.compile(
        r"\b(pickle\.loads?|cPickle|marshal\.loads?|shelve\.open|joblib\.load|dill\.load|allow_pickle\s*=\s*True|torch\.load\((?![^)]*weights_only\s*=\s*True))"
    )
    offenders = []
    for folder in ("sovtp", "extractors", "eval", "prompts"):
        for p in (REPO / folder).rglob("*.py"):
            if p.parent == REPO / "sovtp" / "runners":
                continue
            for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1):
                if pattern.search(line.split("#", 1)[0]):
                    offenders.append(f"{p.relative_to(REPO)}:{i}: {line.strip()}")
    assert not offenders, offenders


class _Boom:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path(self.marker).touch, ())


def test_a_poisoned_cache_entry_is_a_miss_not_code(tmp_path: Path):
    """A cache folder copied from someone else may hold anything: a pickle that would
    run code when unpickled is read as JSON, fails, and counts as a miss."""
    from sovtp.cache import JsonCache, stable_key

    cache = JsonCache(tmp_path / "cache", "cues")
    key = stable_key("poison")
    cache.put(key, {"ok": 1})
    entry = next((tmp_path / "cache" / "cues").rglob("*.json"))
    marker = tmp_path / "pwned"
    entry.write_bytes(pickle.dumps(_Boom(str(marker))))
    assert cache.get(key) is None
    assert not marker.exists()
    cache.put(key, {"ok": 2})
    assert cache.get(key) == {"ok": 2}
    assert json.loads(entry.read_text()) == {"ok": 2}


# --------------------------------------------------------------------------- output paths


def test_names_from_inputs_cannot_escape_the_output_folder(media: Path, tmp_path: Path):
    from sovtp.inputs import InputItem, safe_name

    for path, root in [
        (Path("../../x.mp4"), None),
        (Path("/data/../../etc/passwd.jpg"), Path("/data")),
        (Path("/data/sub/../../../x.mp4"), Path("/data")),
        (Path("/data/a/b/..\\..\\evil.jpg"), Path("/data")),
        (Path(os.fsdecode(b"/data/caf\xe9/\n\x00x.jpg".replace(b"\x00", b""))), Path("/data")),
        (Path("/data/.."), Path("/data")),
    ]:
        name = safe_name(InputItem(path), root)
        assert "/" not in name and "\\" not in name and ".." not in name and name.isprintable() and name.isascii(), (path, name)
        assert not name.startswith((".", "-")) and 0 < len(name) <= 120

    inputs = tmp_path / "in"
    inputs.mkdir()
    (inputs / "sub").mkdir()
    outside = tmp_path / "outside.jpg"
    shutil.copy(media / "single_face.jpg", outside)
    hostile = ["...jpg", "..\\..\\evil.jpg", "-rf.jpg", " lead.jpg", "new\nline.jpg", "%2e%2e%2fesc.jpg", "sub/..x.jpg"]
    for n in hostile:
        shutil.copy(media / "single_face.jpg", inputs / n)
    os.symlink(outside, inputs / "link_out.jpg")
    preview = tmp_path / "sandbox" / "preview"
    preview.parent.mkdir()
    before = {p for p in tmp_path.rglob("*")}
    # a folder walk skips hidden names (a leading dot), so those are also named one by one
    dotted = [str(inputs / n) for n in hostile if Path(n).name.startswith(".")]
    assert len(dotted) == 3
    proc = subprocess.run([SOVTP, "prompt", str(inputs), *dotted, "--out", str(preview), "--template", "direct", "--extractors", "faces"],
                          env=sovtp_env(tmp_path), cwd=tmp_path, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    written = [p for p in tmp_path.rglob("*") if p not in before and (tmp_path / "cache") not in p.parents and p != tmp_path / "cache"]
    assert written
    real_preview = preview.resolve()
    for p in written:
        assert p.resolve() == real_preview or real_preview in p.resolve().parents, f"{p} is outside --out"
        assert p.name.isprintable() and "\\" not in p.name
    folders = {p.relative_to(preview).parts[0] for p in written if p != preview and preview in p.parents}
    assert len(folders) == len(hostile) + 1, folders  # one distinct folder per input


# --------------------------------------------------------------------------- network warnings


@pytest.mark.parametrize(
    "url, warned",
    [
        ("http://10.1.2.3:8000/v1", True),
        ("http://gpu-box.lab.example:8000/v1", True),
        ("http://127.attacker.example/v1", True),  # a name, not a loopback address
        ("http://localhost.attacker.example/v1", True),
        ("https://api.example.com/v1", False),
        ("http://127.0.0.1:8000/v1", False),
        ("http://localhost:8000/v1", False),
        ("http://[::1]:8000/v1", False),
    ],
)
def test_plain_http_to_another_host_is_warned(url: str, warned: bool, capsys):
    from sovtp.cli import _warn_network

    _warn_network(url, "blur-all")  # no request is made: this only reads the URL
    text = " ".join(capsys.readouterr().err.split())  # rich wraps long lines
    assert ("plain HTTP" in text) is warned, text
    assert text.count("Warning") == int(warned)


def test_warning_never_echoes_credentials_in_the_url(capsys):
    from sovtp.cli import _warn_network

    _warn_network("http://alice:hunter2-secret@10.9.8.7:8000/v1", "blur-all")
    text = " ".join(capsys.readouterr().err.split())  # rich wraps long lines
    assert "plain HTTP" in text and "10.9.8.7" in text and "hunter2" not in text and "alice" not in text


def test_credentials_in_the_base_url_reach_no_message_or_file(media: Path, tmp_path: Path):
    """``http://user:password@host`` (and ``?api-key=``) is sent by the HTTP client only:
    not echoed by the unreachable-server error, not written to the manifest or results."""
    from sovtp.net import redact_url

    assert redact_url("http://alice:hunter2@10.0.0.1:8000/v1?api-key=s3cr3t&x=1") == "http://10.0.0.1:8000/v1?api-key=***&x=1"
    assert redact_url("http://alice:hun/ter#2@gpu-box:8000/v1") == "http://gpu-box:8000/v1"  # a password with / and #
    assert redact_url("alice:hunter2@gpu-box:8000/v1") == "gpu-box:8000/v1"  # no scheme
    assert redact_url("https://h/v1#token=abc;sig=def") == "https://h/v1#token=***;sig=***"
    assert redact_url("http://[::1]:8000/v1?model=m") == "http://[::1]:8000/v1?model=m"
    inputs = tmp_path / "in"
    varied_images(media / "single_face.jpg", inputs, 2)
    env = sovtp_env(tmp_path, OPENAI_API_KEY=KEY)
    template = write_template(tmp_path)
    dead = subprocess.run([SOVTP, "run", str(inputs), "--backend", "openai", "--base-url", f"http://alice:hunter2@127.0.0.1:{dead_port()}/v1",
                           "--out", str(tmp_path / "dead.jsonl"), "--max-retries", "0"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert dead.returncode == 1 and "Cannot reach" in dead.stderr and "127.0.0.1" in dead.stderr
    # a password with a "/" makes the URL unparsable for the HTTP client: one sentence, no password
    odd = subprocess.run([SOVTP, "run", str(inputs), "--backend", "openai", "--base-url", "http://alice:hun/ter2@10.255.255.1:8000/v1",
                          "--out", str(tmp_path / "odd.jsonl"), "--max-retries", "0", "--timeout", "2"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert odd.returncode == 1 and "10.255.255.1" in odd.stderr and "Traceback" not in odd.stderr
    assert "hun/ter2" not in odd.stdout + odd.stderr and "ter2" not in odd.stdout + odd.stderr
    with FaultServer() as server:
        plain = server.base_url
        url = plain.replace("http://", "http://alice:hunter2@")
        proc = subprocess.run([SOVTP, "run", str(inputs), "--backend", "openai", "--base-url", url, "--out", str(tmp_path / "res" / "r.jsonl"),
                               "--template", str(template), "--extractors", "faces", "--workers", "1"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    manifest = json.loads((tmp_path / "res" / "r.manifest.json").read_text())
    assert manifest["config"]["backend_options"]["base_url"] == plain  # kept, minus the credentials
    for p in (dead, proc):
        assert "hunter2" not in p.stdout + p.stderr and "alice" not in p.stdout + p.stderr
    for f in tmp_path.rglob("*"):
        if f.is_file() and inputs not in f.parents:
            assert b"hunter2" not in f.read_bytes(), f
