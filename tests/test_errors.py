"""User errors print as one paragraph, also when they come back from another process."""

from __future__ import annotations

from resnext_det.errors import (
    AnnotationFileError,
    ConfigError,
    ImageFileError,
    TemplateError,
    error_from_report,
    error_report,
    user_error_message,
)


def test_a_user_error_is_its_message():
    assert user_error_message(ImageFileError("cannot read image a.jpg")) == "cannot read image a.jpg"


def test_a_bug_is_not_a_user_error():
    assert user_error_message(KeyError("images")) is None
    assert user_error_message(RuntimeError("")) is None
    # a traceback's text naming one of our classes is not one of our errors: classes, not names
    assert user_error_message(RuntimeError("Traceback ...\nresnext_det.errors.ConfigError: bad key")) is None


def test_a_user_error_crosses_processes_as_data():
    """What a ``launch`` worker writes and its parent raises again: the same class and message."""
    for error in (AnnotationFileError("a.json: annotations[3] has a box of negative size"),
                  TemplateError("depth", "depth must be one of [50, 101], got 7")):  # fmt: skip
        again = error_from_report(error_report(error))
        assert type(again) is type(error) and str(again) == str(error)
        assert user_error_message(again) == str(error)
    assert error_from_report(error_report(TemplateError("depth", "x"))).argument == "depth"
    assert isinstance(
        error_from_report(error_report(AnnotationFileError("x"))), ValueError
    )  # still catchable
    # another library's class of one of our names is not ours
    assert error_from_report({"class": "Unknown", "message": "bad key"}) is None


def test_a_data_loader_workers_error_is_its_last_line():
    """torch re-raises a DataLoader worker's error as its own class with the traceback as the message."""
    wrapped = ImageFileError(
        "Caught ImageFileError in DataLoader worker process 0.\nOriginal Traceback:\n"
        "...\nresnext_det.errors.ImageFileError: cannot read image b.png (truncated)"
    )
    assert user_error_message(wrapped) == "cannot read image b.png (truncated)"
    other_last_line = ConfigError(
        "Caught ConfigError in DataLoader worker process 0.\n...\notherlib.ConfigError: x"
    )
    assert user_error_message(other_last_line) == str(other_last_line)  # ours, but the text is not parsed
