"""The errors a user can cause, and how the tools report them: one paragraph, no traceback.

Every error this project raises for bad input (a missing file, a config key that does not exist,
a weights file of another architecture, a run that diverged ...) derives from
``ResNeXtDetError``, whose message names the file or key, says what was expected and what to
do. The tools print that message and exit with status 1
(``resnext_det.engine.cli.exit_on_user_error``); anything else is a bug and keeps its
traceback. docs/troubleshooting.md's table lists them all.
"""

from __future__ import annotations

__all__ = [
    "AnnotationFileError",
    "ConfigError",
    "DatasetFileError",
    "DatasetLayoutError",
    "ExportError",
    "ImageFileError",
    "MissingFileError",
    "OutputDirError",
    "ProposalFileError",
    "ResNeXtDetError",
    "SlurmJobError",
    "TemplateError",
    "TrainingDivergedError",
    "WeightsMismatchError",
    "diverged",
    "error_from_report",
    "error_report",
    "user_error_message",
]


class ResNeXtDetError(Exception):
    """Base of every error caused by the user's input rather than by a bug."""


class ImageFileError(ResNeXtDetError, OSError):
    """An image named by a dataset is missing, truncated or not an image."""


class ConfigError(ResNeXtDetError, ValueError):
    """A config file or ``KEY VALUE`` override that does not exist or has the wrong type."""


class OutputDirError(ResNeXtDetError, FileExistsError):
    """OUTPUT_DIR holds an earlier run, and neither --resume nor --overwrite was given."""


class TrainingDivergedError(ResNeXtDetError, FloatingPointError):
    """A loss or a weight became infinite or NaN; training stopped before saving it."""


class DatasetFileError(ResNeXtDetError, FileNotFoundError):
    """A registered dataset's annotation file or image folder is missing."""


class AnnotationFileError(ResNeXtDetError, ValueError):
    """A COCO json that does not parse or breaks the format (see the module docstring)."""


class ProposalFileError(ResNeXtDetError, RuntimeError):
    """A proposal file is missing, malformed, or does not match its dataset."""


class WeightsMismatchError(ResNeXtDetError, ValueError):
    """A weights file does not fit the model it is meant for."""


class TemplateError(ResNeXtDetError, ValueError):
    """A bad template value; ``argument`` names it (``"depth"``, ``"cardinality"`` ...)."""

    def __init__(self, argument: str, message: str):
        super().__init__(message)
        self.argument = argument


class DatasetLayoutError(ResNeXtDetError, RuntimeError):
    """The dataset folder is not the layout the recipe expects; the message says what is."""


class MissingFileError(ResNeXtDetError, FileNotFoundError):
    """A file named on the command line or in a config does not exist."""


class SlurmJobError(ResNeXtDetError, RuntimeError):
    """A job submitted with ``--slurm --slurm-wait`` failed; the message names its log."""


class ExportError(ResNeXtDetError, RuntimeError):
    """A model cannot be exported (an operator without a translation), or an exported model's
    folder is unusable (missing or changed files, another format or device)."""


def _user_error_classes() -> dict[str, type[ResNeXtDetError]]:
    """{qualified name: class} of every user error."""
    classes, todo = {}, [ResNeXtDetError]
    while todo:
        cls = todo.pop()
        classes[cls.__qualname__] = cls
        todo.extend(cls.__subclasses__())
    return classes


def error_report(error: ResNeXtDetError) -> dict:
    """A user error as data, for a worker process to hand to its parent (``error_from_report``)."""
    return {
        "class": type(error).__qualname__,
        "message": str(error),
        "argument": getattr(error, "argument", None),
    }


def error_from_report(report: dict) -> ResNeXtDetError | None:
    """The user error of an ``error_report``: its own class (made without calling its
    ``__init__``, whose arguments differ per class), None for a class that is not one of ours."""
    cls = _user_error_classes().get(report.get("class"))
    if cls is None:
        return None
    error = cls.__new__(cls)
    Exception.__init__(error, report.get("message", ""))
    if report.get("argument") is not None:
        error.argument = report["argument"]
    return error


def user_error_message(error: BaseException) -> str | None:
    """The one-paragraph message of a user error (one of this project's classes), or None for
    anything else (a bug).

    A user error from a ``launch`` worker arrives as itself (the worker writes an
    ``error_report``, the launcher raises it again). One from a DataLoader worker arrives as its
    own class with the worker's traceback as the message (torch re-raises it so); the message is
    then the traceback's last line without the class's name.
    """
    if not isinstance(error, ResNeXtDetError):
        return None
    lines = [line for line in str(error).strip().splitlines() if line.strip()]
    prefix = f"{type(error).__module__}.{type(error).__qualname__}: "
    if len(lines) > 1 and lines[-1].startswith(prefix):
        return lines[-1][len(prefix) :]
    return str(error)


def diverged(error: FloatingPointError, iteration: int, last_checkpoint: str) -> TrainingDivergedError:
    """detectron2's "Loss became infinite or NaN" as a ``TrainingDivergedError`` that also names the
    last good checkpoint and what to do (the step's update was not applied)."""
    if isinstance(error, TrainingDivergedError):
        return error
    detail = " ".join(str(error).split())
    return TrainingDivergedError(
        f"training diverged at iteration {iteration}: {detail}. The weights were not updated by this "
        f"step; the last good checkpoint is {last_checkpoint or 'none (none was written yet)'}. Lower "
        "SOLVER.BASE_LR or add warm-up (SOLVER.WARMUP_ITERS), check the data, then --resume or start again"
    )
