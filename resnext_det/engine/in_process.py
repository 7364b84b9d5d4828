"""Run one of the project's tools in this process, as ``python -W ignore SCRIPT ARGS`` would run it
in a child, and leave nothing behind.

A child process pays the torch + detectron2 imports (3-10 s on a 2-core machine) before it does
anything: ``tools/demo.py`` ran ten of them, the test suite about 150. ``run_in_process`` runs the
script's ``__main__`` with ``runpy`` instead, with the child's view of the world:

* argv, the working directory, environment overrides, ``sys.path`` and warnings filters are set
  for the run and restored after it;
* the logging handlers and detectron2's ``setup_logger`` cache that the run added are removed, so
  a later run logs to its own folder only and to the console again (no line twice);
* the demo splits are registered afresh for the run under its ``DETECTRON2_DATASETS`` (as a
  child's ``setup_cfg`` would), and detectron2's dataset and metadata catalogs (and the datasets
  a run registers with ``--dataset``) are put back as they were afterwards;
* torch's deterministic mode and thread count, which ``DETERMINISTIC`` and ``launch`` change, are
  restored.

It returns the exit status a child would have had: 0, the ``sys.exit`` code, or 1 with
``error: ...`` (a string exit) or the traceback printed to stderr. A tool's own ``--num-gpus N``
processes start as they would from a child. What only a process shows (SIGKILL, a crash of the
interpreter, imports in a fresh interpreter) needs a real child.
"""

from __future__ import annotations

import logging
import os
import runpy
import sys
import traceback
import warnings
from contextlib import contextmanager
from pathlib import Path

__all__ = ["isolated_run", "run_in_process"]


def run_in_process(script: str | os.PathLike, args: list[str], env: dict | None = None, cwd=None) -> int:
    """Run ``script``'s ``__main__`` with ``args`` (``cwd``: where a relative ``script`` is found
    and the run's working directory; default: this one); return its exit status."""
    cwd = Path(cwd or os.getcwd())
    with isolated_run(str(script), list(args), env or {}, cwd):
        return _run_main(cwd / script)


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
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
    return 0


@contextmanager
def isolated_run(script: str, args: list[str], env: dict, cwd: Path):
    """The state a tool's run may change, set for it and restored after it (module docstring)."""
    import torch
    from detectron2.data import DatasetCatalog, MetadataCatalog
    from detectron2.utils import logger as d2_logger

    from ..data.demo_dataset import DEMO_SPLITS

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
