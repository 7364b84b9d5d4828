"""The checks that keep README.md and docs/*.md true to the code (``tests/test_docs.py`` runs them).

Each check takes a page's text and returns its problems, one line each, so that a test can also
show that it catches a flag, key, link or number changed on one side only:

* ``link_problems``: every relative link and image resolves to a file, and a ``#anchor`` to a
  heading of that page;
* ``flag_problems``: every ``--flag`` of a ``python tools|scripts|benchmarks/NAME.py`` command
  (in a code block or an inline code span) is an option of that script, and a lone ``--flag``
  span is an option of some script;
* ``config_key_problems``: every dotted upper-case key (``MODEL.RESNEXT.DEPTH``; ``{A,B}``
  alternatives expanded, ``.*`` a prefix) exists in the detection or pretraining config, and
  every LazyConfig key (``train.init_checkpoint``) in the demo's LazyConfig files;
* ``name_problems``: every ``resnext_det.module.Name`` a page names can be imported (the module)
  and looked up (the names after it);
* ``quote_problems``: every decimal number in prose that quotes a result file (between
  ``<!-- quotes: PATH ... -->`` and ``<!-- /quotes -->``) is in one of those files, as written
  or as a JSON value rounded to the digits shown;
* ``runnable_blocks``: the shell blocks a page marks as runnable on the demo data (a fence
  opened with ```` ```bash demo ````).
"""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import re
import runpy
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

_FENCE = re.compile(r"^```([^\n]*)\n(.*?)^```", re.S | re.M)
_SPAN = re.compile(r"`([^`\n]+)`")
_LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
_COMMAND = re.compile(r"python\s+((?:tools|scripts|benchmarks)/[\w]+\.py)((?:\s+[^\s;&|]*)*)")
_FLAG = re.compile(r"^--[a-z][a-z0-9-]*")
_KEY = re.compile(r"(?<![\w.$/{])([A-Z][A-Z0-9_]*(?:\.(?:[A-Z][A-Z0-9_]*\*?|\*|\{[A-Z0-9_,]+\}))+)(?![\w(])")
_LAZY_ROOTS = "train|model|dataloader|optimizer|lr_multiplier"
_LAZY_KEY = re.compile(rf"(?<![\w./])((?:{_LAZY_ROOTS})(?:\.[a-z_][a-z0-9_]*)+)(?![\w(.])")
#: dotted words that are not config keys: file names, and the typo docs/troubleshooting.md shows
_NOT_KEYS = {"README.md", "train.max_itr"}
#: a lower-case "model.onnx" is a file, not the LazyConfig key model.onnx
_FILE_SUFFIXES = {"onnx", "pt2", "py", "pth", "json", "yaml", "pkl", "md", "png", "txt"}
_PYTHON_NAME = re.compile(r"(?<![\w/.])(resnext_det(?:\.[A-Za-z_]\w*)+)")


def heading_anchor(title: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces as dashes."""
    return re.sub(r"[^\w\- ]", "", title.strip().lower()).replace(" ", "-")


def anchors(text: str) -> set[str]:
    return {heading_anchor(line.lstrip("#")) for line in text.splitlines() if re.match(r"^#+ ", line)}


def _without_code(text: str) -> str:
    return _SPAN.sub("", _FENCE.sub("", text))


def link_problems(page: Path, text: str | None = None) -> list[str]:
    text = page.read_text() if text is None else text
    problems = []
    for target in _LINK.findall(_without_code(text)):
        if re.match(r"^[a-z]+://|^mailto:", target):
            continue
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            problems.append(f"{page.name}: link {target} -> {file} does not exist")
        elif anchor and file.suffix == ".md" and anchor not in anchors(file.read_text()):
            problems.append(f"{page.name}: link {target}: {file.name} has no heading #{anchor}")
    return problems


def code_texts(text: str, python: bool = True) -> list[str]:
    """The page's code: each fenced block (continuation lines joined) and each inline span;
    without ``python``, not the Python blocks (their ``model.x`` are variables, not keys)."""
    blocks = [
        body.replace("\\\n", " ")
        for info, body in _FENCE.findall(text)
        if python or info.split()[:1] != ["python"]
    ]
    return blocks + _SPAN.findall(_FENCE.sub("", text))


def script_options(script: str) -> set[str]:
    """The ``--options`` of a project script, from its ``--help`` (run in this process)."""
    out = io.StringIO()
    argv = sys.argv
    sys.argv = [script, "--help"]
    try:
        with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
            runpy.run_path(str(ROOT / script), run_name="__main__")
    finally:
        sys.argv = argv
    return set(re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", out.getvalue()))


def commands(text: str) -> list[tuple[str, list[str]]]:
    """(script, its --flags) for every ``python tools|scripts|benchmarks/NAME.py ...`` in code."""
    found = []
    for code in code_texts(text):
        for line in code.splitlines():
            for match in _COMMAND.finditer(line):
                flags = [m[0] for word in match[2].split() if (m := _FLAG.match(word))]
                found.append((match[1], flags))
    return found


def flag_problems(text: str, options: dict[str, set[str]], page: str = "page") -> list[str]:
    """``options``: {script: its options} for every script the pages run."""
    problems = []
    for script, flags in commands(text):
        if script not in options:
            problems.append(f"{page}: {script} is not a script of this project")
            continue
        problems += [f"{page}: {script} has no option {f}" for f in flags if f not in options[script]]
    known = set().union(*options.values()) if options else set()
    for span in _SPAN.findall(_FENCE.sub("", text)):
        lone = _FLAG.match(span)
        if lone and lone[0] == span.split()[0] and lone[0] not in known:
            problems.append(f"{page}: `{span}` is no option of any script")
    return problems


def _expand(key: str) -> list[str]:
    match = re.search(r"\{([A-Z0-9_,]+)\}", key)
    if not match:
        return [key]
    head, tail = key[: match.start()], key[match.end() :]
    return [k for part in match[1].split(",") for k in _expand(head + part + tail)]


def config_key_problems(text: str, keys: set[str], page: str = "page", lazy=None) -> list[str]:
    """``keys``: every dotted key of the configs; ``lazy``: LazyConfigs to look ``train.*`` /
    ``model.*`` ... keys up in (a key is known when one of them has it, or its node's callable
    takes it as an argument)."""
    problems = []
    for code in code_texts(text):
        for word in _KEY.findall(code):
            if word in _NOT_KEYS:
                continue
            for key in _expand(word):
                if key.endswith("*"):  # KEY.* or KEY_*: a prefix
                    ok = any(k.startswith(key[:-1]) for k in keys)
                else:
                    ok = key in keys
                if not ok:
                    problems.append(f"{page}: config key {key} does not exist")
    for code in code_texts(text, python=False) if lazy is not None else []:
        for key in _LAZY_KEY.findall(code):
            if key in _NOT_KEYS or key.rsplit(".", 1)[1] in _FILE_SUFFIXES:
                continue
            if not any(_lazy_has(cfg, key) for cfg in lazy):
                problems.append(f"{page}: LazyConfig key {key} is in none of the LazyConfig twins")
    return problems


def _lazy_has(cfg, key: str) -> bool:
    from resnext_det.engine.lazy_config import check_override_key
    from resnext_det.errors import ConfigError

    try:
        check_override_key(cfg, key, "the twin")
    except ConfigError:
        return False
    return True


def config_keys() -> set[str]:
    """Every dotted key of the detection config (detectron2's plus resnext_det's), of
    pretraining's and CIFAR's (``update_docs.built_configs``), with every prefix
    (``MODEL.RESNEXT``), and the renamed ones."""
    sys.path.insert(0, str(Path(__file__).parent))
    from update_docs import built_configs

    keys = set()

    def walk(node, prefix=""):
        for name, value in node.items():
            key = f"{prefix}{name}"
            keys.add(key)
            if hasattr(value, "items"):
                walk(value, key + ".")

    configs = built_configs()
    for cfg in configs.values():
        walk(cfg)
    pretraining = configs["pretraining"]
    renamed = pretraining.__dict__.get(type(pretraining).RENAMED_KEYS, {})
    keys |= set(renamed)  # old names (SOLVER.CHANNELS_LAST): refused with the new one named
    return {k for k in keys if "." in k}


_QUOTES = re.compile(r"<!-- quotes: (?P<files>[^>]+?) -->(?P<body>.*?)<!-- /quotes -->", re.S)
_DECIMAL = re.compile(r"(?<![\w.])\d+\.\d+(?![\w.])")
_GENERATED = re.compile(r"<!-- generated: .*?<!-- /generated -->", re.S)


def _json_numbers(value) -> list[float]:
    if isinstance(value, dict):
        return [n for v in value.values() for n in _json_numbers(v)]
    if isinstance(value, list):
        return [n for v in value for n in _json_numbers(v)]
    return [float(value)] if isinstance(value, (int, float)) and not isinstance(value, bool) else []


def quote_problems(text: str, page: str = "page", root: Path = ROOT) -> list[str]:
    problems = []
    for match in _QUOTES.finditer(text):
        files = [root / f for f in match["files"].split()]
        missing = [str(f) for f in files if not f.is_file()]
        if missing:
            problems.append(f"{page}: quoted file {', '.join(missing)} does not exist")
            continue
        written = "\n".join(f.read_text() for f in files)
        values = [n for f in files if f.suffix == ".json" for n in _json_numbers(json.loads(f.read_text()))]
        for number in _DECIMAL.findall(_GENERATED.sub("", match["body"])):
            digits = len(number.split(".")[1])
            as_written = re.search(rf"(?<![\d.]){re.escape(number)}(?!\d)", written)
            if not as_written and not any(round(v, digits) == float(number) for v in values):
                problems.append(f"{page}: {number} is in none of {match['files']}")
    return problems


def runnable_blocks(text: str) -> list[str]:
    """The shell blocks marked ```` ```bash demo ````: commands that run on the demo data."""
    return [body for info, body in _FENCE.findall(text) if info.split()[:2] == ["bash", "demo"]]


def name_problems(text: str, page: str = "page") -> list[str]:
    """Every ``resnext_det.a.b.Name`` in ``text``: its longest importable prefix is a module, and
    each name after it an attribute of what comes before (a class renamed in the code, or misspelt
    in the page, is named)."""
    problems = []
    for dotted in sorted(set(_PYTHON_NAME.findall(text))):
        parts = dotted.split(".")
        for split in range(len(parts), 0, -1):
            try:
                found = importlib.import_module(".".join(parts[:split]))
                break
            except ImportError:
                continue
        for name in parts[split:]:
            if not hasattr(found, name):
                problems.append(f"{page}: {dotted} does not exist ({'.'.join(parts[:split])} has no {name})")
                break
            found = getattr(found, name)
            split += 1
    return problems
