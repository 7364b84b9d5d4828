"""The detection training stream, made a pure function of (seed, iteration, rank): exact resume.

detectron2's ``TrainingSampler`` + ``AspectRatioGroupedDataset`` draw an endless, seeded stream
of images, but a run resumed from iteration k restarts that stream (and the augmentation
randomness) at its beginning: it sees other images than the uninterrupted run would have, and a
run preempted every few hours keeps seeing the start of the epoch. Here

* epoch ``e`` is a permutation seeded by ``(seed, e)``; with ``DATALOADER.ASPECT_RATIO_GROUPING``
  it is split, in order, into landscape and portrait images, each cut into batches of
  ``SOLVER.IMS_PER_BATCH`` (the incomplete last batch of each is left out, other images each
  epoch), and the batches are ordered by the position of their first image;
* global batch ``i`` is shared by the processes: rank ``r`` takes its ``r``-th slice;
* every image's augmentation draws from random generators seeded by
  ``(seed, iteration, rank, slot)``, restored afterwards.

So batch ``k + 1`` after ``--resume`` is the batch ``k + 1`` of an uninterrupted run, whatever
the number of loader workers (worker ``w`` of ``W`` makes iterations ``w, w + W, ...``, and the
DataLoader hands them out round robin, in order).
"""

from __future__ import annotations

import itertools
import logging

import numpy as np
import torch
from detectron2.data.common import DatasetFromList
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from ..errors import ConfigError
from ..seeding import mix_seed, seeded_rngs
from .checked_mapper import ImageCheckingMapper

__all__ = [
    "ResumableTrainLoader",
    "ResumableTrainStream",
    "build_resumable_detection_loader",
    "build_resumable_train_loader",
]

logger = logging.getLogger("resnext_det")


def _is_portrait(record: dict) -> bool:
    return record["height"] > record["width"]


class ResumableTrainStream(IterableDataset):
    """Endless lists of mapped dataset dicts, one list per iteration (see the module docstring).

    Args:
        dataset_dicts: the training set (detectron2 dataset dicts with ``height``/``width``).
        mapper: detectron2 mapper (``DatasetMapper``, or one in ``ProposalLookupMapper``).
        total_batch_size: images per iteration over all processes (``SOLVER.IMS_PER_BATCH``).
        seed: shared by all processes; the same seed gives the same stream.
        aspect_ratio_grouping: batches of only landscape or only portrait images.
        rank, world_size: this process and the number of processes.
    """

    def __init__(
        self,
        dataset_dicts: list[dict],
        mapper,
        total_batch_size: int,
        seed: int,
        aspect_ratio_grouping: bool = True,
        rank: int = 0,
        world_size: int = 1,
    ):
        if total_batch_size % world_size:
            raise ConfigError(
                f"SOLVER.IMS_PER_BATCH ({total_batch_size}) must be divisible by the number of "
                f"processes ({world_size})"
            )
        self.groups = np.array(
            [_is_portrait(r) if aspect_ratio_grouping else False for r in dataset_dicts], dtype=bool
        )
        self.total_batch_size, self.seed = total_batch_size, seed
        self.batch_size = total_batch_size // world_size
        self.rank = rank
        self.batches_per_epoch = sum(
            int(n) // total_batch_size for n in np.bincount(self.groups, minlength=2)
        )
        if self.batches_per_epoch == 0:
            raise ValueError(
                f"SOLVER.IMS_PER_BATCH ({total_batch_size}) is more than the training set's "
                f"{len(dataset_dicts)} images (per aspect-ratio group: {np.bincount(self.groups).tolist()})"
            )
        self.dataset = DatasetFromList(dataset_dicts, copy=False, serialize=True)
        self.mapper = mapper
        self.start_iter = 0
        self._epoch_cache: tuple[int, list[np.ndarray]] | None = None

    def epoch_batches(self, epoch: int) -> list[np.ndarray]:
        """Every global batch of ``epoch``, as arrays of dataset indices, in training order."""
        if self._epoch_cache is not None and self._epoch_cache[0] == epoch:
            return self._epoch_cache[1]
        generator = torch.Generator().manual_seed(mix_seed(self.seed, epoch))
        order = torch.randperm(len(self.groups), generator=generator).numpy()
        position = np.empty_like(order)
        position[order] = np.arange(len(order))
        batches = []
        for group in (False, True):
            members = order[self.groups[order] == group]
            for k in range(len(members) // self.total_batch_size):
                batches.append(members[k * self.total_batch_size : (k + 1) * self.total_batch_size])
        batches.sort(key=lambda batch: position[batch[0]])
        self._epoch_cache = (epoch, batches)
        return batches

    def batch_indices(self, iteration: int) -> np.ndarray:
        """This process's dataset indices for ``iteration``."""
        epoch, k = divmod(iteration, self.batches_per_epoch)
        batch = self.epoch_batches(epoch)[k]
        return batch[self.rank * self.batch_size : (self.rank + 1) * self.batch_size]

    def mapped_batch(self, iteration: int) -> list[dict]:
        batch = []
        for slot, index in enumerate(self.batch_indices(iteration)):
            with seeded_rngs(mix_seed(self.seed, iteration, self.rank, slot)):
                mapped = self.mapper(self.dataset[int(index)])
            if mapped is not None:  # a mapper may drop an image (detectron2's convention)
                batch.append(mapped)
        return batch

    def __iter__(self):
        worker = get_worker_info()
        worker_id, num_workers = (worker.id, worker.num_workers) if worker else (0, 1)
        for iteration in itertools.count(self.start_iter + worker_id, num_workers):
            yield self.mapped_batch(iteration)


def _as_is(batch):
    return batch


class ResumableTrainLoader:
    """The trainer's data loader: iterating starts the stream at ``start_iter``.

    The trainer calls ``iter()`` when it is built, before ``--resume`` knows the iteration to
    continue from; the DataLoader (and its workers) is therefore created at the first ``next``,
    after ``ResNeXtTrainer.resume_or_load`` has set ``start_iter``.
    """

    def __init__(self, stream: ResumableTrainStream, num_workers: int):
        self.stream, self.num_workers = stream, num_workers

    @property
    def start_iter(self) -> int:
        return self.stream.start_iter

    @start_iter.setter
    def start_iter(self, value: int) -> None:
        self.stream.start_iter = value

    def __iter__(self):
        loader = DataLoader(
            self.stream,
            batch_size=None,
            num_workers=self.num_workers,
            collate_fn=_as_is,
            persistent_workers=self.num_workers > 0,
            # its own generator: starting a DataLoader draws a seed, which must not come from (and
            # shift) the global generator the model samples anchors with, or a resumed run drifts
            generator=torch.Generator().manual_seed(mix_seed(self.stream.seed, self.start_iter)),
        )
        yield from loader


def build_resumable_detection_loader(
    dataset,
    mapper,
    total_batch_size: int,
    *,
    seed: int = -1,
    aspect_ratio_grouping: bool = True,
    num_workers: int = 0,
) -> ResumableTrainLoader:
    """The resumable training loader from explicit arguments, for LazyConfig files: what
    ``detectron2.data.build_detection_train_loader`` is there, with exact ``--resume``.

    ``dataset``: detectron2 dataset dicts (``get_detection_dataset_dicts``); ``mapper``: e.g.
    ``DatasetMapper``, its unreadable images named (``ImageCheckingMapper``). ``seed`` negative:
    one drawn once and shared by all processes (the trainer stores it in its checkpoints, so a
    resumed run keeps it).
    """
    from detectron2.utils import comm

    stream = ResumableTrainStream(
        list(dataset),
        ImageCheckingMapper(mapper),
        total_batch_size,
        seed if seed >= 0 else comm.shared_random_seed(),
        aspect_ratio_grouping,
        comm.get_rank(),
        comm.get_world_size(),
    )
    return ResumableTrainLoader(stream, num_workers)


def build_resumable_train_loader(
    cfg, mapper=None, dataset_dicts: list[dict] | None = None
) -> ResumableTrainLoader:
    """The detection trainer's loader over DATASETS.TRAIN (detectron2's dicts, filtering and
    ``DatasetMapper`` unless given), as a resumable stream seeded by ``SEED``
    (``build_resumable_detection_loader``)."""
    from detectron2.data import DatasetMapper, get_detection_dataset_dicts

    if cfg.DATALOADER.SAMPLER_TRAIN != "TrainingSampler":
        raise ConfigError(
            f"DATALOADER.SAMPLER_TRAIN {cfg.DATALOADER.SAMPLER_TRAIN!r} is not supported: resnext_det's "
            "resumable training stream samples as detectron2's 'TrainingSampler' does (set that)"
        )
    if dataset_dicts is None:
        dataset_dicts = get_detection_dataset_dicts(
            cfg.DATASETS.TRAIN,
            filter_empty=cfg.DATALOADER.FILTER_EMPTY_ANNOTATIONS,
            min_keypoints=cfg.MODEL.ROI_KEYPOINT_HEAD.MIN_KEYPOINTS_PER_IMAGE if cfg.MODEL.KEYPOINT_ON else 0,
            proposal_files=cfg.DATASETS.PROPOSAL_FILES_TRAIN if cfg.MODEL.LOAD_PROPOSALS else None,
        )
    return build_resumable_detection_loader(
        dataset_dicts,
        mapper if mapper is not None else DatasetMapper(cfg, True),
        cfg.SOLVER.IMS_PER_BATCH,
        seed=cfg.SEED,
        aspect_ratio_grouping=cfg.DATALOADER.ASPECT_RATIO_GROUPING,
        num_workers=cfg.DATALOADER.NUM_WORKERS,
    )
