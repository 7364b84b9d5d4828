"""resnext_det.compat: both branches (no compiled ops -> stand-in; compiled ops -> untouched)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import warnings

from resnext_det import compat

import numpy
import pytest
import torch
from PIL import Image


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
        from detectron2.layers import nms_rotated, batched_nms_rotated
        from detectron2.structures import RotatedBoxes, pairwise_iou_rotated
        boxes = torch.tensor([[5.0, 5.0, 4.0, 4.0, 0.0]])
        expect_not_implemented(lambda: nms_rotated(boxes, torch.ones(1), 0.5), "nms_rotated")
        expect_not_implemented(
            lambda: batched_nms_rotated(boxes, torch.ones(1), torch.zeros(1), 0.5), "nms_rotated")
        expect_not_implemented(
            lambda: pairwise_iou_rotated(RotatedBoxes(boxes), RotatedBoxes(boxes)), "box_iou_rotated")
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
        nms = sys.modules["detectron2.layers.nms"]
        assert nms.nms_rotated is not compat._raise_rotated_nms
        from detectron2.evaluation.coco_evaluation import COCOEvaluator
        assert "init_with_official_cocoeval" not in COCOEvaluator.__init__.__name__
        print("ok")
    """)


def test_pillow_linear_alias():
    assert Image.LINEAR == Image.BILINEAR


def test_numpy_aliases_are_module_local_and_restore_the_category_check():
    from detectron2.data import build

    assert build.np.int is int and build.np.zeros is numpy.zeros
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
    before = list(compat.APPLIED)
    assert compat.apply() == before
    assert torch.equal(torch.zeros(1), torch.zeros(1))
