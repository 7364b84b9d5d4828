"""Exported models (ONNX Runtime, AOTInductor .pt2) compute what the eager PyTorch pair computes."""

from __future__ import annotations

import json
import shutil

from resnext_det.deploy import build_graph, export_stage_pair, load
from resnext_det.deploy.export import write_onnx
from resnext_det.deploy.runtime import file_sha256
from resnext_det.engine.two_stage import load_stage_pair
from resnext_det.errors import ConfigError, ExportError, OutputDirError, WeightsMismatchError

import numpy as np
import pytest
import torch
from exported_models import EXACT_SIZES, INEXACT_SIZE, assert_same_detections, eager

# each export traces the whole pair (ONNX ~20 s). The one .pt2 compile of the suite (~100 s) is
# the trained demo pair's, in tests/tools/test_demo.py, which also checks it at any size.
pytestmark = pytest.mark.slow


def images(*sizes):
    return [np.random.default_rng(sum(s)).integers(0, 256, size=(*s, 3), dtype=np.uint8) for s in sizes]


@pytest.fixture(scope="module")
def graph(tiny_stage_dirs):
    return build_graph(load_stage_pair(*tiny_stage_dirs))


def test_onnx_meta_records_what_a_user_needs(onnx_dir, tiny_stage_dirs):
    meta = json.loads((onnx_dir / "meta.json").read_text())
    assert meta["format"] == "onnx" and meta["opset"] >= 18 and meta["model_file"] == "model.onnx"
    assert meta["model_sha256"] == file_sha256(onnx_dir / "model.onnx")
    assert meta["classes"] == ["square", "disc", "triangle"] and meta["category_ids"] == [1, 2, 3]
    assert meta["test_size"] == {"min": 256, "max": 384} and meta["model_input_format"] == "RGB"
    assert meta["score_threshold"] == 0.05 and meta["datasets_test"] == ["resnext_demo_val"]
    assert meta["template"]["fast_rcnn"]["cardinality"] > 1
    rpn_dir, frcn_dir = tiny_stage_dirs
    assert meta["sources"]["rpn"]["sha256"] == file_sha256(rpn_dir / "model_final.pth")
    assert meta["sources"]["fast_rcnn"]["sha256"] == file_sha256(frcn_dir / "model_final.pth")
    assert meta["verified"]["max_box_difference_px"] < 1e-3
    assert sorted(p.name for p in onnx_dir.iterdir()) == ["meta.json", "model.onnx"]


@pytest.mark.parametrize("size", EXACT_SIZES)
def test_onnx_runtime_equals_eager(onnx_dir, graph, size):
    (image,) = images(size)
    assert_same_detections(load(onnx_dir).run(image), eager(graph, image), box_tolerance=1e-2)


def test_onnx_runtime_at_a_size_its_resize_rounds_differently(onnx_dir, graph):
    (image,) = images(INEXACT_SIZE)
    got, expected = load(onnx_dir).run(image), eager(graph, image)
    # the same objects, boxes within a tenth of a pixel (measured: 1.5e-2 px at worst)
    assert len(got[0]) == len(expected[0]) and np.array_equal(got[2], expected[2])
    np.testing.assert_allclose(got[0], expected[0], rtol=0, atol=0.1)


def test_the_paper_familys_roi_pooling_exports(tiny_stage_dirs, write_stage, tmp_path):
    """MODEL.ROI_BOX_HEAD.POOLER_TYPE ROIPool (the paper family's): the graph pools as detectron2's
    head does (the predictor's detections), and ONNX Runtime's MaxRoiPool as the graph does."""
    from resnext_det.engine.two_stage import TwoStagePredictor

    frcn = write_stage(
        tmp_path / "fast_rcnn",
        "demo/fast_rcnn_tiny_C4.yaml",
        ["MODEL.ROI_BOX_HEAD.POOLER_TYPE", "ROIPool"],
        seed=2,
    )
    pair = load_stage_pair(tiny_stage_dirs[0], frcn)
    pooled = build_graph(pair)
    assert pooled.max_pooling
    (image,) = images(EXACT_SIZES[0])
    expected = TwoStagePredictor(pair.rpn, pair.fast_rcnn)(image)
    got = eager(pooled, image)
    assert_same_detections(
        got,
        [expected.pred_boxes.tensor.numpy(), expected.scores.numpy(), expected.pred_classes.numpy()],
        1e-4,
    )
    exported = export_stage_pair(tiny_stage_dirs[0], frcn, tmp_path / "onnx", "onnx")
    assert_same_detections(load(exported).run(image), got, box_tolerance=1e-2)


def test_predictor_call_returns_instances_in_image_pixels(onnx_dir):
    (image,) = images((300, 90))
    instances = load(onnx_dir)(image)
    assert instances.image_size == (300, 90) and len(instances) > 0
    boxes = instances.pred_boxes.tensor
    assert (boxes[:, 2] <= 90 + 1e-3).all() and (boxes[:, 3] <= 300 + 1e-3).all() and (boxes >= 0).all()


def test_an_existing_folder_is_kept_without_overwrite(onnx_dir, tiny_stage_dirs, tmp_path):
    target = tmp_path / "mine"
    target.mkdir()
    (target / "notes.txt").write_text("mine")
    with pytest.raises(OutputDirError, match="exists; pass --overwrite"):
        export_stage_pair(*tiny_stage_dirs, target, "onnx")
    assert [p.name for p in target.iterdir()] == ["notes.txt"]


def test_stages_that_do_not_pair_write_nothing(tiny_stage_dirs, tmp_path, write_stage):
    rpn_dir, frcn_dir = tiny_stage_dirs
    with pytest.raises(ConfigError, match="must build a ProposalNetwork"):
        export_stage_pair(frcn_dir, frcn_dir, tmp_path / "a", "onnx")
    larger = write_stage(tmp_path / "frcn_320", "demo/fast_rcnn_tiny_C4.yaml", ["INPUT.MIN_SIZE_TEST", "320"])
    with pytest.raises(ConfigError, match=r"INPUT\.MIN_SIZE_TEST differs between the RPN \(.*: 256\) and"):
        export_stage_pair(rpn_dir, larger, tmp_path / "b", "onnx")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["frcn_320"]  # no output, no partial folder


def test_a_checkpoint_that_does_not_fit_its_config(tiny_stage_dirs, tmp_path):
    rpn_dir, frcn_dir = tiny_stage_dirs
    other = shutil.copytree(frcn_dir, tmp_path / "frcn")
    config = (other / "config.yaml").read_text()
    (other / "config.yaml").write_text(config.replace("BOTTLENECK_WIDTH: 4", "BOTTLENECK_WIDTH: 8"))
    with pytest.raises(
        WeightsMismatchError, match=r"model_final\.pth does not fit the model of --fast-rcnn .*shape"
    ):
        export_stage_pair(rpn_dir, other, tmp_path / "out", "onnx")
    assert not (tmp_path / "out").exists()


def test_an_unsupported_operator_is_named(tmp_path):
    """The exporter's failure names the operator it has no translation for. A module of that
    operator alone: the message comes from the exporter's chain of causes either way, and
    tracing the whole detector first took 15 s."""

    @torch.library.custom_op("resnext_test::opaque", mutates_args=())
    def opaque(x: torch.Tensor) -> torch.Tensor:
        return x.clone()

    @opaque.register_fake
    def _(x):
        return torch.empty_like(x)

    class Opaque(torch.nn.Module):
        def forward(self, image):
            features = opaque(image.float())
            return features[:, :4], features[:, 0], image[:, 0].long()  # boxes, scores, classes

    with pytest.raises(ExportError, match=r"operator resnext_test[.:]+opaque.* cannot be exported"):
        write_onnx(Opaque(), torch.zeros(256, 320, 3, dtype=torch.uint8), tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()


def test_a_truncated_model_file_is_refused_by_name(onnx_dir, tmp_path):
    copy = shutil.copytree(onnx_dir, tmp_path / "copy")
    data = (copy / "model.onnx").read_bytes()
    (copy / "model.onnx").write_bytes(data[: len(data) // 2])
    with pytest.raises(ExportError, match=r"model\.onnx is truncated or changed"):
        load(copy)


def test_random_x50_pair_at_full_size_exports_and_runs_at_two_sizes(tmp_path, write_stage):
    """The paper's ResNeXt-50 32x4d C4 pair at its 800-pixel test size, random weights; a low
    score threshold so that random class scores (about 1/81) still give detections. 100 proposals
    per image instead of the config's 1000: the res5 head's cost is proportional to them (at 1000
    it was 2/3 of this test's time), the graph is the same either way, and 100 proposals of 80
    classes still fill DETECTIONS_PER_IMAGE."""
    rpn = write_stage(tmp_path / "rpn", "COCO-Detection/rpn_X50_32x4d_C4.yaml", [])
    frcn = write_stage(tmp_path / "frcn", "COCO-Detection/fast_rcnn_X50_32x4d_C4.yaml", [])
    opts = ["MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.001", "MODEL.RPN.POST_NMS_TOPK_TEST", "100",
            "DATASETS.PRECOMPUTED_PROPOSAL_TOPK_TEST", "100"]  # fmt: skip
    folder = export_stage_pair(rpn, frcn, tmp_path / "onnx", "onnx", opts=opts)
    meta = json.loads((folder / "meta.json").read_text())
    assert meta["template"]["rpn"] == meta["template"]["fast_rcnn"]
    assert (meta["template"]["fast_rcnn"]["depth"], meta["template"]["fast_rcnn"]["cardinality"]) == (50, 32)
    assert len(meta["classes"]) == 80 and meta["category_ids"][-1] == 90  # COCO's ids
    graph = build_graph(load_stage_pair(rpn, frcn, opts=opts))
    predictor = load(folder)
    for size in [(400, 600), (800, 1000)]:  # resized 2x and kept: the same pixels in every backend
        (image,) = images(size)
        got = predictor.run(image)
        assert_same_detections(got, eager(graph, image), box_tolerance=1e-2)
        assert len(got[0]) == 100  # DETECTIONS_PER_IMAGE
        assert got[0][:, 2].max() <= size[1] and got[0][:, 3].max() <= size[0]


def test_verification_refuses_boxes_that_moved(onnx_dir, graph, monkeypatch):
    """meta.json's ``verified`` is a check, not only a record: boxes a pixel off stop the export."""
    import resnext_det.deploy.export as export

    example = export.example_image(graph.min_size, graph.max_size)
    assert export._verify(graph, onnx_dir, example, "cpu")["max_box_difference_px"] < 1e-3

    class Shifted:
        def __init__(self, predictor):
            self.predictor = predictor

        def run(self, image):
            boxes, scores, classes = self.predictor.run(image)
            return boxes + 0.5, scores, classes

    monkeypatch.setattr(export, "load", lambda folder, device="cpu": Shifted(load(folder, device)))
    with pytest.raises(ExportError, match=r"boxes differ by up to 0\.5 px \(at most 0\.01 px expected\)"):
        export._verify(graph, onnx_dir, example, "cpu")
