"""How every tool starts: check the inputs in the launching process, launch, report user errors.

A mistake in the command (a missing dataset, a config key that does not exist, an OUTPUT_DIR
that holds an earlier run ...) is found by ``preflight`` before any worker process or data
loader starts, and printed as one paragraph (``error: ...``, exit status 1). The same holds for
the user errors that can only appear later (an unreadable image, a diverged loss), also when
they happen in a worker process. Bugs keep their traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from contextlib import contextmanager

import torch

from ..errors import ConfigError, user_error_message
from .launch import check_num_gpus, launch

__all__ = ["check_device", "check_num_gpus", "exit_on_user_error", "run_tool"]


def check_device(device: str) -> None:
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(
            f"MODEL.DEVICE is {device!r} but this machine has no usable GPU; add `MODEL.DEVICE cpu` "
            "to the command line"
        )


@contextmanager
def exit_on_user_error():
    """A user error inside (from any process) exits with ``error: <message>`` and status 1;
    anything else keeps its traceback."""
    try:
        yield
    except Exception as e:
        message = user_error_message(e)
        if message is None:
            raise
        sys.exit(f"error: {message}")


def run_tool(main: Callable, args, preflight: Callable[[], object] | None = None):
    """``preflight()``, then ``launch(main, ...)`` with the tool's arguments, under
    ``exit_on_user_error``."""
    with exit_on_user_error():
        check_num_gpus(args.num_gpus)  # before preflight, which may generate the demo data
        if preflight is not None:
            preflight()
        return launch(main, args.num_gpus, args.num_machines, args.machine_rank, args.dist_url, args=(args,))
