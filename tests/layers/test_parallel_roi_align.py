"""ParallelROIAlign gives detectron2's ROIAlign results: the same pooled features on several threads,
the same gradient (within float rounding) from its two sampling matrices."""

from __future__ import annotations

import os

from resnext_det import get_config_file
from resnext_det.engine import setup_cfg
from resnext_det.layers.parallel_roi_align import ParallelROIAlign

import pytest
import torch
from detectron2.layers import ROIAlign
from detectron2.modeling import build_model

# code the two detectron2 builds differ in: CI runs this file on both (tests/README.md)
pytestmark = pytest.mark.both_builds


@pytest.fixture
def threads():
    before = torch.get_num_threads()
    yield torch.set_num_threads
    torch.set_num_threads(before)


def random_rois(image_indices, height, width, seed=0):
    generator = torch.Generator().manual_seed(seed)
    n = len(image_indices)
    xy = torch.rand(n, 2, generator=generator) * torch.tensor([width * 0.7, height * 0.7])
    wh = torch.rand(n, 2, generator=generator) * torch.tensor([width * 0.5, height * 0.5]) + 2
    return torch.cat([torch.tensor(image_indices, dtype=torch.float32)[:, None], xy, xy + wh], dim=1)


def pool_and_backprop(module, features, rois):
    features = features.clone().requires_grad_()
    pooled = module(features, rois)
    pooled.backward(torch.linspace(-1, 1, pooled.numel()).view_as(pooled))
    return pooled, features.grad


@pytest.mark.parametrize(
    "image_indices, num_threads",
    [
        ([0] * 5 + [1] * 5, 2),  # one chunk per image, as detectron2 orders RoIs
        ([0] * 7 + [1] * 3, 2),  # a chunk spans both images
        ([2, 0, 1, 2, 0, 1, 1], 3),  # unordered, three threads
        ([0, 0, 0], 4),  # fewer RoIs than threads, all in one image
    ],
)
def test_same_pooled_features_and_gradient(threads, image_indices, num_threads):
    threads(num_threads)
    features = torch.randn(3, 8, 24, 32)
    rois = random_rois(image_indices, 24 * 16, 32 * 16)
    serial = pool_and_backprop(ROIAlign((7, 7), 1 / 16, 0, aligned=True), features, rois)
    parallel = pool_and_backprop(ParallelROIAlign((7, 7), 1 / 16, 0, aligned=True), features, rois)
    assert torch.equal(parallel[0], serial[0])
    assert serial[1].abs().sum() > 0
    torch.testing.assert_close(parallel[1], serial[1], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("aligned", [True, False])
@pytest.mark.parametrize("sampling_ratio", [0, 1, 3])
@pytest.mark.parametrize("output_size", [(14, 14), (5, 3)])
def test_the_gradient_follows_torchvision_at_every_edge(threads, aligned, sampling_ratio, output_size):
    """The backward's two sampling matrices against torchvision's kernel, on RoIs of every kind its
    edge rules treat apart: larger than a bin or smaller, partly or wholly beyond the map (by more
    than a pixel: no gradient), touching its far edge (clamped), and of zero size."""
    threads(2)
    generator = torch.Generator().manual_seed(1)
    height, width = 13, 17
    features = torch.randn(3, 6, height, width, generator=generator)
    n = 60
    corner = torch.rand(n, 2, generator=generator) * torch.tensor([width * 16 * 1.4, height * 16 * 1.4]) - 60
    size = torch.rand(n, 2, generator=generator) * torch.tensor([width * 16 * 0.8, height * 16 * 0.8])
    size[::5] = 0  # every fifth RoI is a point
    rois = torch.cat([torch.randint(0, 3, (n, 1), generator=generator).float(), corner, corner + size], dim=1)
    rois[0, 1:] = torch.tensor([width * 16 - 40.0, height * 16 - 40.0, width * 16 + 8.0, height * 16 + 8.0])
    arguments = (output_size, 1 / 16, sampling_ratio, aligned)
    serial = pool_and_backprop(ROIAlign(*arguments), features, rois)
    parallel = pool_and_backprop(ParallelROIAlign(*arguments), features, rois)
    assert torch.equal(parallel[0], serial[0])
    torch.testing.assert_close(parallel[1], serial[1], rtol=1e-5, atol=1e-5)
    assert (serial[1] == 0).any() and serial[1].abs().sum() > 0  # some of the map got no gradient


def test_channels_last_input_and_one_thread(threads):
    """A channels_last map (a channels_last head's) gets its pooled features and its gradient back
    in that layout: the head's convolutions then convert nothing."""
    features = torch.randn(2, 8, 16, 16).contiguous(memory_format=torch.channels_last)
    rois = random_rois([0, 1, 1], 256, 256)
    expected = pool_and_backprop(ROIAlign(5, 1 / 16, 2, aligned=False), features, rois)
    for num_threads in (2, 1):  # one thread: the kernel without the pool, the same backward
        threads(num_threads)
        pooled, grad = pool_and_backprop(ParallelROIAlign(5, 1 / 16, 2, aligned=False), features, rois)
        assert torch.equal(pooled, expected[0])
        torch.testing.assert_close(grad, expected[1], rtol=1e-6, atol=1e-6)
        assert pooled.is_contiguous(memory_format=torch.channels_last) and not pooled.is_contiguous()
        assert grad.is_contiguous(memory_format=torch.channels_last) and not grad.is_contiguous()


@pytest.mark.parametrize("image_indices", [[0] * 4 + [1] * 5, [1, 0, 1, 0, 1, 0, 1, 1, 0]])
def test_the_backward_in_bounded_products(threads, monkeypatch, image_indices):
    """A large map or many channels cut each image's RoIs into several products (of consecutive
    RoIs, or of scattered ones): the same gradient as in one."""
    import resnext_det.layers.parallel_roi_align as module

    threads(2)
    features = torch.randn(2, 8, 24, 32)
    rois = random_rois(image_indices, 24 * 16, 32 * 16)
    whole = pool_and_backprop(ParallelROIAlign((7, 7), 1 / 16, 0, aligned=True), features, rois)
    products = []
    spread_back = module._spread_back
    monkeypatch.setattr(module, "_spread_back", lambda g, *a: products.append(len(g)) or spread_back(g, *a))
    monkeypatch.setattr(module, "_rois_per_product", lambda *shape: 2)
    cut = pool_and_backprop(ParallelROIAlign((7, 7), 1 / 16, 0, aligned=True), features, rois)
    assert sorted(products) == [1, 2, 2, 2, 2]  # 4 RoIs of image 0, 5 of image 1
    assert torch.equal(cut[0], whole[0])
    torch.testing.assert_close(cut[1], whole[1], rtol=1e-6, atol=1e-6)


def test_the_c4_detector_pools_with_it():
    cfg = setup_cfg(
        get_config_file("demo/Base-Pretrained-tiny-C4.yaml"), ["DATASETS.TRAIN", "()", "DATASETS.TEST", "()"]
    )
    poolers = build_model(cfg).roi_heads.pooler.level_poolers
    assert [type(p) for p in poolers] == [ParallelROIAlign]
    assert poolers[0].output_size == (cfg.MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION,) * 2


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="counts threads in /proc (Linux)")
def test_the_pool_threads_start_no_openmp_teams(threads, monkeypatch):
    """Each pool thread runs its own torch ops on one thread. The kernel zero-fills its output in
    parallel; on a pool thread with more, GNU OpenMP started a team per pool thread, and once it
    managed more threads than cores it slowed every later parallel op of the process (the demo's
    pretraining after a forward: 2x)."""
    import resnext_det.layers.parallel_roi_align as module

    threads(2)
    monkeypatch.setattr(module, "_pool", None)  # a pool of this test's own, started below
    monkeypatch.setattr(module, "_pool_size", 0)
    features = torch.randn(2, 64, 32, 32)
    rois = random_rois([0, 0, 1, 1], 512, 512)
    expected = ROIAlign((14, 14), 1 / 16, 0, aligned=True)(features, rois)  # this thread's team starts
    before = set(os.listdir("/proc/self/task"))
    assert torch.equal(ParallelROIAlign((14, 14), 1 / 16, 0, aligned=True)(features, rois), expected)
    started = set(os.listdir("/proc/self/task")) - before
    pool = module._thread_pool(2)
    assert 1 <= len(started) == len(pool._threads)  # the pool's threads (started as needed), no team
    assert pool.submit(torch.get_num_threads).result() == 1
    assert torch.get_num_threads() == 2  # this thread keeps its own
