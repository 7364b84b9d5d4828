"""predict.py's inputs: images are read as every other path of the project reads them."""

from __future__ import annotations

from resnext_det.deploy import open_source
from resnext_det.errors import ImageFileError

import numpy as np
import pytest
from PIL import Image


def test_a_photo_is_turned_by_its_exif_orientation(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display", as phone cameras write it
    Image.fromarray(np.zeros((40, 100, 3), dtype=np.uint8)).save(tmp_path / "photo.jpg", exif=exif)
    ((name, image),) = list(open_source(tmp_path / "photo.jpg").frames())
    assert name == "photo.jpg" and image.shape == (100, 40, 3)  # as detectron2's read_image shows it


def test_an_unreadable_image_is_named(tmp_path):
    (tmp_path / "photo.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(ImageFileError, match=r"photo\.png is not a readable image"):
        list(open_source(tmp_path / "photo.png").frames())
