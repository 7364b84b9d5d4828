"""resnext_det.compat: both branches (no compiled ops -> stand-in; compiled ops -> untouched)."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

from resnext_det import compat

import numpy
import pytest
from PIL import Image

# code the two detectron2 builds differ in: CI runs this file on both (tests/README.md)
pytestmark = pytest.mark.both_builds


def run_python(code: str) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def test_stand_in_when_compiled_ops_are_missing():
    """Hide detectron2._C (as on the pure-Python build) and check every routed-around op."""
    run_python("""
        import importlib.abc, sys
        class HideCompiledOps(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path, target=None):
                if name == "detectron2._C":
                    raise ImportError("hidden by the test")
        sys.meta_path.insert(0, HideCompiledOps())

        import torch, resnext_det
        from resnext_det import compat
        assert "detectron2._C stand-in" in compat.APPLIED, compat.APPLIED
        assert not compat.has_compiled_ops()

        def expect_not_implemented(fn, *names):
            try:
                fn()
            except NotImplementedError as e:
                message = str(e)
                assert "official detectron2 build" in message, message
                for name in names:
                    assert name in message, (name, message)
            else:
                raise AssertionError("expected NotImplementedError")

        import detectron2._C as C
        expect_not_implemented(lambda: C.deform_conv_forward, "deform_conv_forward")
        from detectron2.layers import ROIAlignRotated, nms_rotated, batched_nms_rotated
        from detectron2.structures import RotatedBoxes, pairwise_iou_rotated
        boxes = torch.tensor([[5.0, 5.0, 4.0, 4.0, 0.0]])
        expect_not_implemented(lambda: nms_rotated(boxes, torch.ones(1), 0.5), "nms_rotated")
        expect_not_implemented(
            lambda: batched_nms_rotated(boxes, torch.ones(1), torch.zeros(1), 0.5), "nms_rotated")
        # v0.6 calls detectron2._C here, main torch.ops.detectron2: the same message either way
        expect_not_implemented(
            lambda: pairwise_iou_rotated(RotatedBoxes(boxes), RotatedBoxes(boxes)), "box_iou_rotated")
        pooler = ROIAlignRotated((2, 2), spatial_scale=1.0, sampling_ratio=0)
        rois = torch.tensor([[0.0, 5.0, 5.0, 4.0, 4.0, 0.0]])
        expect_not_implemented(lambda: pooler(torch.ones(1, 1, 8, 8), rois), "roi_align_rotated_forward")
        # (DeformConv itself is CUDA-only in detectron2 and says so on CPU; its ops are above.)
        expect_not_implemented(lambda: C.modulated_deform_conv_forward, "modulated_deform_conv")

        # COCO AP comes from pycocotools, and the environment report still works.
        import json, os, tempfile
        from detectron2.data import DatasetCatalog, MetadataCatalog
        from detectron2.evaluation import COCOEvaluator
        from detectron2.utils.collect_env import collect_env_info
        DatasetCatalog.register("empty", lambda: [])
        tmp = tempfile.mkdtemp()
        gt = os.path.join(tmp, "gt.json")
        json.dump({"images": [], "annotations": [], "categories": [{"id": 1, "name": "a"}]},
                  open(gt, "w"))
        MetadataCatalog.get("empty").set(json_file=gt)
        assert COCOEvaluator("empty", output_dir=tmp)._use_fast_impl is False
        assert "resnext_det.compat stand-in" in collect_env_info()
        print("ok")
    """)


def test_no_stand_in_when_compiled_ops_exist():
    """Simulate an official build: a compiled detectron2._C is importable."""
    run_python("""
        import sys, types
        compiled = types.ModuleType("detectron2._C")
        compiled.get_compiler_version = lambda: "gcc"
        sys.modules["detectron2._C"] = compiled

        import resnext_det, detectron2, detectron2.layers
        from resnext_det import compat
        assert compat.has_compiled_ops()
        from detectron2 import _C
        assert _C is compiled and sys.modules["detectron2._C"] is compiled
        assert not any("_C" in fix for fix in compat.APPLIED), compat.APPLIED
        import torch
        assert not isinstance(torch.ops.detectron2, compat._RegisteredOpsStandIn)
        from detectron2.evaluation.coco_evaluation import COCOEvaluator
        assert "init_with_official_cocoeval" not in COCOEvaluator.__init__.__name__
        print("ok")
    """)


def test_pillow_linear_alias_only_where_detectron2_uses_it():
    import detectron2

    transform = Path(detectron2.__file__).parent / "data" / "transforms" / "transform.py"
    if "Image.LINEAR" in transform.read_text(encoding="utf-8"):  # v0.6
        assert Image.LINEAR == Image.BILINEAR
    else:  # main: Pillow is left as it is
        assert not hasattr(Image, "LINEAR")


def test_numpy_aliases_are_module_local_and_restore_the_category_check():
    """v0.6's category histogram uses ``np.int`` (compat gives that module the alias); main's does
    not (compat leaves it alone). Either way the category-id check must run."""
    from detectron2.data import build

    source = Path(build.__file__).read_text(encoding="utf-8")
    uses_removed_alias = re.search(r"\bnp\.int\b(?![\w.(])", source) is not None
    patched = any("detectron2.data.build" in fix for fix in compat.APPLIED)
    assert patched == uses_removed_alias, compat.APPLIED
    if uses_removed_alias:
        assert build.np.int is int and build.np.zeros is numpy.zeros
    else:
        assert build.np is numpy
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert not hasattr(numpy, "float")  # numpy itself is untouched
    dicts = [{"annotations": [{"category_id": 0}, {"category_id": 1}]}]
    build.print_instances_class_histogram(dicts, ["a", "b"])  # ran into np.int before
    with pytest.raises(AssertionError, match="category_id=5"):
        build.print_instances_class_histogram([{"annotations": [{"category_id": 5}]}], ["a", "b"])


def test_map_dataset_retries_a_failed_sample():
    from detectron2.data.common import MapDataset

    dataset = MapDataset(list(range(5)), lambda x: None if x == 0 else x * 10)
    assert dataset[0] in {10, 20, 30, 40}


def test_apply_is_idempotent():
    """A second ``apply()`` (every tool and test imports resnext_det) patches nothing again: the
    list is unchanged, has no repeats, and a patched function is the same object, wrapped once."""
    from detectron2.data import common

    before = list(compat.APPLIED)
    init = common.MapDataset.__init__
    assert compat.apply() == before and len(set(before)) == len(before)
    assert common.MapDataset.__init__ is init
    if "MapDataset retry sampling on Python >= 3.11" in before:
        # compat's wrapper around detectron2's own function, not a wrapper of a wrapper
        assert not hasattr(init.__wrapped__, "__wrapped__")


#: What compat must patch on each build the project is tested on (docs/install.md, "What compat fixes").
EXPECTED_FIXES = {
    "detectron2 0.6 fallback (no compiled ops)": [
        "PIL.Image.LINEAR = BILINEAR",
        "detectron2._C stand-in",
        "torch.ops.detectron2 stand-in and COCOEvaluator(use_fast_impl=False) without _C",
        "MapDataset retry sampling on Python >= 3.11",
        "numpy aliases in detectron2.data.build, detectron2.data.datasets.pascal_voc, "
        "detectron2.evaluation.sem_seg_evaluation",
    ],
    # nothing: the plugin leaves an official build as it found it (test_plugin_leaves_detectron2.py)
    "official detectron2 main (compiled)": [],
}


def installed_build() -> str:
    import detectron2

    transform = Path(detectron2.__file__).parent / "data" / "transforms" / "transform.py"
    if not compat.has_compiled_ops():
        return "detectron2 0.6 fallback (no compiled ops)"
    if "Image.LINEAR" not in transform.read_text(encoding="utf-8"):
        return "official detectron2 main (compiled)"
    pytest.skip("a compiled detectron2 other than main: the suite's two builds are the fallback and main")


def test_applies_exactly_what_this_build_needs():
    assert compat.APPLIED == EXPECTED_FIXES[installed_build()]
