"""TwoStageGraph in eager mode computes what TwoStagePredictor computes with detectron2's code."""

from __future__ import annotations

from resnext_det.deploy import build_graph
from resnext_det.engine.two_stage import TwoStagePredictor, load_stage_pair
from resnext_det.errors import ConfigError

import numpy as np
import pytest
import torch
from detectron2.layers import FrozenBatchNorm2d

# code the two detectron2 builds differ in: CI runs this file on both (tests/README.md)
pytestmark = pytest.mark.both_builds


@pytest.fixture(scope="module")
def pair(tiny_stage_dirs):
    return load_stage_pair(*tiny_stage_dirs)


def test_graph_folds_frozen_bn_and_keeps_the_stage_settings(pair):
    graph = build_graph(pair)
    assert not any(isinstance(m, FrozenBatchNorm2d) for m in graph.modules())
    assert (graph.min_size, graph.max_size) == (256, 384)
    # the RPN keeps what stage 1 wrote into the test proposal files, stage 2 reads the top 100
    assert (graph.pre_nms_topk, graph.post_nms_topk) == (500, 100)
    assert graph.num_classes == 3 and graph.flip_channels


# (128, 160) is upsampled 2x and (256, 300) kept: sizes where the uint8 resize equals PIL's (the
# predictor's) bit for bit, so any difference would come from the detection code.
@pytest.mark.parametrize("size", [(128, 160), (256, 300)])
def test_eager_graph_equals_two_stage_predictor(pair, size):
    graph = build_graph(pair)
    predictor = TwoStagePredictor(pair.rpn, pair.fast_rcnn)
    image = np.random.default_rng(sum(size)).integers(0, 256, size=(*size, 3), dtype=np.uint8)
    expected = predictor(image)
    with torch.no_grad():
        boxes, scores, classes = graph(torch.from_numpy(image))
    assert len(expected) > 10  # random weights still give many detections: a real comparison
    assert torch.equal(classes, expected.pred_classes)
    # the predictor runs in channels_last on the CPU, the graph contiguous: kernels that add in
    # another order (1.1e-4 px seen on a 300 px image: float32's rounding, not a bug)
    torch.testing.assert_close(boxes, expected.pred_boxes.tensor, rtol=0, atol=1e-3)
    torch.testing.assert_close(scores, expected.scores, rtol=0, atol=1e-6)


def test_graph_refuses_what_it_cannot_represent(pair):
    from resnext_det.deploy.graph import TwoStageGraph

    rpn, fast_rcnn = pair.rpn.build_model(), pair.fast_rcnn.build_model()
    with pytest.raises(ConfigError, match="INPUT.FORMAT must be RGB or BGR"):
        TwoStageGraph(rpn, fast_rcnn, input_format="YUV-BT.601", min_size=256, max_size=384, proposal_topk=10)
