"""Running the project's tools from tests: in this process by default, in a child process only
where the process itself is what a test checks (SIGKILL and resume, the exit status a shell
sees, a fresh interpreter's imports). A tool that starts several processes (``--num-gpus 2``, Slurm's
local executor) starts them from this process as well.

``run_tool`` runs ``python -W ignore SCRIPT ARGS`` through ``resnext_det.engine.in_process`` (the
same ``__main__``, with the child's view of the world and nothing left behind; ``tools/demo.py``
runs its stages the same way) and captures stdout and stderr at the file descriptors, as a
child's would be, so detectron2's log handlers (bound to ``sys.stdout`` when they are made) are
captured too. The result is a ``subprocess.CompletedProcess`` with the exit status a child would
have had.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

from resnext_det.engine.in_process import run_in_process

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
    with _captured_fds() as captured:
        code = run_in_process(script, list(args), env, cwd)
    stdout, stderr = captured()
    return subprocess.CompletedProcess([sys.executable, script, *args], code, stdout, stderr)


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
