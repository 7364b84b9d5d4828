"""User errors print as one paragraph, also when they come back from another process."""

from __future__ import annotations

from resnext_det.data.coco import AnnotationFileError
from resnext_det.errors import ImageFileError, user_error_message


def test_a_user_error_is_its_message():
    assert user_error_message(ImageFileError("cannot read image a.jpg")) == "cannot read image a.jpg"


def test_a_bug_is_not_a_user_error():
    assert user_error_message(KeyError("images")) is None
    assert user_error_message(RuntimeError("")) is None


def test_the_message_is_recovered_from_a_worker_traceback():
    # what torch.multiprocessing (launch) and DataLoader workers hand back: the traceback as text
    text = (
        "\n\n-- Process 1 terminated with the following error:\nTraceback (most recent call last):\n"
        '  File "x.py", line 3, in f\n    raise AnnotationFileError(...)\n'
        "resnext_det.errors.AnnotationFileError: a.json: annotations[3] has a box of negative size\n"
    )
    assert user_error_message(RuntimeError(text)) == "a.json: annotations[3] has a box of negative size"
    wrapped = ImageFileError(
        "Caught ImageFileError in DataLoader worker process 0.\nOriginal Traceback:\n"
        "...\nresnext_det.errors.ImageFileError: cannot read image b.png (truncated)"
    )
    assert user_error_message(wrapped) == "cannot read image b.png (truncated)"
    assert user_error_message(RuntimeError("Traceback ...\nValueError: something else")) is None
    assert issubclass(AnnotationFileError, ValueError)  # still catchable as before


def test_another_librarys_error_of_the_same_name_is_a_bug():
    """Only our classes, named with the module that defines them, are user errors: a third-party
    ``ConfigError`` from a worker keeps its traceback."""
    for last_line in ("otherlib.config.ConfigError: bad key", "ConfigError: bad key",
                      "resnext_det.data.coco.AnnotationFileError: a.json"):  # fmt: skip
        assert user_error_message(RuntimeError(f"Traceback ...\n{last_line}")) is None, last_line
    ours = RuntimeError("Traceback ...\nresnext_det.errors.ConfigError: bad key")
    assert user_error_message(ours) == "bad key"
