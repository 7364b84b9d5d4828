"""The paper family of configs carries py-faster-rcnn's values, keeps appendix B's schedule, and
every key where it differs from the modern family has a source note (docs/paper_fidelity.md's
table is generated from them: tests/test_docs.py checks it is current)."""

from __future__ import annotations

from pathlib import Path

from resnext_det.engine import families, setup_cfg
from resnext_det.engine.families import (
    MODELS,
    STAGES,
    family_differences,
    key_notes,
    stage_config,
)
from resnext_det.errors import ConfigError

import pytest

#: py-faster-rcnn's values, typed from its source (lib/fast_rcnn/config.py, the COCO prototxts,
#: tools/train_faster_rcnn_alt_opt.py), as detectron2 keys
PY_FASTER_RCNN = {
    "rpn": {
        "INPUT.MIN_SIZE_TRAIN": (600,),
        "INPUT.MAX_SIZE_TRAIN": 1000,
        "INPUT.MIN_SIZE_TEST": 600,
        "INPUT.MAX_SIZE_TEST": 1000,
        "MODEL.ANCHOR_GENERATOR.SIZES": [[64, 128, 256, 512]],
        "MODEL.ANCHOR_GENERATOR.ASPECT_RATIOS": [[0.5, 1.0, 2.0]],
        "MODEL.RPN.IOU_THRESHOLDS": [0.3, 0.7],
        "MODEL.RPN.BATCH_SIZE_PER_IMAGE": 256,
        "MODEL.RPN.POSITIVE_FRACTION": 0.5,
        "MODEL.RPN.NMS_THRESH": 0.7,
        "MODEL.RPN.BOUNDARY_THRESH": 0,
        "MODEL.RPN.SMOOTH_L1_BETA": 1 / 9,  # sigma 3
        "MODEL.RPN.PRE_NMS_TOPK_TEST": 6000,
        "MODEL.RPN.POST_NMS_TOPK_TRAIN": 2000,
        "MODEL.PROPOSAL_GENERATOR.MIN_SIZE": 16,
        "SOLVER.WARMUP_ITERS": 0,
        "SOLVER.BIAS_LR_FACTOR": 2.0,
        "SEED": 3,
    },
    "fast_rcnn": {
        "INPUT.MIN_SIZE_TEST": 600,
        "INPUT.MAX_SIZE_TEST": 1000,
        "MODEL.ROI_HEADS.IOU_THRESHOLDS": [0.1, 0.5],
        "MODEL.ROI_HEADS.IOU_LABELS": [-1, 0, 1],
        "MODEL.ROI_HEADS.POSITIVE_FRACTION": 0.25,
        "MODEL.ROI_HEADS.NMS_THRESH_TEST": 0.3,
        "MODEL.ROI_HEADS.SCORE_THRESH_TEST": 0.05,
        "TEST.DETECTIONS_PER_IMAGE": 100,
        "MODEL.ROI_BOX_HEAD.POOLER_TYPE": "ROIPool",
        "MODEL.ROI_BOX_HEAD.BBOX_REG_WEIGHTS": (10.0, 10.0, 5.0, 5.0),
        "MODEL.ROI_BOX_HEAD.SMOOTH_L1_BETA": 1.0,
        "DATASETS.PRECOMPUTED_PROPOSAL_TOPK_TEST": 300,
        "DATASETS.PRECOMPUTED_PROPOSAL_TOPK_TRAIN": 2000,
        "SOLVER.WARMUP_ITERS": 0,
        "SEED": 3,
    },
}
#: appendix B's own settings, which both families keep
APPENDIX_B = (
    "SOLVER.IMS_PER_BATCH", "SOLVER.BASE_LR", "SOLVER.STEPS", "SOLVER.MAX_ITER", "SOLVER.MOMENTUM",
    "SOLVER.WEIGHT_DECAY", "MODEL.RPN.BATCH_SIZE_PER_IMAGE", "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE",
    "MODEL.RESNEXT.DEPTH", "MODEL.RESNEXT.CARDINALITY", "MODEL.RESNEXT.BOTTLENECK_WIDTH",
    "DATASETS.TRAIN", "DATASETS.TEST",
)  # fmt: skip


def rounded(v):
    """Lists for tuples, floats to 6 places: a YAML value compares with a typed one."""
    if isinstance(v, (list, tuple)):
        return [rounded(x) for x in v]
    return round(v, 6) if isinstance(v, float) else v


def value(cfg, key: str):
    for part in key.split("."):
        cfg = cfg[part]
    return cfg


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("stage", STAGES)
def test_the_paper_family_has_py_faster_rcnns_values_and_appendix_bs(stage, model):
    paper = setup_cfg(stage_config("paper", stage, model))
    modern = setup_cfg(stage_config("modern", stage, model))
    for key, expected in PY_FASTER_RCNN[stage].items():
        assert rounded(value(paper, key)) == rounded(expected), key
    for key in APPENDIX_B:
        assert value(paper, key) == value(modern, key), key
    depth, cardinality, width = MODELS[model]
    assert (paper.MODEL.RESNEXT.DEPTH, paper.MODEL.RESNEXT.CARDINALITY) == (depth, cardinality)
    assert paper.MODEL.RESNEXT.BOTTLENECK_WIDTH == width


def test_every_difference_has_its_source_and_the_table_lists_them_all():
    differences = family_differences()
    listed = {key for d in differences for key in d.keys}
    for stage in STAGES:
        paper = families._flat(setup_cfg(stage_config("paper", stage, "X50_32x4d")))
        modern = families._flat(setup_cfg(stage_config("modern", stage, "X50_32x4d")))
        assert {k for k in paper if paper[k] != modern.get(k)} <= listed
    assert all(d.source.startswith("py-faster-rcnn ") and d.effect for d in differences)
    (input_row,) = [d for d in differences if "INPUT.MIN_SIZE_TEST" in d.keys]
    assert input_row.stages == ("rpn", "fast_rcnn") and len(input_row.keys) == 4  # one note, four keys
    assert dict(zip(input_row.keys, input_row.paper, strict=True))["INPUT.MIN_SIZE_TEST"] == "600"
    assert dict(zip(input_row.keys, input_row.modern, strict=True))["INPUT.MAX_SIZE_TEST"] == "1333"


def test_a_difference_without_a_source_note_is_an_error(tmp_path, monkeypatch):
    paper_file = Path(stage_config("paper", "fast_rcnn", "X50_32x4d"))
    undocumented = tmp_path / "fast_rcnn_X50_32x4d_C4.yaml"
    base = (paper_file.parent / "Base-FastRCNN-C4.yaml").resolve()
    undocumented.write_text(f'_BASE_: "{base}"\nTEST:\n  DETECTIONS_PER_IMAGE: 50\n')
    shipped = families.stage_config

    def with_undocumented(family, stage, model):
        return (
            str(undocumented) if (family, stage) == ("paper", "fast_rcnn") else shipped(family, stage, model)
        )

    monkeypatch.setattr(families, "stage_config", with_undocumented)
    with pytest.raises(ConfigError, match=r"TEST.DETECTIONS_PER_IMAGE differs .*'# source:'.*fast_rcnn_X50"):
        family_differences()


def test_notes_belong_to_the_keys_below_them(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(
        "# header: not a note\n"
        "MODEL:\n"
        "  RPN:\n"
        "    # source: a\n"
        "    # effect: b\n"
        "    NMS_THRESH: 0.5\n"
        "    TOPK: 3\n"
        "\n"
        "    LOSS: 1\n"
        "  # source: c\n"
        "  ROI_HEADS:\n"
        "    NMS: 0.1\n"
        "INPUT:\n"
        "  # source: d\n"
        "  # differs: e\n"
        "  SIZE: 600\n"
    )
    assert key_notes(config) == {
        "MODEL.RPN.NMS_THRESH": {"source": "a", "effect": "b"},
        "MODEL.RPN.TOPK": {"source": "a", "effect": "b"},
        "INPUT.SIZE": {"source": "d", "differs": "e"},
    }


def test_unknown_names_are_refused():
    with pytest.raises(ConfigError, match="unknown model 'X50'.*R50, X50_32x4d"):
        stage_config("paper", "rpn", "X50")
    with pytest.raises(ConfigError, match="unknown config family 'old'"):
        stage_config("old", "rpn", "R50")
