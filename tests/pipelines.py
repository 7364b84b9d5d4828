"""The tiny deterministic pipeline every end-to-end tool test reads: the runnable blocks of
``docs/detection.md`` (YAML: stage 1, stage 2 on its proposals, ``eval_coco.py --analysis``,
``plot_metrics.py``) and ``docs/configs.md`` (their LazyConfig twins), run exactly as the pages
show them, once per test session (``tests/conftest.py``'s ``tiny_pipeline``).

Stage 1 trains 12 iterations on the 40 val images with a checkpoint every 3, stage 2 six, with
``DETERMINISTIC True`` and ``SEED 0``: what the crash/resume tests kill and compare against, what the
LazyConfig twins must equal, what the docs promise a reader can run in a minute.
"""

from __future__ import annotations

import functools
import importlib.util
import shlex
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from tool_runs import ROOT, run_tool

#: the checkout's folders a block's commands name, linked into the folder the blocks run in
CHECKOUT_FOLDERS = ("configs", "tools", "scripts", "benchmarks", "pretrain")
#: the pages whose runnable blocks are the pipeline: (page, block index)
YAML_BLOCK = ("docs/detection.md", 0)
LAZY_BLOCK = ("docs/configs.md", 0)


@functools.cache  # block_commands reads a page's blocks several times per session
def _docs_drift():
    spec = importlib.util.spec_from_file_location("docs_drift", ROOT / "scripts" / "docs_drift.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def link_checkout(folder: Path) -> None:
    """Link the checkout's folders a block names into ``folder``, where the block then runs (so its
    outputs and the demo data land there)."""
    for name in CHECKOUT_FOLDERS:
        (folder / name).symlink_to(ROOT / name)


def block_commands(page: str, index: int) -> list[list[str]]:
    """The block's commands as argument lists, without the leading ``python``."""
    code = _docs_drift().runnable_blocks((ROOT / page).read_text())[index]
    commands = []
    for line in code.replace("\\\n", " ").splitlines():
        words = shlex.split(line, comments=True)
        if not words:
            continue
        if words[0] != "python":
            raise ValueError(f"{page} block {index}: the pipeline runs python commands only, got {line!r}")
        commands.append(words[1:])
    return commands


def with_output(command: list[str], directory: Path | str) -> list[str]:
    """``command`` writing to ``directory`` instead (``OUTPUT_DIR`` or ``train.output_dir=``)."""
    out = list(command)
    for i, word in enumerate(out):
        if word == "OUTPUT_DIR":
            out[i + 1] = str(directory)
            return out
        if word.startswith("train.output_dir="):
            out[i] = f"train.output_dir={directory}"
            return out
    raise ValueError(f"{command} names no output folder")


def relocated(commands: list[list[str]], old: str, new: str) -> list[list[str]]:
    """Every argument starting with ``old`` (or ``key=old``) starting with ``new`` instead."""

    def move(word: str) -> str:
        key, sep, value = word.rpartition("=")
        if value.startswith(old):
            return f"{key}{sep}{new}{value[len(old) :]}"
        return word

    return [[move(w) for w in command] for command in commands]


@dataclass
class TinyPipeline:
    """Where the docs' blocks ran (``root``, with the checkout's folders linked in) and what they
    printed. ``yaml``, ``again`` and ``lazy`` are the output folders of the YAML block, the YAML
    block's two training stages run a second time, and the LazyConfig block."""

    root: Path
    env: dict
    commands: dict[str, list[list[str]]]
    results: dict[str, list[subprocess.CompletedProcess]] = field(default_factory=dict)

    @property
    def yaml(self) -> Path:
        return self.root / "output" / "try"

    @property
    def again(self) -> Path:
        return self.root / "output" / "try_again"

    @property
    def lazy(self) -> Path:
        return self.root / "output" / "try_lazy"

    def run(self, *command: str) -> subprocess.CompletedProcess:
        """One tool in this process, in the pipeline's folder and data."""
        return run_tool(*command, env=self.env, cwd=self.root)


def run_tiny_pipeline(root: Path) -> TinyPipeline:
    root.mkdir(parents=True, exist_ok=True)
    link_checkout(root)
    yaml = block_commands(*YAML_BLOCK)
    commands = {
        "yaml": yaml,
        "again": relocated(yaml[:2], "output/try/", "output/try_again/"),
        "lazy": block_commands(*LAZY_BLOCK),
    }
    pipeline = TinyPipeline(root, {"DETECTRON2_DATASETS": str(root / "datasets")}, commands)
    for name, block in commands.items():
        pipeline.results[name] = []
        for command in block:
            result = pipeline.run(*command)
            assert result.returncode == 0, f"{name}: {shlex.join(command)}\n{result.stderr[-3000:]}"
            pipeline.results[name].append(result)
    return pipeline
