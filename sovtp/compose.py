"""Templates -> prompts: load a template (built-in or the user's), check it before any
model call, and compose one clip's :class:`Prompt` from its cues and images.

Why a sandbox even for "our own users": templates are shared between labs like
configs, and a template is code. Jinja's immutable sandbox blocks dunder access and
mutating calls; StrictUndefined turns every typo into an error; and the variables
handed in are plain dicts and lists (``sovtp.cuetext``), so there is nothing behind
them to escape into.

A template declares what it needs in a front-matter comment at its top::

    {#---
    needs: [faces, aus, pose]      # cue kinds the text uses
    visual: sovtp                  # default visual mode
    layout: frames                 # frames | grid
    images: null                   # how many images (null: one per frame / the grid)
    answer: stages                 # stages (JSON, one field per stage + label) | label
    stages: [scene_context, final_check]
    ---#}

Images go where the template writes ``{{ images }}`` (all) or ``{{ image(2) }}``
(the second); images not placed that way come first, before the text.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import traceback
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from sovtp.errors import UserError
from sovtp.labels import LabelSet
from sovtp.types import Clip, Cues, ImagePart, Prompt, TextPart

BUILTIN_TEMPLATES: tuple[str, ...] = ("sovtp", "sov", "direct", "text_cues")
ANSWER_KINDS: tuple[str, ...] = ("stages", "label")
FRONT_KEYS: tuple[str, ...] = ("name", "description", "needs", "visual", "layout", "images", "answer", "stages", "system")

_IMG_OPEN, _IMG_CLOSE = "\ue000", "\ue001"  # private-use code points: never in real prompt text
_IMG_ALL = f"{_IMG_OPEN}all{_IMG_CLOSE}"
_IMG_RE = re.compile(f"{_IMG_OPEN}(all|\\d+){_IMG_CLOSE}")
_FRONT_RE = re.compile(r"\A\s*\{#---[ \t]*\n(?P<body>.*?)\n[ \t]*---#\}", re.S)


class TemplateError(UserError, ValueError):
    """A template that cannot be used; ``str(exc)`` is one sentence naming the template,
    the line and the problem. ``line`` / ``variable`` are set when known."""

    def __init__(self, message: str, template: str = "", line: int | None = None, variable: str | None = None) -> None:
        super().__init__(message)
        self.template = template
        self.line = line
        self.variable = variable


@dataclass(frozen=True)
class Template:
    """A loaded template: its source, identity (name + sha256) and declared front matter."""

    name: str
    path: Path | None
    source: str
    sha256: str
    needs: tuple[str, ...] = ()
    visual: str = "none"
    layout: str = "frames"
    images: int | None = None
    answer: str = "label"
    stages: tuple[str, ...] = ()
    description: str = ""
    system: str | None = None
    front_matter: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def hash(self) -> str:
        return self.sha256

    @property
    def filename(self) -> str:
        return str(self.path) if self.path is not None else f"<{self.name}>"


# --------------------------------------------------------------------------- front matter


def _scalar(text: str) -> Any:
    t = text.strip()
    if t in ("", "null", "~", "None"):
        return None
    if t in ("true", "false"):
        return t == "true"
    if re.fullmatch(r"-?\d+", t):
        return int(t)
    if len(t) >= 2 and t[0] == t[-1] and t[0] in "'\"":
        return t[1:-1]
    return t


def _value(text: str) -> Any:
    t = text.strip()
    if t.startswith("[") and t.endswith("]"):
        inner = t[1:-1].strip()
        return [] if not inner else [_scalar(x) for x in inner.split(",")]
    return _scalar(t)


def _strip_comment(line: str) -> str:
    """``line`` without a ``# comment``: a ``#`` after whitespace and outside quotes
    ("Label #1 is the answer" keeps its text)."""
    quote = None
    for i, c in enumerate(line):
        if quote:
            quote = None if c == quote else quote
        elif c in "\"'":
            quote = c
        elif c == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i]
    return line


def parse_front_matter(source: str, name: str = "<template>") -> tuple[dict[str, Any], dict[str, int]]:
    """The ``{#--- key: value ---#}`` header as a dict, and each key's line number.
    A YAML subset (scalars, ``[a, b]`` lists, ``#`` comments) so no YAML parser is needed."""
    m = _FRONT_RE.match(source)
    if not m:
        return {}, {}
    first = source[: m.start("body")].count("\n") + 1
    data: dict[str, Any] = {}
    lines: dict[str, int] = {}
    for offset, raw in enumerate(m.group("body").split("\n")):
        line = _strip_comment(raw).strip()
        if not line or line.startswith("#"):
            continue
        lineno = first + offset
        key, sep, value = line.partition(":")
        key = key.strip()
        if not sep or not re.fullmatch(r"[A-Za-z_]+", key):
            raise TemplateError(
                f"template {name!r} line {lineno}: front matter line {raw.strip()!r} is not 'key: value'; fix it.", name, lineno
            )
        if key not in FRONT_KEYS:
            raise TemplateError(
                f"template {name!r} line {lineno}: unknown front-matter key {key!r}; use one of {', '.join(FRONT_KEYS)}.", name, lineno, key
            )
        data[key] = _value(value)
        lines[key] = lineno
    return data, lines


def _validate(front: dict[str, Any], lines: dict[str, int], name: str) -> dict[str, Any]:
    from sovtp.cuetext import CUE_KINDS
    from sovtp.render.modes import LAYOUTS, VISUAL_MODES

    def bad(key: str, msg: str) -> TemplateError:
        return TemplateError(f"template {name!r} line {lines.get(key, 1)}: {msg}", name, lines.get(key))

    needs = front.get("needs") or []
    if not isinstance(needs, list) or any(n not in CUE_KINDS for n in needs):
        raise bad("needs", f"'needs' must be a list of cue kinds ({', '.join(CUE_KINDS)}), got {needs!r}; fix it.")
    visual = front.get("visual") or "none"
    if visual not in VISUAL_MODES:
        raise bad("visual", f"unknown visual mode {visual!r}; use one of {', '.join(VISUAL_MODES)}.")
    layout = front.get("layout") or "frames"
    if layout not in LAYOUTS:
        raise bad("layout", f"unknown layout {layout!r}; use 'frames' or 'grid'.")
    images = front.get("images")
    if images is not None and (not isinstance(images, int) or isinstance(images, bool) or images < 1):
        raise bad("images", f"'images' must be a positive number or null, got {images!r}; fix it.")
    answer = front.get("answer") or "label"
    if answer not in ANSWER_KINDS:
        raise bad("answer", f"unknown answer kind {answer!r}; use 'stages' (JSON with reasoning fields and a label) or 'label'.")
    stages = front.get("stages") or []
    if not isinstance(stages, list) or any(not isinstance(s, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", s) for s in stages):
        raise bad("stages", f"'stages' must be a list of identifier-like names, got {stages!r}; fix it.")
    if answer == "stages" and not stages:
        raise bad("answer", "answer 'stages' needs a 'stages' list naming the reasoning fields; add one or use answer: label.")
    if "label" in stages or "faces" in stages:
        raise bad("stages", "'label' and 'faces' are reserved answer fields, not stage names; rename that stage.")
    system = front.get("system")
    return {
        "needs": tuple(needs),
        "visual": visual,
        "layout": layout,
        "images": images,
        "answer": answer,
        "stages": tuple(stages),
        "description": str(front.get("description") or ""),
        "system": None if system is None else str(system),
    }


# --------------------------------------------------------------------------- loading


def builtin_dir() -> Path:
    from importlib.resources import files

    return Path(str(files("sovtp.prompts")))


TEMPLATE_DIR_ENV = "SOVTP_TEMPLATES"


def _resolve(spec: str, folder: Path | str | None) -> tuple[str, Path]:
    """Folder first (a user's folder may override a built-in name), then built-in names,
    then paths (``./sovtp.j2`` picks a local file over the built-in). Without ``folder``,
    the folder named by ``$SOVTP_TEMPLATES`` (what ``--template-dir`` sets, so worker
    processes see it too)."""
    if folder is None:
        folder = os.environ.get(TEMPLATE_DIR_ENV) or None
    if folder is not None:
        for cand in (Path(folder) / spec, Path(folder) / f"{spec}.j2"):
            if cand.is_file():
                return cand.stem, cand
    if spec in BUILTIN_TEMPLATES:
        return spec, builtin_dir() / f"{spec}.j2"
    p = Path(spec).expanduser()
    for cand in (p, p.with_name(p.name + ".j2")):
        if cand.is_file():
            return cand.stem, cand
    if p.is_dir():
        raise TemplateError(f"template {spec!r} is a folder; name a .j2 file inside it (e.g. {spec}/mine.j2).", spec)
    raise TemplateError(f"unknown template {spec!r}; use one of {', '.join(BUILTIN_TEMPLATES)} or a path to a .j2 file.", spec)


def template_from_source(source: str, name: str, path: Path | None = None) -> Template:
    """Build a Template from text (for tests and API users who keep templates in code)."""
    front, lines = parse_front_matter(source, name)
    declared = _validate(front, lines, name)
    digest = hashlib.sha256(source.encode("utf-8")).hexdigest()
    return Template(name=str(front.get("name") or name), path=path, source=source, sha256=digest, front_matter=front, **declared)


def template_digest(spec: str) -> str:
    """sha256 of the template ``spec`` names, for run keys: editing a template's text
    must not let a rerun skip items answered with the old text. Cached per file state,
    so a run computes it once. A spec that cannot be read keys as its own text (the run
    then fails on it with the template's own error)."""
    try:
        _, path = _resolve(str(spec), None)
        st = path.stat()
    except (TemplateError, OSError):
        return "unresolved:" + str(spec)
    main = _digest_of(str(path), st.st_mtime_ns, st.st_size)
    included = included_files(path)
    if not included:  # the common case: the file's own sha256, as run keys always had it
        return main
    # {% include %}/{% import %}/{% extends %} files render into the prompt too: editing
    # one must re-answer every item, as editing the template itself does
    h = hashlib.sha256(main.encode())
    for f in included:
        try:
            fst = f.stat()
            h.update(f"{f.name}:{_digest_of(str(f), fst.st_mtime_ns, fst.st_size)}".encode())
        except OSError:
            h.update(f"{f.name}:missing".encode())
    return h.hexdigest()


@functools.lru_cache(maxsize=64)
def _digest_of(path: str, mtime_ns: int, size: int) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@functools.lru_cache(maxsize=256)
def _references(path: str, mtime_ns: int, size: int) -> tuple[str | None, ...]:
    """The templates one file includes, imports or extends (None: a name only known when
    rendering), per file state: run keys ask once per item, parsing is milliseconds."""
    from jinja2 import Environment, meta
    from jinja2.exceptions import TemplateSyntaxError

    try:
        return tuple(meta.find_referenced_templates(Environment().parse(Path(path).read_text(encoding="utf-8-sig"))))
    except (OSError, UnicodeDecodeError, TemplateSyntaxError):
        return ()  # the run reports a broken template with its own error


def included_files(path: Path) -> list[Path]:
    """Files of the template's folder that ``path`` pulls in, recursively, in name order.
    A reference Jinja cannot name before rendering (``{% include name_var %}``) counts
    every ``.j2`` file of the folder."""
    path, folder = path.resolve(), path.parent.resolve()
    seen: set[Path] = set()
    todo = [path]
    while todo:
        current = todo.pop()
        try:
            st = current.stat()
        except OSError:
            continue
        refs = _references(str(current), st.st_mtime_ns, st.st_size)
        if any(r is None for r in refs):
            return sorted(f for f in folder.glob("*.j2") if f != path)
        for ref in refs:
            f = (folder / ref).resolve()
            if f != path and f not in seen and folder in f.parents:  # the loader reads nothing outside the folder
                seen.add(f)
                todo.append(f)
    return sorted(seen)


def load_template(spec: str, folder: Path | str | None = None) -> Template:
    """``spec``: a built-in name (sovtp, sov, direct, text_cues), a path to a .j2 file
    (with or without the suffix), or a name looked up in ``folder`` first."""
    name, path = _resolve(str(spec), folder)
    try:
        source = path.read_text(encoding="utf-8-sig")  # a BOM (Windows editors) would hide the front matter
    except (OSError, UnicodeDecodeError) as exc:
        raise TemplateError(
            f"template {str(spec)!r} could not be read ({type(exc).__name__}: {exc}); check the path and that it is UTF-8 text.", str(spec)
        ) from None
    return template_from_source(source, name, path)


# --------------------------------------------------------------------------- rendering


def _environment(template: Template):
    from jinja2 import BaseLoader, FileSystemLoader, StrictUndefined, TemplateNotFound
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    folder = FileSystemLoader(str(template.path.parent)) if template.path is not None else None

    class _Loader(BaseLoader):
        """The template itself under its own name; {% include %} only from its folder
        (FileSystemLoader refuses '..', so includes cannot leave it)."""

        def get_source(self, environment, name):  # type: ignore[override]
            if name == template.name:
                return template.source, template.filename, lambda: True
            if folder is None:
                raise TemplateNotFound(name)
            return folder.get_source(environment, name)

    env = ImmutableSandboxedEnvironment(
        loader=_Loader(), undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True, autoescape=False, keep_trailing_newline=False
    )
    env.globals["images"] = _IMG_ALL
    env.globals["image"] = _image_marker
    return env


def _image_marker(n: int) -> str:
    return f"{_IMG_OPEN}{int(n)}{_IMG_CLOSE}"


def _error_line(exc: BaseException) -> tuple[str | None, int | None]:
    """The template file and line where ``exc`` happened (Jinja rewrites tracebacks so
    template frames carry the template's own file name and line)."""
    lineno = getattr(exc, "lineno", None)
    filename = getattr(exc, "filename", None) or getattr(exc, "name", None)
    if lineno:
        return filename, lineno
    found: tuple[str | None, int | None] = (None, None)
    for fr in traceback.extract_tb(exc.__traceback__):
        if not fr.filename.endswith(".py"):
            found = (fr.filename, fr.lineno)
    return found


def _as_template_error(template: Template, exc: Exception, when: str = "") -> TemplateError:
    from jinja2 import TemplateSyntaxError, UndefinedError
    from jinja2.exceptions import SecurityError

    file, line = _error_line(exc)
    where = f"template {template.name!r} line {line if line is not None else '?'}"
    if file and template.path is not None and Path(file).name not in (template.path.name, template.name):
        where = f"template {template.name!r}, in its included {Path(file).name!r} line {line if line is not None else '?'}"
    msg = str(exc).rstrip(".")
    if isinstance(exc, TemplateSyntaxError):
        return TemplateError(f"{where}: syntax error ({msg}); fix the Jinja syntax.", template.name, line)
    if isinstance(exc, SecurityError):
        return TemplateError(
            f"{where}: the sandbox blocked an unsafe operation ({msg}); templates may only read the documented variables.",
            template.name,
            line,
        )
    if isinstance(exc, UndefinedError):
        m = re.search(r"'([^']+)' is undefined", msg) or re.search(r"has no attribute '([^']+)'", msg)
        var = m.group(1) if m else None
        if "None" in msg or "has no element" in msg:
            # a variable that is None in some clips (no face, no estimate), or a list shorter than asked
            what = f"fails {when}" if when else "reads into a value that can be missing"
            return TemplateError(f"{where}: {what} ({msg}); guard it with {{% if ... %}}.", template.name, line, var)
        return TemplateError(
            f"{where}: undefined variable {var!r} ({msg}){' ' + when if when else ''}; check its spelling against prompts/VARIABLES.md.",
            template.name,
            line,
            var,
        )
    return TemplateError(
        f"{where}: rendering failed{' ' + when if when else ''} ({type(exc).__name__}: {msg}); fix the template.", template.name, line
    )


LOOP_ATTRIBUTES = {
    "index",
    "index0",
    "revindex",
    "revindex0",
    "first",
    "last",
    "length",
    "cycle",
    "depth",
    "depth0",
    "previtem",
    "nextitem",
    "changed",
}


def _known_names() -> set[str]:
    from sovtp.cuetext import VARIABLES

    names = {k for k in VARIABLES if "." not in k and "(" not in k}
    return names | {"images", "image", "range", "dict", "lipsum", "cycler", "joiner", "namespace", "loop"}


def _known_attributes(sample: dict[str, Any]) -> set[str]:
    keys: set[str] = set()

    def walk(v: Any) -> None:
        if isinstance(v, dict):
            for k, x in v.items():
                keys.add(str(k))
                walk(x)
        elif isinstance(v, list):
            for x in v:
                walk(x)

    walk(sample)
    for typ in (str, list, dict, int, float):
        keys |= {a for a in dir(typ) if not a.startswith("_")}
    return keys


def _static_check(template: Template, env, sample: dict[str, Any]) -> None:
    """Typos anywhere in the template, even in branches the sample cues never take."""
    from jinja2 import TemplateSyntaxError, meta, nodes

    try:
        ast = env.parse(template.source, template.name, template.filename)
    except TemplateSyntaxError as exc:
        raise _as_template_error(template, exc) from None
    unknown = sorted(meta.find_undeclared_variables(ast) - _known_names())
    if unknown:
        var = unknown[0]
        line = min((n.lineno for n in ast.find_all(nodes.Name) if n.name == var), default=None)
        raise TemplateError(
            f"template {template.name!r} line {line}: undefined variable {var!r}; check its spelling against prompts/VARIABLES.md.",
            template.name,
            line,
            var,
        )
    attrs = _known_attributes(sample) | LOOP_ATTRIBUTES | {n.attr for n in ast.find_all(nodes.NSRef)}
    own = {n.name for a in ast.find_all(nodes.Assign) for n in a.target.find_all(nodes.Name)}  # {% set ns = namespace() %}
    own |= {n.target for n in ast.find_all(nodes.Import)}  # {% import "macros.j2" as m %}: m.describe
    for node in ast.find_all(nodes.Getattr):
        if node.attr.startswith("_"):
            raise TemplateError(
                f"template {template.name!r} line {node.lineno}: access to attribute {node.attr!r} is unsafe and blocked by the sandbox; remove it.",
                template.name,
                node.lineno,
                node.attr,
            )
        if node.attr not in attrs and not (isinstance(node.node, nodes.Name) and node.node.name in own):
            raise TemplateError(
                f"template {template.name!r} line {node.lineno}: unknown attribute {node.attr!r}; check its spelling against prompts/VARIABLES.md.",
                template.name,
                node.lineno,
                node.attr,
            )


def render_text(template: Template, variables: dict[str, Any]) -> str:
    """The template rendered in the sandbox (image markers still embedded)."""
    env = _environment(template)
    try:
        return env.get_template(template.name).render(**variables)
    except TemplateError:
        raise
    except Exception as exc:  # noqa: BLE001 - every template failure becomes one sentence
        raise _as_template_error(template, exc) from None


def check_template(template: Template, cues: Cues | None = None, clip: Clip | None = None, labels: LabelSet | None = None) -> None:
    """Raise :class:`TemplateError` unless the template renders. Checks the syntax and
    every variable and attribute name statically, then renders it against sample cues
    (or the given ``cues``), against a clip with no face, with all text cues left out,
    and with per-face answers — the situations a run will meet."""
    from sovtp.cuetext import sample_clip_and_cues, template_variables
    from sovtp.labels import DFEW

    labels = labels or DFEW
    s_clip, s_cues = sample_clip_and_cues()
    clip = clip or s_clip
    base = cues if cues is not None else s_cues

    def variables(c: Cues, include: set[str] | None = None, per_face: bool = False, privacy: str = "none") -> dict[str, Any]:
        return template_variables(
            clip,
            c,
            labels,
            include,
            per_face,
            visual=template.visual,
            layout=template.layout,
            stages=list(template.stages),
            answer=template.answer,
            privacy=privacy,
        )

    cases = [
        (variables(base), ""),
        (variables(Cues(ran={"faces": "1"})), "when a clip has no face"),
        (variables(base, include=set()), "when text cues are left out (--cues none)"),
        (variables(base, per_face=True, privacy="blur-all"), "with per-face answers and blurred faces"),
    ]
    sample = {str(i): v for i, (v, _) in enumerate(cases)}
    _static_check(template, _environment(template), sample)
    for f in included_files(template.path) if template.path is not None else []:
        # a typo in an included file is found now too, not on the first clip that takes its branch
        try:
            part = replace(template, name=f.name, path=f, source=f.read_text(encoding="utf-8-sig"))
        except (OSError, UnicodeDecodeError):
            continue  # rendering reports it, naming the file
        try:
            _static_check(part, _environment(template), sample)
        except TemplateError as exc:
            said = str(exc).replace(f"template {f.name!r}", f"template {template.name!r}, in its included {f.name!r}", 1)
            raise TemplateError(said, template.name, exc.line, exc.variable) from None
    for vars_, when in cases:
        try:
            env = _environment(template)
            env.get_template(template.name).render(**vars_)
        except Exception as exc:  # noqa: BLE001
            raise _as_template_error(template, exc, when) from None


def check_needs(template: Template, available: set[str] | frozenset[str]) -> None:
    """Raise :class:`TemplateError` when the template needs a cue kind that no configured
    extractor provides (call before decoding anything)."""
    missing = [n for n in template.needs if n not in available]
    if missing:
        raise TemplateError(
            f"template {template.name!r} needs the cue(s) {', '.join(missing)} but no configured extractor provides them; add the extractor(s) or pick another template.",
            template.name,
            None,
            missing[0],
        )


# --------------------------------------------------------------------------- composing


def _select_images(n: int, count: int | None) -> list[int]:
    """Positions of ``count`` evenly spaced images of ``n`` (the middle one for 1), when
    more were rendered."""
    if count is None or n <= count:
        return list(range(n))
    if count == 1:
        return [(n - 1) // 2]
    return sorted({round(i * (n - 1) / (count - 1)) for i in range(count)})


def _clean(text: str) -> str:
    text = "\n".join(line.rstrip() for line in text.split("\n"))
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def split_parts(rendered: str, images: list[ImagePart]) -> list[TextPart | ImagePart]:
    """Turn the rendered text with image markers into ordered parts; images no marker
    placed go first."""
    pieces: list[TextPart | ImagePart] = []
    placed: set[int] = set()
    pos = 0
    for m in _IMG_RE.finditer(rendered):
        text = _clean(rendered[pos : m.start()])
        if text:
            pieces.append(TextPart(text))
        which = range(len(images)) if m.group(1) == "all" else [int(m.group(1)) - 1]
        for i in which:
            if 0 <= i < len(images) and i not in placed:
                pieces.append(images[i])
                placed.add(i)
        pos = m.end()
    tail = _clean(rendered[pos:])
    if tail:
        pieces.append(TextPart(tail))
    rest: list[TextPart | ImagePart] = [im for i, im in enumerate(images) if i not in placed]
    return rest + pieces


def _stages_schema(labels: LabelSet, stages: list[str], per_face_ids: list[int] | None) -> dict[str, Any]:
    from sovtp.parse import answer_schema

    return answer_schema(labels, stages, per_face_ids)


def compose_prompt(
    template: Template,
    clip: Clip,
    cues: Cues,
    labels: LabelSet,
    images: list[ImagePart],
    include_cues: set[str] | frozenset[str] | None = None,
    per_face: bool = False,
    *,
    visual: str | None = None,
    layout: str | None = None,
    privacy: str = "none",
) -> Prompt:
    """One clip's prompt. Pass ``visual`` / ``layout`` when they differ from the
    template's (``--visual``/``--layout``) and ``privacy`` when faces were blurred, so
    the text describes the images actually sent."""
    picked = _select_images(len(images), template.images)
    chosen = [images[i] for i in picked]
    # one image per sampled frame, fewer sent (front matter images: N): the text names the
    # frames sent, not every frame sampled
    sent = picked if len(images) == len(clip.frames) and len(picked) < len(images) else None
    if layout is None:
        layout = "grid" if len(chosen) == 1 and len(clip.frames) > 1 and template.images is None else template.layout
    from sovtp.cuetext import template_variables

    variables = template_variables(
        clip,
        cues,
        labels,
        include_cues,
        per_face,
        visual=visual or template.visual,
        layout=layout,
        num_images=len(chosen),
        sent_frames=sent,
        stages=list(template.stages),
        answer=template.answer,
        privacy=privacy,
    )
    rendered = render_text(template, variables)
    parts = split_parts(rendered, chosen)
    face_ids = variables["face_ids"] if variables["per_face"] else None
    schema = _stages_schema(labels, list(template.stages), face_ids) if template.answer == "stages" else None
    return Prompt(
        parts=tuple(parts),
        labels=tuple(labels.labels),
        template_name=template.name,
        template_hash=template.sha256,
        system=template.system,
        answer_schema=schema,
    )
