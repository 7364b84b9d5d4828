"""Unreadable images, named: a mapper wrapper that turns decoding failures into ``ImageFileError``.

detectron2's ``DatasetMapper`` reads each image with PIL; a truncated JPEG, a file that is not an
image, or one deleted after the start raises ``OSError``/``UnidentifiedImageError`` from deep in
PIL, inside a loader worker, without the dataset's name for the file. The wrapper re-raises it as
one line naming the file and what to do; the tools print it without the traceback.
"""

from __future__ import annotations

from detectron2.data import DatasetMapper, build_detection_test_loader
from detectron2.data.detection_utils import SizeMismatchError
from PIL import UnidentifiedImageError

from ..errors import ImageFileError

__all__ = ["ImageCheckingMapper", "build_checked_test_loader"]


class ImageCheckingMapper:
    """``mapper(dataset_dict)``, with unreadable images reported as ``ImageFileError``."""

    def __init__(self, mapper):
        self.mapper = mapper

    def __call__(self, dataset_dict: dict):
        try:
            return self.mapper(dataset_dict)
        except ImageFileError:
            raise
        except (OSError, UnidentifiedImageError, SizeMismatchError, SyntaxError) as e:
            file_name = dataset_dict.get("file_name", "?")
            raise ImageFileError(
                f"cannot read image {file_name} (image id {dataset_dict.get('image_id')!r}; "
                f"{type(e).__name__}: {' '.join(str(e).split())[:200]}): it is missing, truncated, not an "
                "image, or not the size the json says; replace it, or remove it from the json"
            ) from None


def build_checked_test_loader(cfg, dataset_name: str):
    """detectron2's test loader of ``dataset_name`` with the test-time ``DatasetMapper``, whose
    unreadable images are named (the trainer's evaluation, and stage 1's proposal dump)."""
    return build_detection_test_loader(
        cfg, dataset_name, mapper=ImageCheckingMapper(DatasetMapper(cfg, is_train=False))
    )
