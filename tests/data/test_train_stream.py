"""The training stream is a function of (seed, iteration, rank): resume continues it exactly."""

from __future__ import annotations

import itertools

from resnext_det import get_config_file
from resnext_det.data.train_stream import ResumableTrainLoader, ResumableTrainStream
from resnext_det.engine import setup_cfg

import numpy as np
import pytest
import torch
from detectron2.data import DatasetCatalog, DatasetMapper

# code the two detectron2 builds differ in: CI runs this file on both (tests/README.md)
pytestmark = pytest.mark.both_builds


@pytest.fixture(scope="module")
def demo_cfg(demo_root):
    return setup_cfg(get_config_file("demo/faster_rcnn_tiny_C4.yaml"), ["INPUT.RANDOM_FLIP", "horizontal"])


def records(n_landscape: int, n_portrait: int) -> list[dict]:
    sizes = [(100, 200)] * n_landscape + [(200, 100)] * n_portrait
    return [{"image_id": i, "height": h, "width": w} for i, (h, w) in enumerate(sizes)]


def identity_stream(dicts, batch=4, seed=0, rank=0, world=1, grouping=True):
    return ResumableTrainStream(dicts, lambda d: d, batch, seed, grouping, rank, world)


def test_an_epoch_is_a_permutation_cut_into_same_aspect_batches():
    dicts = records(22, 13)
    stream = identity_stream(dicts)
    assert stream.batches_per_epoch == 22 // 4 + 13 // 4
    batches = stream.epoch_batches(0)
    seen = np.concatenate(batches)
    assert len(set(seen.tolist())) == len(seen) == 4 * stream.batches_per_epoch  # no repeats
    for batch in batches:
        assert len({dicts[i]["height"] > dicts[i]["width"] for i in batch}) == 1
    assert not np.array_equal(np.concatenate(stream.epoch_batches(1)), seen)  # a new order each epoch
    assert not np.array_equal(np.concatenate(identity_stream(dicts, seed=1).epoch_batches(0)), seen)


def test_processes_split_each_global_batch():
    dicts = records(30, 0)
    whole = identity_stream(dicts, batch=6)
    parts = [identity_stream(dicts, batch=6, rank=r, world=3) for r in range(3)]
    for iteration in (0, 4, 5, 11):
        joined = np.concatenate([p.batch_indices(iteration) for p in parts])
        assert np.array_equal(joined, whole.batch_indices(iteration))
    with pytest.raises(
        ValueError, match=r"SOLVER.IMS_PER_BATCH \(6\) must be divisible by the number of processes \(4\)"
    ):
        identity_stream(dicts, batch=6, world=4)
    with pytest.raises(ValueError, match=r"IMS_PER_BATCH \(64\) is more than the training set's 30 images"):
        identity_stream(dicts, batch=64)


def mapped(loader, count):
    return [[(d["image_id"], d["image"]) for d in batch] for batch in itertools.islice(iter(loader), count)]


@pytest.mark.parametrize("workers", [0, 2])
def test_a_stream_started_at_k_is_the_uninterrupted_one_from_k(demo_cfg, workers):
    dicts = DatasetCatalog.get("resnext_demo_train")
    mapper = DatasetMapper(demo_cfg, is_train=True)  # random flips: the augmentation must repeat too

    def loader(start):
        result = ResumableTrainLoader(ResumableTrainStream(dicts, mapper, 2, seed=7), num_workers=workers)
        result.start_iter = start
        return result

    uninterrupted = mapped(loader(0), 6)
    resumed = mapped(loader(3), 3)
    for a, b in zip(uninterrupted[3:], resumed, strict=True):
        assert [i for i, _ in a] == [i for i, _ in b]
        assert all(torch.equal(x, y) for (_, x), (_, y) in zip(a, b, strict=True))
    # the train mapper flips at random; without flips (the test mapper) the images are the same
    unflipped = ResumableTrainLoader(
        ResumableTrainStream(dicts, DatasetMapper(demo_cfg, is_train=False), 2, seed=7), num_workers=0
    )
    pairs = zip(itertools.chain(*uninterrupted), itertools.chain(*mapped(unflipped, 6)), strict=True)
    flipped = [not torch.equal(x, y) for (_, x), (_, y) in pairs]
    assert any(flipped) and not all(flipped)
