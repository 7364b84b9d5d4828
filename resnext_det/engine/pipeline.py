"""The paper's detection pipeline as a sequence of the project's own tools, resumable.

``tools/demo.py`` (on the generated data) and ``tools/reproduce_table8.py`` (one row of Table 8
on COCO) both run appendix B's schedule: ``train_rpn.py`` (the RPN, then its proposal stores),
``train_fast_rcnn.py`` on those proposals, ``eval_coco.py`` on the test set. ``ToolStages`` runs each
tool as a user runs it (the command is printed first; in this process, with the state a child
would have) unless the stage is complete, so an interrupted pipeline continues where it stopped:
a stage whose result is there and valid is kept, a half-trained one resumes from its last
checkpoint (``--resume``), the others run.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..data.demo_dataset import register_named_demo_splits
from ..errors import ResNeXtDetError
from ..proposals.handoff import checked_stage1_outputs
from .in_process import run_in_process
from .output_dir import earlier_run_files

__all__ = ["DetectionStageDirs", "ToolStages", "resume_flag", "run_detection_stages", "stage1_complete"]

#: ``done``: a file that exists when the stage is complete, or a check that returns why it is not
#: (``None`` when it is)
Done = Path | Callable[[], "str | None"]


class ToolStages:
    """Runs one tool per stage, unless the stage is complete; records each run's seconds.

    ``root``: where the tools' relative paths (``tools/train_rpn.py``) are found, and the runs'
    working directory. A stage that fails, or finishes without being complete, stops the
    pipeline (``SystemExit`` with a one-line reason; the tool's own output is above it)."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.seconds: dict[str, float] = {}

    def __call__(self, name: str, done: Done, command: list[str]) -> None:
        missing = _why_not_done(done)
        if missing is None:
            print(f"\n== {name}: kept ({_describe(done)}; pass --overwrite to redo)", flush=True)
            return
        print(f"\n== {name}\n$ {' '.join(command)}", flush=True)
        start = time.perf_counter()
        status = run_in_process(command[0], command[1:], cwd=self.root)
        self.seconds[name] = round(time.perf_counter() - start, 1)
        if status != 0:
            sys.exit(f"error: stage {name!r} failed (exit {status}); its output is above")
        missing = _why_not_done(done)
        if missing is not None:
            sys.exit(f"error: stage {name!r} finished but is not complete: {missing}")


def _why_not_done(done: Done) -> str | None:
    if isinstance(done, Path):
        return None if done.exists() else f"{done} was not written"
    return done()


def _describe(done: Done) -> str:
    return str(done) if isinstance(done, Path) else getattr(done, "__doc__", None) or "complete"


def resume_flag(stage_dir: Path) -> list[str]:
    """``["--resume"]`` when ``stage_dir`` holds a half-done training run (its checkpoints or
    metrics): the training tools refuse such a folder otherwise, so that nothing is lost."""
    return ["--resume"] if earlier_run_files(stage_dir) else []


def stage1_complete(rpn_dir: Path, datasets) -> Callable[[], str | None]:
    """Stage 1 is complete when its proposal store of every dataset exists and covers every
    image (the stores are what it writes last; a run stopped while writing them is redone)."""

    def check() -> str | None:
        register_named_demo_splits(datasets)  # as the tools do when a config names them
        try:
            checked_stage1_outputs(list(datasets), str(rpn_dir))
        except ResNeXtDetError as problem:
            return str(problem)
        return None

    check.__doc__ = f"the proposal stores in {rpn_dir} cover {', '.join(datasets)}"
    return check


@dataclass(frozen=True)
class DetectionStageDirs:
    """Where ``run_detection_stages`` writes: stage 1 (also the proposals), stage 2, evaluation."""

    rpn: Path
    fast_rcnn: Path
    eval: Path

    @classmethod
    def under(cls, out: Path) -> DetectionStageDirs:
        return cls(out / "rpn", out / "fast_rcnn", out / "eval")


def run_detection_stages(
    stages: ToolStages,
    dirs: DetectionStageDirs,
    *,
    configs: tuple[str, str],
    datasets: tuple[tuple[str, ...], tuple[str, ...]],
    train_args: Callable[[Path], list[str]],
    eval_args: list[str],
    eval_flags: tuple[str, ...] = (),
    eval_done: Path | None = None,
) -> None:
    """Appendix B's schedule: stage 1, stage 2 on its proposals (backbone from ImageNet again),
    the evaluation of stage 2 on the test set.

    ``configs``: (stage 1's, stage 2's) config file; ``datasets``: (training, test) sets, whose
    proposals stage 1 must write; ``train_args(stage_dir)``: the launch flags and overrides of a
    training run that writes to ``stage_dir`` (``--num-gpus``, the weights, the output folder);
    ``eval_args``: the evaluation's overrides (the trained weights, its output folder);
    ``eval_done``: the file that says the evaluation is complete (default its ``coco_eval.json``)."""
    rpn_config, frcn_config = configs
    stages(
        "stage 1: RPN, then proposals",
        stage1_complete(dirs.rpn, dict.fromkeys((*datasets[0], *datasets[1]))),
        ["tools/train_rpn.py", "--config-file", rpn_config, *resume_flag(dirs.rpn), *train_args(dirs.rpn)],
    )
    stage2 = ["--config-file", frcn_config, "--proposals", str(dirs.rpn)]
    stages(
        "stage 2: Fast R-CNN on the proposals",
        dirs.fast_rcnn / "model_final.pth",
        ["tools/train_fast_rcnn.py", *stage2, *resume_flag(dirs.fast_rcnn), *train_args(dirs.fast_rcnn)],
    )
    stages(
        "COCO evaluation on the test set",
        eval_done or dirs.eval / "coco_eval.json",
        ["tools/eval_coco.py", *stage2, *eval_flags, *eval_args],
    )
