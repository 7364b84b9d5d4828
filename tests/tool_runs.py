"""Running the project's tools from tests: in this process by default, in a child process only
where the process itself is what a test checks (SIGKILL and resume, several processes, the exit
status a shell sees).

A child process pays the torch + detectron2 imports (3-10 s on a 2-core machine) before it does
anything; the suite ran about 150 of them. ``run_tool`` runs ``python -W ignore SCRIPT ARGS`` as
``runpy`` runs ``__main__``, with the child's view of the world and nothing left behind:

* argv, the working directory (the checkout unless ``cwd``), environment overrides, ``sys.path`` and warnings
  filters are set for the run and restored after it;
* stdout and stderr are captured at the file descriptors, as a child's would be, so detectron2's
  log handlers (bound to ``sys.stdout`` when they are made) are captured too;
* the logging handlers and detectron2's ``setup_logger`` cache that the run added are removed, so
  a later run logs to its own folder only and to the console again;
* the demo splits are registered afresh for the run under its ``DETECTRON2_DATASETS`` (as a
  child's ``setup_cfg`` would), and detectron2's dataset and metadata catalogs, the datasets a
  run registers with ``--dataset``, are put back as they were afterwards;
* torch's deterministic mode and thread count, which ``DETERMINISTIC`` changes, are restored.

The result is a ``subprocess.CompletedProcess`` with the exit status a child would have had: 0,
the ``sys.exit`` code, 1 with ``error: ...`` (a string exit) or a traceback on stderr.
"""

from __future__ import annotations

import logging
import os
import runpy
import subprocess
import sys
import tempfile
import traceback
import warnings
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_tool_process(
    *args: str, env: dict | None = None, timeout: float = 900
) -> subprocess.CompletedProcess:
    """``python -W ignore ARGS`` in a child process in the checkout, with ``env`` added."""
    return subprocess.run(
        [sys.executable, "-W", "ignore", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def run_tool(
    script: str, *args: str, env: dict | None = None, cwd: Path | str = ROOT
) -> subprocess.CompletedProcess:
    """``python -W ignore SCRIPT ARGS`` run in this process, in ``cwd`` (see the module's docstring)."""
    with _captured_fds() as captured, _isolated_run(script, args, env or {}, Path(cwd)):
        code = _run_main(Path(cwd) / script)
    stdout, stderr = captured()
    return subprocess.CompletedProcess([sys.executable, script, *args], code, stdout, stderr)


def _run_main(script: Path) -> int:
    try:
        runpy.run_path(str(script), run_name="__main__")
    except SystemExit as stop:
        if stop.code is None or isinstance(stop.code, int):
            return stop.code or 0
        print(stop.code, file=sys.stderr)  # what the interpreter prints for sys.exit("...")
        return 1
    except Exception:  # a bug: a child would print the traceback and exit 1
        traceback.print_exc()
        return 1
    return 0


@contextmanager
def _captured_fds():
    """Redirect file descriptors 1 and 2 to temporary files, with ``sys.stdout``/``sys.stderr``
    writing to them (pytest's capture replaces both with its own objects); yields a function
    returning the two texts."""
    saved_streams = sys.stdout, sys.stderr
    for stream in saved_streams:
        stream.flush()
    saved = {fd: os.dup(fd) for fd in (1, 2)}
    files = {fd: tempfile.TemporaryFile(mode="w+b") for fd in (1, 2)}
    texts: dict[int, str] = {}
    try:
        for fd, file in files.items():
            os.dup2(file.fileno(), fd)
        sys.stdout = open(1, "w", buffering=1, closefd=False)  # noqa: SIM115
        sys.stderr = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115
        yield lambda: (texts[1], texts[2])
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        sys.stdout, sys.stderr = saved_streams
        for fd, file in files.items():
            os.dup2(saved[fd], fd)
            os.close(saved[fd])
            file.seek(0)
            texts[fd] = file.read().decode(errors="replace")
            file.close()


@contextmanager
def _isolated_run(script: str, args: tuple[str, ...], env: dict, cwd: Path):
    from resnext_det.data.demo_dataset import DEMO_SPLITS

    import torch
    from detectron2.data import DatasetCatalog, MetadataCatalog
    from detectron2.utils import logger as d2_logger

    saved_argv, saved_path, saved_cwd = sys.argv, list(sys.path), os.getcwd()
    saved_env = {key: os.environ.get(key) for key in env}
    saved_catalogs = (
        dict(DatasetCatalog),
        {name: MetadataCatalog.get(name) for name in MetadataCatalog.list()},
    )
    saved_handlers = _logging_handlers()
    deterministic, threads = torch.are_deterministic_algorithms_enabled(), torch.get_num_threads()
    try:
        sys.argv = [script, *args]
        os.chdir(cwd)
        os.environ.update(env)
        for name in DEMO_SPLITS:  # registered again where this run's DETECTRON2_DATASETS points
            DatasetCatalog.pop(name, None)
            MetadataCatalog.pop(name, None)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        sys.argv, sys.path[:] = saved_argv, saved_path
        os.chdir(saved_cwd)
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        DatasetCatalog.clear()
        DatasetCatalog.update(saved_catalogs[0])
        MetadataCatalog.clear()
        MetadataCatalog.update(saved_catalogs[1])
        _restore_logging_handlers(saved_handlers)
        d2_logger.setup_logger.cache_clear()
        torch.use_deterministic_algorithms(deterministic)
        torch.set_num_threads(threads)


def _logging_handlers() -> dict[str, list[logging.Handler]]:
    loggers = {"": logging.getLogger()}
    loggers |= {
        n: lg for n, lg in logging.Logger.manager.loggerDict.items() if isinstance(lg, logging.Logger)
    }
    return {name: list(lg.handlers) for name, lg in loggers.items()}


def _restore_logging_handlers(saved: dict[str, list[logging.Handler]]) -> None:
    for name, handlers in _logging_handlers().items():
        logger = logging.getLogger(name) if name else logging.getLogger()
        for handler in handlers:
            if handler not in saved.get(name, []):
                logger.removeHandler(handler)
                handler.flush()
