"""MODEL.RESNEXT.NORM "SyncBN" falls back to what can run: BN on one process, detectron2's
NaiveSyncBatchNorm on CPU processes over gloo (whose statistics are the whole batch's)."""

from __future__ import annotations

import json
import warnings

from resnext_det.engine import launch
from resnext_det.layers import norms

import pytest
import torch
from detectron2.layers import NaiveSyncBatchNorm


def tiny_classifier_cfg(*opts):
    from pretrain.config import get_pretrain_cfg
    from resnext_det import get_config_file

    cfg = get_pretrain_cfg()
    cfg.merge_from_file(get_config_file("demo/imagenet_tiny.yaml"))
    cfg.merge_from_list(["MODEL.RESNEXT.NORM", "SyncBN", *opts])
    return cfg


def test_one_process_builds_batch_norm_with_one_warning(monkeypatch):
    from pretrain.engine import build_classifier
    from resnext_det import add_resnext_config, get_config_file
    from resnext_det.engine.lazy_config import load_lazy_config
    from resnext_det.engine.lazy_train import _instantiate_model

    from detectron2.config import get_cfg
    from detectron2.modeling import build_model

    monkeypatch.setattr(norms, "_announced", set())
    with pytest.warns(
        UserWarning, match=r"'SyncBN' needs several GPU processes; on 1 cpu process\(es\)"
    ) as caught:
        classifier = build_classifier(tiny_classifier_cfg())
        cfg = get_cfg()
        add_resnext_config(cfg)
        cfg.merge_from_file(get_config_file("demo/faster_rcnn_tiny_C4.yaml"))
        cfg.merge_from_list(["MODEL.RESNEXT.NORM", "SyncBN", "MODEL.DEVICE", "cpu"])
        detector = build_model(cfg)
        lazy = load_lazy_config(
            str(get_config_file("lazy/demo/fast_rcnn_tiny_C4.py")), ["model.backbone.norm=SyncBN"]
        )
        lazy_detector = _instantiate_model(lazy, "x.py")  # the twin: the same fallback
    assert len([w for w in caught if "SyncBN" in str(w.message)]) == 1  # once per process
    assert lazy.model.backbone.norm == "SyncBN"  # the config itself is left as written
    for model in (classifier, detector, lazy_detector):
        kinds = {type(m) for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)}
        assert kinds == {torch.nn.BatchNorm2d}
    loss = classifier(torch.randn(4, 3, 32, 32)).sum()  # trains: SyncBatchNorm would refuse the CPU
    loss.backward()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert norms.resolve_norm("BN") == "BN" and norms.resolve_norm("GN", "cuda") == "GN"


def test_gpu_processes_keep_syncbn(monkeypatch):
    monkeypatch.setattr(norms, "_world_size", lambda: 8)
    assert norms.resolve_norm("SyncBN", "cuda") == "SyncBN"
    assert norms.resolve_norm("SyncBN", "cuda:3") == "SyncBN"
    monkeypatch.setattr(norms, "_announced", set())
    with pytest.warns(UserWarning, match="on 8 cpu process"):
        assert norms.resolve_norm("SyncBN", "cpu") == "naiveSyncBN"


def _sync_worker(out_dir):
    from pretrain.engine import build_classifier

    from detectron2.utils import comm

    rank = comm.get_rank()
    torch.manual_seed(0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = build_classifier(tiny_classifier_cfg("SOLVER.MEMORY_FORMAT", "contiguous"))
    norm = model.stem.conv1.norm
    images = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(rank))
    model.train()
    model.stem(images)  # one forward: the stem's norm updates its running mean
    result = {
        "type": type(norm).__name__,
        "running_mean": norm.running_mean.tolist(),
        "warnings": [str(w.message) for w in caught if "SyncBN" in str(w.message)],
        "images": images.tolist(),
        "weight": model.stem.conv1.weight.tolist(),
    }
    (out_dir / f"rank{rank}.json").write_text(json.dumps(result))


@pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU (gloo) path runs where CUDA is absent")
def test_two_cpu_processes_share_their_batch_statistics(tmp_path):
    launch(_sync_worker, 2, dist_url="auto", args=(tmp_path,))
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0]["type"] == ranks[1]["type"] == NaiveSyncBatchNorm.__name__
    assert all(len(r["warnings"]) == 1 and "NaiveSyncBatchNorm" in r["warnings"][0] for r in ranks)
    assert ranks[0]["running_mean"] == pytest.approx(ranks[1]["running_mean"], abs=1e-6)
    # the running mean moved by momentum 0.1 towards the mean over BOTH ranks' images
    weight = torch.tensor(ranks[0]["weight"])
    images = torch.cat([torch.tensor(r["images"]) for r in ranks])
    conv = torch.nn.functional.conv2d(images, weight, stride=2, padding=3)
    expected = 0.1 * conv.mean(dim=(0, 2, 3))
    assert ranks[0]["running_mean"] == pytest.approx(expected.tolist(), abs=1e-5)
