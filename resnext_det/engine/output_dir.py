"""No silent overwrite: a training run refuses an OUTPUT_DIR that holds an earlier run.

detectron2 writes into OUTPUT_DIR whatever is there: a second run with the same config appends
to the first one's ``metrics.json`` and replaces its checkpoints one by one, and a forgotten
``--resume`` silently restarts from MODEL.WEIGHTS. Here a folder that holds an earlier run's
checkpoints or metrics is only used with ``--resume`` (continue it) or ``--overwrite`` (remove
that run's checkpoints, ``last_checkpoint``, metrics and event files first, each named in the
log); other files in the folder are never touched.
"""

from __future__ import annotations

import logging
from pathlib import Path

from ..errors import OutputDirError

__all__ = ["earlier_run_files", "prepare_output_dir"]

logger = logging.getLogger("resnext_det")

#: What a training run writes that a new run would overwrite or mix with.
RUN_PATTERNS = (
    "last_checkpoint",
    "model_*.pth",
    "model_*.pth.partial",
    "metrics.json",
    "events.out.tfevents.*",
)


def earlier_run_files(output_dir: str | Path) -> list[Path]:
    directory = Path(output_dir)
    if not directory.is_dir():
        return []
    return sorted({path for pattern in RUN_PATTERNS for path in directory.glob(pattern)})


def prepare_output_dir(output_dir: str | Path, resume: bool, overwrite: bool) -> None:
    """Refuse, continue or clear an OUTPUT_DIR before training starts (see the module docstring)."""
    if resume and overwrite:
        raise OutputDirError("--resume continues the run in OUTPUT_DIR and --overwrite removes it: pass one")
    found = earlier_run_files(output_dir)
    if not found or resume:
        return
    if not overwrite:
        shown = ", ".join(p.name for p in found[:4]) + (
            f" and {len(found) - 4} more" if len(found) > 4 else ""
        )
        raise OutputDirError(
            f"OUTPUT_DIR {output_dir} holds an earlier run ({shown}): pass --resume to continue it, "
            "--overwrite to remove its checkpoints and metrics and start again, or choose another OUTPUT_DIR"
        )
    for path in found:
        logger.warning("--overwrite: removing %s", path)
        path.unlink()
