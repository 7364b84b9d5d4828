"""The corruption benchmark's images (Michaelis et al. 2019, "Benchmarking Robustness in Object
Detection"): 15 corruptions at severities 1-5, from the ``imagecorruptions`` package (the
implementation the benchmark used), applied to a test image before the model's preprocessing.

Every corrupted image is a function of (image file, corruption, severity): the corruptions draw
from numpy's global generator, which is seeded from those three for the one call and restored
afterwards, so two models (or an exported model and its PyTorch pair) see the same pixels, and a
resumed run the pixels of the first.

``imagecorruptions`` 1.1.2 (2020, its last release) predates numpy 2 and scikit-image 0.19: it
calls ``np.float_`` and ``gaussian(..., multichannel=True)``, both removed since, and its impulse
noise calls ``skimage.util.random_noise``, which since 0.19 draws from a fresh generator of its
own instead of numpy's global one (impulse noise was different on every call). Its module gets
a numpy view with ``float_``, a ``gaussian`` that passes ``channel_axis`` instead, and a
scikit-image view whose ``random_noise`` draws its seed from numpy's generator; numpy and
scikit-image themselves are left as they are.
"""

from __future__ import annotations

import types
import warnings
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ConfigError
from ..seeding import mix_seed, seeded_rngs

__all__ = [
    "BENCHMARK_CORRUPTIONS",
    "CORRUPTION_GROUPS",
    "EXTRA_CORRUPTIONS",
    "SEVERITIES",
    "Corruption",
    "CorruptedImages",
    "benchmark_corruption",
    "corrupt_image",
    "image_seed",
    "parse_corruptions",
    "parse_severities",
]

#: the benchmark's 15 corruptions by family, in its order (ImageNet-C's names)
CORRUPTION_GROUPS = {
    "noise": ("gaussian_noise", "shot_noise", "impulse_noise"),
    "blur": ("defocus_blur", "glass_blur", "motion_blur", "zoom_blur"),
    "weather": ("snow", "frost", "fog", "brightness"),
    "digital": ("contrast", "elastic_transform", "pixelate", "jpeg_compression"),
}
BENCHMARK_CORRUPTIONS = tuple(name for names in CORRUPTION_GROUPS.values() for name in names)
#: imagecorruptions' four held-out corruptions (its "validation" set): accepted, never in "all"
EXTRA_CORRUPTIONS = ("speckle_noise", "gaussian_blur", "spatter", "saturate")
SEVERITIES = (1, 2, 3, 4, 5)

INSTALL_HINT = "pip install imagecorruptions (or pip install 'resnext-det[robustness]')"


@dataclass(frozen=True)
class Corruption:
    """A named corruption: ``function(image_rgb_uint8, severity) -> image_rgb`` (same shape).

    The benchmark's come from ``benchmark_corruption``; any other (a blank image, a research
    corruption) runs through the same evaluation."""

    name: str
    function: Callable[[np.ndarray, int], np.ndarray]


def parse_corruptions(text: str | Iterable[str]) -> list[str]:
    """``"all"`` (the benchmark's 15) or names separated by commas (or a list of them): the names,
    checked, in the order given."""
    parts = text.split(",") if isinstance(text, str) else list(text)
    names = [p.strip() for p in parts if p.strip()]
    if names == ["all"]:
        return list(BENCHMARK_CORRUPTIONS)
    valid = (*BENCHMARK_CORRUPTIONS, *EXTRA_CORRUPTIONS)
    unknown = [n for n in names if n not in valid]
    if unknown or not names:
        raise ConfigError(
            f"--corruptions: unknown corruption {', '.join(map(repr, unknown)) or '(none given)'}; "
            f"expected 'all' (the benchmark's 15) or some of: {', '.join(valid)}"
        )
    return list(dict.fromkeys(names))


def parse_severities(values: Iterable) -> list[int]:
    """Severities as integers in 1-5 (the benchmark's levels), sorted, each once."""
    severities = []
    for value in values:
        try:
            severity = int(value)
        except (TypeError, ValueError):
            severity = None
        if severity not in SEVERITIES or str(value).strip() != str(severity):
            raise ConfigError(f"--severities: {value!r} is not a severity; expected integers from 1 to 5")
        severities.append(severity)
    if not severities:
        raise ConfigError("--severities: give at least one of 1 2 3 4 5")
    return sorted(set(severities))


def _imagecorruptions():
    """The ``imagecorruptions`` package, made to run on numpy 2 and scikit-image >= 0.19 (the
    module docstring); a clear error with the install command when it is missing."""
    try:
        with warnings.catch_warnings():  # its imports of pkg_resources and scipy's old paths
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", UserWarning)
            import imagecorruptions
            import imagecorruptions.corruptions as corruptions
    except ImportError as e:
        raise ConfigError(f"--corruptions needs the imagecorruptions package: {INSTALL_HINT} ({e})") from None
    if not getattr(corruptions, "_resnext_det_compatible", False):
        corruptions.np = _NumpyWithFloat("numpy")
        corruptions.gaussian = _gaussian_with_multichannel
        corruptions.sk = _SkimageSeededByNumpy("skimage")
        corruptions._resnext_det_compatible = True
    return imagecorruptions


class _NumpyWithFloat(types.ModuleType):
    """numpy as imagecorruptions knew it: ``float_`` is numpy 1's name of ``float64``."""

    float_ = np.float64

    def __getattr__(self, name):
        return getattr(np, name)


class _SkimageSeededByNumpy(types.ModuleType):
    """scikit-image as imagecorruptions knew it: ``util.random_noise`` seeded from numpy's global
    generator (which ``corrupt_image`` seeds), as it was before scikit-image 0.19."""

    def __getattr__(self, name):
        import skimage

        if name == "util":  # skimage.util, with random_noise replaced
            util = types.ModuleType("skimage.util")
            util.__dict__.update(vars(skimage.util))
            util.random_noise = _random_noise_seeded_by_numpy
            return util
        return getattr(skimage, name)


def _random_noise_seeded_by_numpy(image, **kwargs):
    from skimage.util import random_noise

    return random_noise(image, rng=int(np.random.randint(2**31 - 1)), **kwargs)


def _gaussian_with_multichannel(image, sigma=1, multichannel=None, **kwargs):
    """scikit-image's ``gaussian``, taking the ``multichannel=`` that 0.19 replaced by ``channel_axis``."""
    from skimage.filters import gaussian

    if multichannel is not None:
        kwargs["channel_axis"] = -1 if multichannel else None
    return gaussian(image, sigma=sigma, **kwargs)


def benchmark_corruption(name: str) -> Corruption:
    """One of imagecorruptions' corruptions by name (checked first)."""
    (name,) = parse_corruptions([name])
    _imagecorruptions()  # installed? (the error names the install command)
    return Corruption(name, _ImageCorruptionsFunction(name))


@dataclass(frozen=True)
class _ImageCorruptionsFunction:
    """One of imagecorruptions' corruptions as a picklable callable (DataLoader workers get it)."""

    name: str

    def __call__(self, image_rgb: np.ndarray, severity: int) -> np.ndarray:
        return _imagecorruptions().corrupt(image_rgb, corruption_name=self.name, severity=severity)


@dataclass(frozen=True)
class CorruptedImages:
    """``evaluate_predictor``'s ``image_transform``: each image corrupted with its own seed
    (``image_seed``); picklable, so DataLoader workers corrupt while the model runs."""

    corruption: Corruption
    severity: int

    def __call__(self, image_bgr: np.ndarray, record: dict) -> np.ndarray:
        seed = image_seed(record, self.corruption.name, self.severity)
        return corrupt_image(image_bgr, self.corruption, self.severity, seed)


def image_seed(record: dict, corruption: str, severity: int) -> int:
    """The seed of one corrupted image: its file's name (not its folder: the same data on
    another machine gets the same pixels), the corruption and the severity."""
    name = Path(record["file_name"]).name
    return mix_seed(zlib.crc32(name.encode()), zlib.crc32(corruption.encode()), severity)


def corrupt_image(image_bgr: np.ndarray, corruption: Corruption, severity: int, seed: int) -> np.ndarray:
    """``image_bgr`` (HxWx3 uint8, as the predictors take it) corrupted, with every generator
    seeded by ``seed`` for the call and restored after it."""
    with seeded_rngs(seed):
        corrupted = corruption.function(np.ascontiguousarray(image_bgr[:, :, ::-1]), severity)
    corrupted = np.asarray(corrupted)
    if corrupted.shape != image_bgr.shape:
        raise ValueError(
            f"corruption {corruption.name!r} at severity {severity} returned an image of shape "
            f"{corrupted.shape} for one of {image_bgr.shape}"
        )
    return np.ascontiguousarray(np.clip(corrupted, 0, 255).astype(np.uint8)[:, :, ::-1])
