"""Every YAML config of configs/COCO-Detection/ has a LazyConfig twin in configs/lazy/ (the paper
family's, configs/COCO-Detection/paper/, in configs/lazy/paper/; the demo's two stages in
configs/lazy/demo/) that builds the same model (state-dict keys and shapes, and the settings the
paper family changes: anchors, RPN sampling and losses, RoI pooling, background range, test NMS),
the same schedule (batch, lr, bias lr, steps, iterations) and the same trained stage (what
predict.py and the exporter read)."""

from __future__ import annotations

import dataclasses
import inspect
from pathlib import Path

from resnext_det import add_resnext_config, add_two_stage_config
from resnext_det.engine.lazy_train import scale_to_processes
from resnext_det.engine.trained_stage import read_trained_stage

import pytest
import torch
from detectron2.config import LazyConfig, get_cfg, instantiate
from detectron2.engine import DefaultTrainer
from detectron2.modeling import build_model
from detectron2.modeling.roi_heads import FastRCNNOutputLayers

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
#: the families' configs (the paper family's bases excepted), relative to configs/COCO-Detection
YAML_TWINS = sorted(
    str(p.relative_to(CONFIGS / "COCO-Detection").with_suffix(""))
    for p in (CONFIGS / "COCO-Detection").glob("**/[!B]*.yaml")
)
#: (YAML config, its LazyConfig twin), relative to configs/
PAIRS = [(f"COCO-Detection/{name}.yaml", f"lazy/{name}.py") for name in YAML_TWINS] + [
    (f"demo/{stage}_tiny_C4.yaml", f"lazy/demo/{stage}_tiny_C4.py") for stage in ("rpn", "fast_rcnn")
]


def yaml_cfg(path: str):
    cfg = get_cfg()
    add_resnext_config(cfg)
    add_two_stage_config(cfg)
    cfg.merge_from_file(str(CONFIGS / path))
    cfg.MODEL.DEVICE = "cpu"
    return cfg


def test_every_yaml_config_has_a_lazy_twin():
    lazy = sorted(
        str(p.relative_to(CONFIGS / "lazy").with_suffix(""))
        for folder in ("lazy", "lazy/paper")
        for p in (CONFIGS / folder).glob("*.py")
    )
    assert lazy == YAML_TWINS and len(lazy) == 15 + 10


@pytest.mark.parametrize(("yaml", "twin"), PAIRS, ids=[twin for _, twin in PAIRS])
def test_lazy_twin_builds_the_same_model_and_schedule(yaml, twin):
    cfg = yaml_cfg(yaml)
    lazy = LazyConfig.load(str(CONFIGS / twin))
    cfg.MODEL.DEVICE = "meta"
    with torch.device("meta"):
        ours_model = instantiate(lazy.model)
        theirs_model = build_model(cfg)
    assert {k: tuple(v.shape) for k, v in ours_model.state_dict().items()} == {
        k: tuple(v.shape) for k, v in theirs_model.state_dict().items()
    }
    assert model_settings(ours_model) == model_settings(theirs_model)
    # the schedule: batch, lr, momentum, weight decay, steps, iterations, warm-up
    s = cfg.SOLVER
    assert lazy.dataloader.train.total_batch_size == s.IMS_PER_BATCH
    assert (lazy.optimizer.lr, lazy.optimizer.momentum, lazy.optimizer.weight_decay) == (
        s.BASE_LR, s.MOMENTUM, s.WEIGHT_DECAY,
    )  # fmt: skip
    assert lazy.train.max_iter == s.MAX_ITER
    scheduler = lazy.lr_multiplier.scheduler
    assert list(scheduler.milestones) == list(s.STEPS) and scheduler.num_updates == s.MAX_ITER
    assert list(scheduler["values"]) == pytest.approx([s.GAMMA**k for k in range(len(s.STEPS) + 1)])
    assert lazy.lr_multiplier.warmup_length * s.MAX_ITER == pytest.approx(s.WARMUP_ITERS)
    assert lazy.lr_multiplier.warmup_factor == s.WARMUP_FACTOR
    params = lazy.optimizer.params
    assert params.get("bias_lr_factor", 1.0) == s.BIAS_LR_FACTOR
    assert params.get("weight_decay_bias") == s.WEIGHT_DECAY_BIAS
    # the data: trainval35k / minival, RGB, the test size, the proposals kept in stage 2
    train, test = lazy.dataloader.train, lazy.dataloader.test
    assert tuple(train.dataset.names) == tuple(cfg.DATASETS.TRAIN)
    assert test.dataset.names == cfg.DATASETS.TEST[0]
    assert train.mapper.image_format == test.mapper.image_format == cfg.INPUT.FORMAT
    assert test.mapper.augmentations[0].short_edge_length == cfg.INPUT.MIN_SIZE_TEST
    topk = (cfg.DATASETS.PRECOMPUTED_PROPOSAL_TOPK_TRAIN, cfg.DATASETS.PRECOMPUTED_PROPOSAL_TOPK_TEST)
    expected = topk if cfg.MODEL.LOAD_PROPOSALS else (None, None)
    assert (train.mapper.precomputed_proposal_topk, test.mapper.precomputed_proposal_topk) == expected
    assert test.mapper.augmentations[0].max_size == cfg.INPUT.MAX_SIZE_TEST
    # the RPN's top-k, which are also what stage 1's proposal files keep (in YAML and LazyConfig)
    rpn = lazy.model.get("proposal_generator")
    if rpn is not None:
        anchors = cfg.MODEL.ANCHOR_GENERATOR
        assert per_level(rpn.anchor_generator.sizes) == per_level(anchors.SIZES)
        assert per_level(rpn.anchor_generator.aspect_ratios) == per_level(anchors.ASPECT_RATIOS)
        r = cfg.MODEL.RPN
        assert tuple(rpn.pre_nms_topk) == (r.PRE_NMS_TOPK_TRAIN, r.PRE_NMS_TOPK_TEST)
        assert tuple(rpn.post_nms_topk) == (r.POST_NMS_TOPK_TRAIN, r.POST_NMS_TOPK_TEST)
    predictor = lazy.model.get("roi_heads", {}).get("box_predictor")
    if predictor is not None:  # what the detector keeps at test time (unset: the class's default)
        defaults = inspect.signature(FastRCNNOutputLayers.__init__).parameters
        kept = {k: predictor.get(k, defaults[k].default) for k in ("test_nms_thresh", "test_topk_per_image")}
        assert predictor.test_score_thresh == cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST
        assert kept == {
            "test_nms_thresh": cfg.MODEL.ROI_HEADS.NMS_THRESH_TEST,
            "test_topk_per_image": cfg.TEST.DETECTIONS_PER_IMAGE,
        }
    if cfg.SEED >= 0:  # the demo's fixed seed: model initialisation and data stream
        assert lazy.train.seed == train.seed == cfg.SEED
    # on other than 8 processes, both scale the batch, lr and schedule alike
    assert lazy.train.reference_world_size == s.REFERENCE_WORLD_SIZE
    for processes in (2, 16):
        ours, theirs = scale_to_processes(lazy, processes), DefaultTrainer.auto_scale_workers(cfg, processes)
        t = theirs.SOLVER
        assert ours.dataloader.train.total_batch_size == t.IMS_PER_BATCH
        assert ours.optimizer.lr == pytest.approx(t.BASE_LR)
        assert ours.train.max_iter == ours.lr_multiplier.scheduler.num_updates == t.MAX_ITER
        assert list(ours.lr_multiplier.scheduler.milestones) == list(t.STEPS)
        assert ours.lr_multiplier.warmup_length * t.MAX_ITER == pytest.approx(t.WARMUP_ITERS, abs=1)
        assert (ours.train.checkpointer.period, ours.train.eval_period) == (
            t.CHECKPOINT_PERIOD, theirs.TEST.EVAL_PERIOD,
        )  # fmt: skip
    # a trained stage of either twin runs the same on plain images (predict.py, the exporter):
    # every setting read_trained_stage reads, the architecture and template included
    cfg.MODEL.DEVICE, lazy.train.device = "cpu", "cpu"
    ours, theirs = read_trained_stage(cfg), read_trained_stage(lazy)
    assert (ours.kind, theirs.kind) == ("yaml", "lazy")
    assert stage_settings(ours) == stage_settings(theirs)


def per_level(values) -> list[list]:
    """Anchor sizes or ratios per feature level, as detectron2 reads them (a flat list: every level)."""
    values = list(values)
    return [list(v) for v in values] if values and not isinstance(values[0], (int, float)) else [values]


def model_settings(model) -> dict:
    """What the two families set differently inside the modules (the state dict cannot show it):
    the anchors, the RPN's sampling, loss and proposal filter, the RoI sampler's IoU ranges, the
    pooler, the box loss and the test NMS."""
    settings = {}
    rpn = getattr(model, "proposal_generator", None)
    if rpn is not None:
        generator = rpn.anchor_generator
        settings["rpn"] = {
            "anchors": [tuple(a.shape) for a in generator.cell_anchors],  # built on "meta": sizes below
            "offset": generator.offset,
            **{
                k: getattr(rpn, k)
                for k in ("anchor_boundary_thresh", "smooth_l1_beta", "min_box_size", "nms_thresh")
            },
            "matcher": (rpn.anchor_matcher.thresholds, rpn.anchor_matcher.labels),
            "topk": (rpn.pre_nms_topk, rpn.post_nms_topk),
        }
    heads = getattr(model, "roi_heads", None)
    if heads is not None:
        predictor = heads.box_predictor
        settings["roi_heads"] = {
            "matcher": (heads.proposal_matcher.thresholds, heads.proposal_matcher.labels),
            "pooler": [type(p).__name__ for p in heads.pooler.level_poolers],
            "pooler_size": [p.output_size for p in heads.pooler.level_poolers],
            "sampling": (heads.batch_size_per_image, heads.positive_fraction),
            **{k: getattr(predictor, k) for k in ("smooth_l1_beta", "test_nms_thresh", "test_score_thresh")},
        }
    return settings


def stage_settings(stage) -> dict:
    """What a ``TrainedStage`` is, without where it came from (and the weights, which the YAML
    configs name and the LazyConfig twins leave to the command line)."""
    origin = {"source", "kind", "config", "weights"}
    return {f.name: getattr(stage, f.name) for f in dataclasses.fields(stage) if f.name not in origin}


def test_a_lazy_twin_runs_on_the_cpu():
    """The instantiated model is a working detector: it predicts on an image."""
    lazy = LazyConfig.load(str(CONFIGS / "lazy" / "faster_rcnn_R50_C4.py"))
    lazy.model.roi_heads.num_classes = 3
    model = instantiate(lazy.model).eval()
    with torch.no_grad():
        out = model([{"image": torch.rand(3, 128, 160) * 255, "height": 128, "width": 160}])
    assert out[0]["instances"].image_size == (128, 160)


def test_the_demo_sets_the_same_things_in_either_kind_of_config(tmp_path):
    """tools/demo.py --config-kind lazy: its overrides name keys the twins have and set what the
    YAML demo's set (the whole demo gave identical numbers both ways: docs/demo.md)."""
    import importlib.util

    from resnext_det.engine import setup_cfg
    from resnext_det.engine.lazy_config import load_lazy_config

    spec = importlib.util.spec_from_file_location("demo", CONFIGS.parent / "tools" / "demo.py")
    demo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(demo)
    for stage in ("rpn", "fast_rcnn"):
        yaml = setup_cfg(
            str(demo.detection_config("yaml", stage)), demo.overrides("yaml", "w.pth", tmp_path, 3)
        )
        lazy = load_lazy_config(
            str(demo.detection_config("lazy", stage)), demo.overrides("lazy", "w.pth", tmp_path, 3)
        )
        assert (yaml.MODEL.WEIGHTS, yaml.OUTPUT_DIR, yaml.SEED) == ("w.pth", str(tmp_path), 3)
        train = lazy.train
        assert (train.init_checkpoint, train.output_dir, train.seed) == ("w.pth", str(tmp_path), 3)
        assert lazy.dataloader.train.seed == 3  # the YAML SEED's other half: the data stream
