from __future__ import annotations

from pretrain.config import get_pretrain_cfg
from pretrain.synthetic import generate_image_folder
from resnext_det import get_config_file

import pytest


@pytest.fixture(scope="session")
def image_folder(tmp_path_factory):
    """The generated 5-class ImageNet-layout folder (300 train / 100 val images, 40x40)."""
    return generate_image_folder(tmp_path_factory.mktemp("imagefolder"))


@pytest.fixture
def tiny_cfg(image_folder, tmp_path):
    """configs/demo/imagenet_tiny.yaml on the generated folder, writing into a fresh directory."""

    def make(*opts):
        cfg = get_pretrain_cfg()
        cfg.merge_from_file(get_config_file("demo/imagenet_tiny.yaml"))
        cfg.merge_from_list(["DATA.ROOT", str(image_folder), "OUTPUT_DIR", str(tmp_path / "out"), *opts])
        return cfg

    return make
