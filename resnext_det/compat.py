"""Make detectron2 run with today's Python packages, and without its compiled ops.

Why this exists: the detectron2 this project installs by default (v0.6, repackaged without
``detectron2._C``; see ``scripts/build_detectron2_wheel.py``) fails to import or silently loses
checks against current Pillow, numpy and Python. Each fix below is applied only when the problem
it fixes is present in the installed detectron2 (found by looking at its modules, not its
version string, which reads "0.6" on main too), so an official build gets only what it needs.
``APPLIED`` lists what was patched in this process (logged by the tools).

Measured problems and their fixes (see ``../shared/DETECTRON2_0.6.md``), and which builds have
them (v0.6 = the pure-Python fallback, main = official detectron2 main, compiled):

======================================  ==============================================  ====  ====
problem                                 fix here                                        v0.6  main
======================================  ==============================================  ====  ====
no compiled ``detectron2._C``           a stand-in module: build-info queries answer,   yes   no
(``import detectron2.layers`` fails)    every op raises ``NotImplementedError`` naming
                                        the op and asking for an official build
ops called as ``torch.ops.detectron2``  the same clear error instead of an              yes   no
(rotated NMS, IoU, RoIAlign)            AttributeError from ``torch.ops``
COCO fast eval needs ``_C``             ``COCOEvaluator`` defaults to pycocotools'      yes   no
                                        COCOeval (``use_fast_impl=False``)
``Image.LINEAR`` (Pillow >= 10          alias it to ``Image.BILINEAR`` (same filter)    yes   no
removed it) used by detectron2
numpy removed ``np.int`` & co.          detectron2 modules that use them see a numpy    yes   no
                                        with the old builtin aliases (module-local)
Python 3.11 ``random.sample(set)``      ``MapDataset``'s retry path samples a sorted    yes   no
                                        list
======================================  ==============================================  ====  ====

On an official build nothing is patched: ``import resnext_det`` leaves detectron2 as it found it
(``tests/test_plugin_leaves_detectron2.py``). What the project needs beyond it takes its own code
path: detectron2's ``create_ddp_model`` asks DDP for GPU ids, which a CPU module refuses, so the
project's runs wrap their models with ``engine.trainer.wrap_for_processes`` instead.

``engine/launch.py`` adds what detectron2 0.6's CUDA-only launcher lacks: CPU processes (gloo).

Not fixed here: ``detectron2.model_zoo`` needs ``pkg_resources`` on both builds
(``scripts/install.sh`` keeps ``setuptools<81``); v0.6's ``detectron2.export`` needs caffe2
(unused; FLOPs are counted with fvcore).
"""

from __future__ import annotations

import functools
import importlib
import random
import re
import sys
import types
import warnings
from pathlib import Path

__all__ = ["APPLIED", "apply", "has_compiled_ops", "C_STAND_IN_NAME"]

#: Names of the fixes applied in this process, in order.
APPLIED: list[str] = []

C_STAND_IN_NAME = "detectron2._C (resnext_det.compat stand-in)"

_OFFICIAL_BUILD_HINT = (
    "This detectron2 was installed without its compiled extension (detectron2._C), so {op} is "
    "not available. resnext-det's C4 ResNeXt models do not need it; for {op}, install an "
    "official detectron2 build: https://detectron2.readthedocs.io/en/latest/tutorials/install.html"
)

# numpy's removed aliases were plain builtins (numpy 1.20 deprecation notes).
_REMOVED_NUMPY_ALIASES = {
    "int": int,
    "float": float,
    "bool": bool,
    "str": str,
    "object": object,
    "long": int,
    "complex": complex,
}
_NUMPY_ALIAS_USE = re.compile(r"\bnp\.(" + "|".join(_REMOVED_NUMPY_ALIASES) + r")\b(?![\w.(])")


class _CompiledOpsStandIn(types.ModuleType):
    """Takes the place of ``detectron2._C`` when it was not built.

    detectron2 imports ``_C`` at module top in ``layers`` and ``evaluation`` but calls into it
    only for rotated boxes, deformable convolution and the fast COCO evaluator. Answering the
    import lets everything else work; any op access fails loudly and explains why.
    """

    def __init__(self) -> None:
        super().__init__("detectron2._C", doc=C_STAND_IN_NAME)
        self.__file__ = __file__
        self.is_resnext_det_stand_in = True

    # Queried by detectron2.utils.collect_env (default_setup logs it).
    @staticmethod
    def get_compiler_version() -> str:
        return "none: " + C_STAND_IN_NAME

    @staticmethod
    def get_cuda_version() -> str:
        return "none: " + C_STAND_IN_NAME

    @staticmethod
    def has_cuda() -> bool:
        return False

    def __getattr__(self, op: str):
        if op.startswith("__"):
            raise AttributeError(op)
        raise NotImplementedError(_OFFICIAL_BUILD_HINT.format(op=f"detectron2._C.{op}"))


def has_compiled_ops() -> bool:
    """True when detectron2's real compiled extension is importable."""
    module = sys.modules.get("detectron2._C")
    if module is not None:
        return not getattr(module, "is_resnext_det_stand_in", False)
    try:
        importlib.import_module("detectron2._C")
    except ImportError:
        return False
    return True


def _detectron2_source(relative: str) -> str:
    """The text of one of the installed detectron2's modules ("" if it has none), read without
    importing it: some fixes must be in place before the module is imported."""
    import detectron2

    path = Path(detectron2.__file__).parent / relative
    return path.read_text(encoding="utf-8") if path.is_file() else ""


def _alias_pillow_linear() -> None:
    """v0.6's ``data/transforms/transform.py`` has ``Image.LINEAR`` as a default argument,
    evaluated at import; main uses ``Image.BILINEAR``."""
    from PIL import Image

    if hasattr(Image, "LINEAR") or "Image.LINEAR" not in _detectron2_source("data/transforms/transform.py"):
        return
    Image.LINEAR = Image.BILINEAR  # the name Pillow < 10 used for the same filter
    APPLIED.append("PIL.Image.LINEAR = BILINEAR")


def _install_c_stand_in() -> None:
    import detectron2

    if has_compiled_ops():
        return
    stand_in = _CompiledOpsStandIn()
    sys.modules["detectron2._C"] = stand_in
    detectron2._C = stand_in
    APPLIED.append("detectron2._C stand-in")


class _RegisteredOpsStandIn(types.ModuleType):
    """Takes the place of ``torch.ops.detectron2`` when ``detectron2._C`` (which registers those
    ops) was not built: rotated NMS (v0.6 and main), rotated IoU and RoIAlignRotated (main) then
    fail with the stand-in's message instead of ``'_OpNamespace' ... has no attribute``."""

    def __init__(self) -> None:
        super().__init__("torch.ops.detectron2", doc=C_STAND_IN_NAME)

    def __getattr__(self, op: str):
        if op.startswith("__"):
            raise AttributeError(op)
        raise NotImplementedError(_OFFICIAL_BUILD_HINT.format(op=f"torch.ops.detectron2.{op}"))


def _route_around_compiled_ops() -> None:
    """With the stand-in: ``torch.ops.detectron2.*`` fail clearly, COCO AP comes from pycocotools."""
    import torch
    from detectron2.evaluation import coco_evaluation

    # torch.ops creates (and caches as an attribute) a namespace on first access; setting the
    # attribute first is how an op namespace is provided without registering each op's schema.
    torch.ops.detectron2 = _RegisteredOpsStandIn()

    evaluator = coco_evaluation.COCOEvaluator
    original_init = evaluator.__init__

    @functools.wraps(original_init)
    def init_with_official_cocoeval(self, *args, **kwargs):
        kwargs.setdefault("use_fast_impl", False)  # detectron2's fast COCOeval is C++ (detectron2._C)
        original_init(self, *args, **kwargs)

    evaluator.__init__ = init_with_official_cocoeval
    APPLIED.append("torch.ops.detectron2 stand-in and COCOEvaluator(use_fast_impl=False) without _C")


class _NumpyWithRemovedAliases(types.ModuleType):
    """numpy, plus the builtin aliases (``np.int`` ...) that numpy 1.24 removed."""

    def __init__(self, numpy_module: types.ModuleType, aliases: dict[str, type]) -> None:
        super().__init__("numpy")
        self.__dict__.update(aliases)
        self._numpy = numpy_module

    def __getattr__(self, name: str):
        return getattr(self._numpy, name)


def _restore_numpy_aliases_in_detectron2() -> None:
    """Give each loaded detectron2 module that uses a removed alias its own aliased numpy.

    Module-local on purpose: numpy itself and every other library keep today's behaviour.
    Without this, ``data/build.py``'s category histogram raises AttributeError on every training
    start, which detectron2 swallows, silently skipping its category-id range check.
    """
    import numpy

    with warnings.catch_warnings():  # numpy warns when asked for a removed alias
        warnings.simplefilter("ignore")
        missing = {k: v for k, v in _REMOVED_NUMPY_ALIASES.items() if not hasattr(numpy, k)}
    if not missing:
        return
    proxy = _NumpyWithRemovedAliases(numpy, missing)
    patched = []
    for name, module in list(sys.modules.items()):
        if not name.startswith("detectron2.") or vars(module).get("np") is not numpy:
            continue
        source = Path(getattr(module, "__file__", "") or "")
        if source.suffix != ".py" or not source.is_file():
            continue
        used = set(_NUMPY_ALIAS_USE.findall(source.read_text(encoding="utf-8")))
        if used & missing.keys():
            module.np = proxy
            patched.append(name)
    if patched:
        APPLIED.append("numpy aliases in " + ", ".join(sorted(patched)))


class _SetTolerantRandom(random.Random):
    """``random.Random`` whose ``sample`` also accepts a set, as Python < 3.11 did."""

    def sample(self, population, k, **kwargs):
        if isinstance(population, (set, frozenset)):
            population = sorted(population)
        return super().sample(population, k, **kwargs)


def _let_map_dataset_sample_sets() -> None:
    """``MapDataset`` retries a failed sample with ``rng.sample(a_set)``: TypeError on 3.11+."""
    from detectron2.data import common

    if sys.version_info < (3, 11):
        return
    if "sample(self._fallback_candidates" not in _detectron2_source("data/common.py"):
        return
    original_init = common.MapDataset.__init__

    @functools.wraps(original_init)
    def init_with_set_tolerant_rng(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        self._rng = _SetTolerantRandom(42)  # detectron2 seeds its own with 42

    common.MapDataset.__init__ = init_with_set_tolerant_rng
    APPLIED.append("MapDataset retry sampling on Python >= 3.11")


def apply() -> list[str]:
    """Apply every needed fix once; must run before ``detectron2.data``/``layers`` are imported.

    ``import resnext_det`` calls it first thing. Returns ``APPLIED``.
    """
    if getattr(apply, "_done", False):
        return APPLIED
    try:
        import detectron2  # noqa: F401
    except ImportError as e:
        raise ImportError(
            "resnext_det needs detectron2, which is not installed in this Python "
            f"({sys.executable}). Run `make test` (or scripts/install.sh) in the resnext-det "
            "checkout to install the pure-Python build, or install an official build as the "
            "docs/install.md says."
        ) from e
    _alias_pillow_linear()
    _install_c_stand_in()
    if "detectron2._C stand-in" in APPLIED:
        _route_around_compiled_ops()
    # Import the parts resnext_det uses so that their numpy references can be checked.
    import detectron2.data  # noqa: F401
    import detectron2.engine  # noqa: F401
    import detectron2.evaluation  # noqa: F401
    import detectron2.modeling  # noqa: F401

    _let_map_dataset_sample_sets()
    _restore_numpy_aliases_in_detectron2()
    apply._done = True
    return APPLIED
