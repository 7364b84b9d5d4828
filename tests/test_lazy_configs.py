"""Every YAML config of configs/COCO-Detection/ has a LazyConfig twin in configs/lazy/ that builds
the same model (state-dict keys and shapes) and the same schedule (batch, lr, steps, iterations)."""

from __future__ import annotations

from pathlib import Path

from resnext_det import add_resnext_config, add_two_stage_config

import pytest
import torch
from detectron2.config import LazyConfig, get_cfg, instantiate
from detectron2.modeling import build_model

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
YAML_TWINS = sorted(p.stem for p in (CONFIGS / "COCO-Detection").glob("*.yaml"))


def yaml_cfg(name: str):
    cfg = get_cfg()
    add_resnext_config(cfg)
    add_two_stage_config(cfg)
    cfg.merge_from_file(str(CONFIGS / "COCO-Detection" / f"{name}.yaml"))
    cfg.MODEL.DEVICE = "cpu"
    return cfg


def test_every_yaml_config_has_a_lazy_twin():
    lazy = sorted(p.stem for p in (CONFIGS / "lazy").glob("*.py"))
    assert lazy == YAML_TWINS and len(lazy) == 15


@pytest.mark.parametrize("name", YAML_TWINS)
def test_lazy_twin_builds_the_same_model_and_schedule(name):
    cfg = yaml_cfg(name)
    lazy = LazyConfig.load(str(CONFIGS / "lazy" / f"{name}.py"))
    with torch.device("meta"):
        ours = {k: tuple(v.shape) for k, v in instantiate(lazy.model).state_dict().items()}
    cfg.MODEL.DEVICE = "meta"
    with torch.device("meta"):
        theirs = {k: tuple(v.shape) for k, v in build_model(cfg).state_dict().items()}
    assert ours == theirs
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
    # the data: trainval35k / minival, RGB, the test size, the proposals kept in stage 2
    train, test = lazy.dataloader.train, lazy.dataloader.test
    assert tuple(train.dataset.names) == tuple(cfg.DATASETS.TRAIN)
    assert test.dataset.names == cfg.DATASETS.TEST[0]
    assert train.mapper.image_format == test.mapper.image_format == cfg.INPUT.FORMAT
    assert test.mapper.augmentations[0].short_edge_length == cfg.INPUT.MIN_SIZE_TEST
    topk = (cfg.DATASETS.PRECOMPUTED_PROPOSAL_TOPK_TRAIN, cfg.DATASETS.PRECOMPUTED_PROPOSAL_TOPK_TEST)
    expected = topk if cfg.MODEL.LOAD_PROPOSALS else (None, None)
    assert (train.mapper.precomputed_proposal_topk, test.mapper.precomputed_proposal_topk) == expected


def test_a_lazy_twin_runs_on_the_cpu():
    """The instantiated model is a working detector: it predicts on an image."""
    lazy = LazyConfig.load(str(CONFIGS / "lazy" / "faster_rcnn_R50_C4.py"))
    lazy.model.roi_heads.num_classes = 3
    model = instantiate(lazy.model).eval()
    with torch.no_grad():
        out = model([{"image": torch.rand(3, 128, 160) * 255, "height": 128, "width": 160}])
    assert out[0]["instances"].image_size == (128, 160)
