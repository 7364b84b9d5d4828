"""LazyConfig files in the tools (``engine.lazy_config``): overrides are checked like YAML keys,
stage 1's proposals reach stage 2's loaders, and each test dataset gets its own loader and
evaluator."""

from __future__ import annotations

from pathlib import Path

from resnext_det.data.checked_mapper import ImageCheckingMapper
from resnext_det.engine.defaults import merge_config
from resnext_det.engine.lazy_config import (
    attach_lazy_proposals,
    load_lazy_config,
    loader_dataset_names,
    with_test_dataset,
)
from resnext_det.errors import ConfigError, ProposalFileError
from resnext_det.proposals.files import write_proposal_file
from resnext_det.proposals.mapper import ProposalLookupMapper
from resnext_det.proposals.store import write_proposal_store

import numpy as np
import pytest
from detectron2.config import get_cfg, instantiate
from detectron2.data import DatasetCatalog

# code the two detectron2 builds differ in: CI runs this file on both (tests/README.md)
pytestmark = pytest.mark.both_builds

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
RPN = str(CONFIGS / "lazy" / "demo" / "rpn_tiny_C4.py")
FAST_RCNN = str(CONFIGS / "lazy" / "demo" / "fast_rcnn_tiny_C4.py")


def test_overrides_change_existing_keys_and_new_arguments_of_a_call():
    cfg = load_lazy_config(
        RPN, ["train.max_iter=7", "model.backbone.norm=BN", "model.backbone.zero_init_residual=True"]
    )
    assert cfg.train.max_iter == 7 and cfg.model.backbone.norm == "BN"
    assert (
        cfg.model.backbone.zero_init_residual is True
    )  # not in the file: an argument of build_resnext_trunk
    frcn = load_lazy_config(FAST_RCNN, ["model.backbone.norm=BN"])
    assert instantiate(frcn.model.roi_heads.res5)[0].conv1.norm.__class__.__name__ == "BatchNorm2d"  # follows


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("train.max_iterr=7", r"has no key 'train.max_iterr'.*train has .*max_iter"),
        ("model.backbone.zero_init_residul=True", r"has no key 'model.backbone.zero_init_residul'"),
        ("MODEL.WEIGHTS=w.pth", r"MODEL.WEIGHTS is a YAML key: use train.init_checkpoint"),
        ("train.max_iter=[1,", r"command-line override of .*rpn_tiny_C4.py"),
        ("train.max_iter=abc", r"train.max_iter is 'abc'; expected a positive integer"),
        ("train.checkpointer.period=0", r"train.checkpointer.period is 0; expected a positive integer"),
        ("train.amp.enabled=maybe", r"train.amp.enabled is 'maybe'; expected true or false"),
        ("train.device=7", r"train.device is 7; expected"),
    ],
)
def test_a_wrong_override_is_a_config_error_naming_it(override, expected):
    with pytest.raises(ConfigError, match=expected):
        load_lazy_config(RPN, [override])


def test_yaml_style_key_value_pairs_get_the_lazyconfig_key():
    with pytest.raises(
        ConfigError, match=r"key=value .*not YAML's KEY VALUE.*MODEL.WEIGHTS is train.init_checkpoint"
    ):
        load_lazy_config(RPN, ["MODEL.WEIGHTS", "w.pth"])


def test_a_broken_or_incomplete_file_is_named(tmp_path):
    broken = tmp_path / "broken.py"
    broken.write_text("model = dict(\n")
    with pytest.raises(ConfigError, match=r"broken.py could not be loaded: SyntaxError"):
        load_lazy_config(str(broken))
    partial = tmp_path / "partial.py"
    partial.write_text("model = dict(a=1)\ntrain = dict(output_dir='x')\n")
    with pytest.raises(
        ConfigError, match=r"partial.py lacks dataloader.test, dataloader.evaluator, train.init"
    ):
        load_lazy_config(str(partial))
    with pytest.raises(ConfigError, match="does not exist"):
        load_lazy_config(str(tmp_path / "missing.py"))


def test_yaml_only_pretraining_refuses_a_lazy_config_naming_the_tools_that_take_it():
    with pytest.raises(ConfigError, match=r"is a LazyConfig \(.py\): the detection tools take those"):
        merge_config(get_cfg(), RPN)


def test_each_test_dataset_gets_its_loader_evaluator_and_output(tmp_path):
    cfg = load_lazy_config(RPN, ["dataloader.test.dataset.names=[a,b]"])
    one = with_test_dataset(cfg, "b", str(tmp_path / "inference" / "b"))
    assert one.dataloader.test.dataset.names == "b" and one.dataloader.evaluator.dataset_name == "b"
    assert one.dataloader.evaluator.output_dir == str(tmp_path / "inference" / "b")
    assert one.dataloader.test.mapper._target_ is ImageCheckingMapper  # unreadable images are named
    assert loader_dataset_names(cfg, "test") == ["a", "b"]  # the original is unchanged


def _proposals(ids):
    rng = np.random.default_rng(0)
    boxes = [np.sort(rng.uniform(0, 100, (3, 4)).astype(np.float32), axis=1) for _ in ids]
    logits = [np.array([3.0, 2.0, 1.0], np.float32) for _ in ids]  # best first, as stage 1 writes them
    return {"ids": list(ids), "boxes": boxes, "objectness_logits": logits}


def test_stage1_proposals_reach_both_loaders(demo_root, tmp_path):
    ids = [r["image_id"] for r in DatasetCatalog.get("resnext_demo_val")]
    write_proposal_file(tmp_path / "proposals_resnext_demo_val.pkl", _proposals(ids))
    cfg = load_lazy_config(FAST_RCNN, ["dataloader.train.dataset.names=[resnext_demo_val]"])
    with pytest.raises(ProposalFileError, match=r"proposal pickle, .*tools/convert_proposals\.py"):
        attach_lazy_proposals(cfg, str(tmp_path), FAST_RCNN)  # one format at the hand-off: the store
    write_proposal_store(tmp_path / "proposals_resnext_demo_val", _proposals(ids))
    attach_lazy_proposals(cfg, str(tmp_path), FAST_RCNN)
    for loader in ("train", "test"):
        node = cfg.dataloader[loader]
        assert node.mapper._target_ is ProposalLookupMapper
        assert node.mapper.dataset_names == ["resnext_demo_val"]
        assert node.dataset.get("proposal_files") is None
    record = next(iter(instantiate(with_test_dataset(cfg, "resnext_demo_val").dataloader.test)))[0]
    boxes = _proposals(ids)["boxes"][ids.index(record["image_id"])]
    scale = record["image"].shape[1] / record["height"]  # the mapper resizes the proposals with the image
    np.testing.assert_allclose(record["proposals"].proposal_boxes.tensor.numpy(), boxes * scale, rtol=1e-5)


def test_stage2_checks_the_model_and_the_coverage(demo_root, tmp_path):
    ids = [r["image_id"] for r in DatasetCatalog.get("resnext_demo_val")]
    write_proposal_store(tmp_path / "proposals_resnext_demo_val", _proposals(ids[1:]))
    cfg = load_lazy_config(FAST_RCNN, ["dataloader.train.dataset.names=[resnext_demo_val]"])
    with pytest.raises(ProposalFileError, match="no proposals for 1 of the 40 images"):
        attach_lazy_proposals(cfg, str(tmp_path), FAST_RCNN)
    with pytest.raises(ConfigError, match="has its own proposal_generator"):
        attach_lazy_proposals(load_lazy_config(RPN), str(tmp_path), RPN)
    no_topk = load_lazy_config(FAST_RCNN, ["dataloader.test.mapper.precomputed_proposal_topk=null"])
    with pytest.raises(ConfigError, match="dataloader.test.mapper of .* keeps no precomputed proposals"):
        attach_lazy_proposals(no_topk, str(tmp_path), FAST_RCNN, test_only=True)


def test_scaling_to_the_processes_and_what_it_cannot_scale():
    """train.reference_world_size (8 in the COCO twins): the preflight's batch is the scaled one;
    a batch that does not divide, or a schedule without steps to scale, is named."""
    from resnext_det.engine.lazy_train import scale_to_processes
    from resnext_det.engine.run_config import LazyRun

    path = str(CONFIGS / "lazy" / "rpn_R50_C4.py")
    run = LazyRun(load_lazy_config(path), path)
    assert [run.total_batch(n).value for n in (1, 2, 8)] == [2, 4, 16]
    assert run.cfg.dataloader.train.total_batch_size == 16  # the config itself is left as written
    uneven = load_lazy_config(path, ["dataloader.train.total_batch_size=12"])
    with pytest.raises(
        ConfigError, match="total_batch_size 12 is not a multiple of train.reference_world_size 8"
    ):
        scale_to_processes(uneven, 2, path)
    constant = load_lazy_config(path)
    constant.lr_multiplier = {
        "_target_": "fvcore.common.param_scheduler.ConstantParamScheduler",
        "value": 1.0,
    }
    with pytest.raises(ConfigError, match="set train.reference_world_size=0 to train as written"):
        scale_to_processes(constant, 2, path)
    assert scale_to_processes(constant, 8, path) is constant  # nothing to scale on 8 processes
