"""The benchmark's corruptions: names, severities, seeded pixels, the package's absence."""

import sys

from resnext_det.errors import ConfigError
from resnext_det.robustness import (
    BENCHMARK_CORRUPTIONS,
    Corruption,
    benchmark_corruption,
    corrupt_image,
    image_seed,
    parse_corruptions,
    parse_severities,
)

import numpy as np
import pytest
from detectron2.data.detection_utils import read_image


def test_all_is_the_benchmarks_fifteen_and_an_unknown_name_lists_the_valid_ones():
    assert parse_corruptions("all") == list(BENCHMARK_CORRUPTIONS)
    assert len(BENCHMARK_CORRUPTIONS) == 15
    assert parse_corruptions("motion_blur, gaussian_noise,motion_blur") == ["motion_blur", "gaussian_noise"]
    assert parse_corruptions("speckle_noise") == ["speckle_noise"]  # imagecorruptions' held-out four
    with pytest.raises(ConfigError) as unknown:
        parse_corruptions("gaussian_noise,gausian_blur")
    message = str(unknown.value)
    assert "unknown corruption 'gausian_blur'" in message
    assert all(name in message for name in BENCHMARK_CORRUPTIONS)


@pytest.mark.parametrize("given", [["0"], ["6"], ["1", "2.5"], ["high"], ["-1"], []])
def test_a_severity_outside_one_to_five_is_refused(given):
    with pytest.raises(ConfigError, match="--severities"):
        parse_severities(given)


def test_severities_are_sorted_once_each():
    assert parse_severities(["5", "1", "3", "1"]) == [1, 3, 5]


def test_a_missing_imagecorruptions_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "imagecorruptions", None)  # import fails as if not installed
    with pytest.raises(ConfigError, match=r"pip install imagecorruptions"):
        benchmark_corruption("gaussian_noise")


def _demo_image(demo_root):
    path = sorted((demo_root / "val").glob("*.png"))[0]
    return read_image(str(path), format="BGR"), {"file_name": str(path)}


def test_each_corruption_changes_the_image_the_same_way_for_the_same_image(demo_root):
    """All 15 run (on numpy 2 and today's scikit-image), keep the shape and dtype, change the
    pixels, and are a function of (file name, corruption, severity): numpy's global generator is
    left as it was."""
    image, record = _demo_image(demo_root)
    np.random.seed(123)
    before = np.random.get_state()[1].copy()
    for name in BENCHMARK_CORRUPTIONS:
        corruption = benchmark_corruption(name)
        seed = image_seed(record, name, 3)
        first = corrupt_image(image, corruption, 3, seed)
        assert first.shape == image.shape and first.dtype == np.uint8, name
        assert np.abs(first.astype(int) - image).mean() > 0.5, name
        assert np.array_equal(first, corrupt_image(image, corruption, 3, seed)), name
    assert np.array_equal(np.random.get_state()[1], before)
    # another severity or another file: another seed, other pixels (noise draws differ)
    noise = benchmark_corruption("gaussian_noise")
    moved = {"file_name": "/elsewhere/" + record["file_name"].rsplit("/", 1)[1]}
    assert image_seed(moved, "gaussian_noise", 3) == image_seed(record, "gaussian_noise", 3)
    assert image_seed(record, "gaussian_noise", 4) != image_seed(record, "gaussian_noise", 3)
    other = corrupt_image(image, noise, 3, image_seed({"file_name": "other.png"}, "gaussian_noise", 3))
    assert not np.array_equal(other, corrupt_image(image, noise, 3, image_seed(record, "gaussian_noise", 3)))


def test_corrupt_image_takes_bgr_and_gives_bgr():
    """The predictors take BGR; imagecorruptions works in RGB: the channels go there and back."""
    image = np.zeros((4, 5, 3), np.uint8)
    image[..., 0] = 200  # blue, in BGR
    seen = []

    def keep_red_only(rgb, severity):
        seen.append(rgb.copy())
        return rgb * np.array([1, 0, 0], np.uint8)

    out = corrupt_image(image, Corruption("red only", keep_red_only), 1, seed=0)
    assert seen[0][..., 2].max() == 200 and seen[0][..., 0].max() == 0  # blue is last in RGB
    assert out.max() == 0  # the red-only corruption removed the blue image
    with pytest.raises(ValueError, match="returned an image of shape"):
        corrupt_image(image, Corruption("crop", lambda rgb, s: rgb[1:]), 1, seed=0)
