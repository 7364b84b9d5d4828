"""Stage 2's data path with proposal stores: each image's proposals are read in the mapper.

detectron2 puts precomputed proposals into the dataset dicts before the loader starts; here the
dicts stay small and ``ProposalLookupMapper`` adds one image's proposals (``proposal_boxes``,
``proposal_objectness_logits``, ``proposal_bbox_mode``, the keys detectron2's ``DatasetMapper``
consumes) just before mapping it. ``build_store_train_loader`` / ``build_store_test_loader`` are
the trainer's loaders when ``PROPOSALS.STORE_DIR`` is set.
"""

from __future__ import annotations

import copy
from pathlib import Path

from detectron2.data import (
    DatasetMapper,
    build_detection_test_loader,
    get_detection_dataset_dicts,
)

from ..data.checked_mapper import ImageCheckingMapper
from ..data.train_stream import build_resumable_train_loader
from ..errors import ConfigError
from .files import ProposalFileError
from .store import ProposalStore, proposal_store_path

__all__ = ["ProposalLookupMapper", "build_store_test_loader", "build_store_train_loader", "open_stores"]


def open_stores(store_dir: str | Path, dataset_names) -> list[ProposalStore]:
    """Open ``store_dir/proposals_<name>`` for each dataset (``ProposalFileError`` if absent)."""
    stores = []
    for name in dataset_names:
        path = proposal_store_path(store_dir, name)
        if not path.is_dir():
            raise ProposalFileError(
                f"proposal store {path} not found (PROPOSALS.STORE_DIR {str(store_dir)!r}): "
                "run tools/train_rpn.py with this dataset in its config"
            )
        stores.append(ProposalStore(path))
    return stores


class ProposalLookupMapper:
    """Looks the image's proposals up in stage 1's stores, then calls ``mapper`` (detectron2's
    ``DatasetMapper`` with ``precomputed_proposal_topk``, which keeps the best of them).

    A wrapper rather than a ``DatasetMapper`` subclass, so that any mapper works, from a YAML
    config (``DatasetMapper(cfg, is_train)``) or from a LazyConfig file's ``mapper`` node.
    """

    def __init__(self, mapper, store_dir: str | Path, dataset_names):
        if getattr(mapper, "proposal_topk", None) is None:
            raise ConfigError(
                "stage 2's mapper keeps no precomputed proposals: set MODEL.LOAD_PROPOSALS True "
                "(YAML) or the mapper's precomputed_proposal_topk (LazyConfig)"
            )
        names = [dataset_names] if isinstance(dataset_names, str) else list(dataset_names)
        self.mapper = mapper
        self.stores = open_stores(store_dir, names)

    def __call__(self, dataset_dict: dict) -> dict:
        image_id = dataset_dict["image_id"]
        for store in self.stores:
            found = store.find(image_id)
            if found is not None:
                boxes, logits = found
                break
        else:
            raise ProposalFileError(
                f"image id {image_id!r} ({dataset_dict.get('file_name')}) has no proposals in "
                f"{', '.join(str(s.path) for s in self.stores)}"
            )
        dataset_dict = copy.copy(dataset_dict)  # the loader's dict is shared between epochs
        dataset_dict["proposal_boxes"] = boxes
        dataset_dict["proposal_objectness_logits"] = logits
        dataset_dict["proposal_bbox_mode"] = store.meta["bbox_mode"]
        return self.mapper(dataset_dict)


def build_store_train_loader(cfg):
    """The resumable train loader over DATASETS.TRAIN, proposals from ``PROPOSALS.STORE_DIR``."""
    mapper = ProposalLookupMapper(DatasetMapper(cfg, True), cfg.PROPOSALS.STORE_DIR, cfg.DATASETS.TRAIN)
    dataset = get_detection_dataset_dicts(
        cfg.DATASETS.TRAIN,
        filter_empty=cfg.DATALOADER.FILTER_EMPTY_ANNOTATIONS,
        proposal_files=None,  # the point: proposals stay on disk until the mapper needs them
    )
    return build_resumable_train_loader(cfg, mapper=mapper, dataset_dicts=dataset)


def build_store_test_loader(cfg, dataset_name: str):
    """detectron2's test loader over one dataset, proposals from ``PROPOSALS.STORE_DIR``."""
    mapper = ProposalLookupMapper(DatasetMapper(cfg, False), cfg.PROPOSALS.STORE_DIR, [dataset_name])
    dataset = get_detection_dataset_dicts([dataset_name], filter_empty=False, proposal_files=None)
    return build_detection_test_loader(
        dataset, mapper=ImageCheckingMapper(mapper), num_workers=cfg.DATALOADER.NUM_WORKERS
    )
