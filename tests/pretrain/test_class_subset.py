"""TEST.CLASS_SUBSET: a model evaluated on some of its classes (Table 6's 1K-way test of an
ImageNet-5K model), checked against the model's own logits."""

from __future__ import annotations

import shutil

from pretrain.data import build_datasets
from pretrain.engine import build_classifier, evaluate
from pretrain.synthetic import SYNTHETIC_CLASSES
from resnext_det.errors import ConfigError, DatasetLayoutError

import pytest
import torch

KEPT = [SYNTHETIC_CLASSES[1], SYNTHETIC_CLASSES[3], SYNTHETIC_CLASSES[4]]


@pytest.fixture
def subset_root(image_folder, tmp_path):
    """A val folder with three of the model's five classes, and the model's classes.txt."""
    root = tmp_path / "subset"
    for name in KEPT:
        shutil.copytree(image_folder / "val" / name, root / "val" / name)
    classes = tmp_path / "classes.txt"
    classes.write_text("".join(f"{c}\n" for c in SYNTHETIC_CLASSES))
    return root, classes


def test_only_the_subsets_logits_compete(tiny_cfg, subset_root):
    root, classes = subset_root
    cfg = tiny_cfg("DATA.ROOT", str(root), "TEST.CLASS_SUBSET", str(classes))
    torch.manual_seed(0)
    model = build_classifier(cfg).eval()
    val = build_datasets(cfg, with_train=False)["val"]
    assert val.classes == KEPT and val.logit_indices == [1, 3, 4]
    result = evaluate(cfg, model, val)
    # by hand: each image's argmax over the logits of classes 1, 3, 4, against its folder
    wrong = total = 0
    with torch.no_grad():
        for k in range(len(val)):
            image, label = val[k]
            logits = model(image[None].contiguous(memory_format=torch.channels_last))[0]  # as evaluate
            assert logits.shape == (5,)
            wrong += int(logits[[1, 3, 4]].argmax()) != label
            total += 1
    assert result["top1_err"] == pytest.approx(100 * wrong / total)
    assert result["top5_err"] == 0.0  # three candidates: always in the top 5


def test_class_subset_errors(tiny_cfg, subset_root, tmp_path):
    root, classes = subset_root
    with pytest.raises(DatasetLayoutError, match="TEST.CLASS_SUBSET .*nope.txt does not exist"):
        build_datasets(
            tiny_cfg("DATA.ROOT", str(root), "TEST.CLASS_SUBSET", str(tmp_path / "nope.txt")), False
        )
    short = tmp_path / "short.txt"
    short.write_text("\n".join(SYNTHETIC_CLASSES[:4]))
    with pytest.raises(DatasetLayoutError, match="names 4 classes, MODEL.NUM_CLASSES is 5"):
        build_datasets(tiny_cfg("DATA.ROOT", str(root), "TEST.CLASS_SUBSET", str(short)), False)
    other = tmp_path / "other.txt"
    other.write_text("\n".join(["a", "b", "c", "d", SYNTHETIC_CLASSES[1]]))
    with pytest.raises(
        DatasetLayoutError, match=r"2 class folder\(s\) of .* are not among the model's classes"
    ):
        build_datasets(tiny_cfg("DATA.ROOT", str(root), "TEST.CLASS_SUBSET", str(other)), False)
    with pytest.raises(ConfigError, match="use it with --eval-only"):
        build_datasets(tiny_cfg("DATA.ROOT", str(root), "TEST.CLASS_SUBSET", str(classes)), True)
