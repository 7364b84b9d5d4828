"""Shared fixtures. ``import resnext_det`` first: it prepares detectron2 and registers modules.

``tiny_stage_dirs`` / ``write_stage``: stage folders (config.yaml + model_final.pth) of random-weight
RPN / Fast R-CNN pairs, as the training tools leave them.

Under pytest-xdist (``make test`` runs two workers, tests/README.md) each worker takes its share
of the cores, and the tests are grouped so that each expensive fixture is built once."""

from __future__ import annotations

import os
from pathlib import Path

import resnext_det  # noqa: F401
from resnext_det import get_config_file
from resnext_det.engine import setup_cfg

import pytest
import torch
from detectron2.layers import FrozenBatchNorm2d
from detectron2.modeling import build_model

#: The test workers' groups of the session's expensive fixtures, longest first: every test that
#: reads one runs on the same worker (the fixture is built once), and these groups start before
#: the others. The demo (README command 1) and the tests of its trained pair take longest.
WORKER_GROUPS = {
    "demo": ("demo",),
    "gpu_check": ("gpu_check_on_cpu",),
    "tiny_pipeline": ("tiny_pipeline",),
    "stage_pairs": ("onnx_dir", "tiny_stage_dirs", "lazy_fast_rcnn_dir"),
    "image_folder": ("image_folder",),
}
#: The modules that read a fixture of WORKER_GROUPS, and their group (checked as tests are
#: collected). Every other module is a group of its own, so its module-scoped fixtures are built once.
MODULE_GROUPS = {
    "tests/tools/test_demo.py": "demo",
    "tests/test_gpu_check.py": "gpu_check",
    "tests/test_speed_benchmark.py": "gpu_check",
    "tests/tools/test_crash_resume.py": "tiny_pipeline",
    "tests/tools/test_detection_stages.py": "tiny_pipeline",
    "tests/tools/test_lazy_tools.py": "tiny_pipeline",
    # its runnable-blocks test asks for tiny_pipeline by name (request.getfixturevalue), which the
    # collection check cannot see: without this line a second worker built the pipeline (+33 s)
    "tests/test_docs.py": "tiny_pipeline",
    "tests/deploy/test_export.py": "stage_pairs",
    "tests/deploy/test_graph.py": "stage_pairs",
    "tests/deploy/test_tools.py": "stage_pairs",
    "tests/deploy/test_quantize.py": "stage_pairs",
    "tests/deploy/test_robustness_tools.py": "stage_pairs",
    "tests/engine/test_tta.py": "stage_pairs",
    "tests/engine/test_trained_stage.py": "stage_pairs",
    "tests/pretrain/test_class_subset.py": "image_folder",
    "tests/pretrain/test_data.py": "image_folder",
    "tests/pretrain/test_train.py": "image_folder",
}


def _module(nodeid: str) -> str:
    return nodeid.split("::", 1)[0]


def _worker_group(nodeid: str) -> str:
    return MODULE_GROUPS.get(_module(nodeid), _module(nodeid))


def pytest_configure(config):
    """A test worker's share of the cores: ``cores // workers`` threads, for its own torch ops and,
    through OMP_NUM_THREADS, for the tools it starts. Two workers of two threads each on two
    cores would make GNU OpenMP's waiting threads spin against each other (40x slower, measured);
    two of one thread each keep both cores busy where one process of two threads leaves one idle
    in every serial stretch (Python, data loading, compiles)."""
    if hasattr(config, "workerinput"):
        threads = max(1, (os.cpu_count() or 1) // config.workerinput["workercount"])
        torch.set_num_threads(threads)
        os.environ["OMP_NUM_THREADS"] = str(threads)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """Whole groups to a worker (``_worker_group``), in the workers' collection order (below).
    Written here instead of ``--dist loadgroup``: with pytest 9.2 that mode ignores its marks
    (pytest-xdist issue 1386) and spreads a fixture's readers over both workers."""
    from xdist.scheduler import LoadScopeScheduling

    class WorkerGroupScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return _worker_group(nodeid)

    config.option.loadscopereorder = False
    return WorkerGroupScheduling(config, log)


def pytest_collection_modifyitems(config, items):
    """Every reader of a fixture of WORKER_GROUPS is in a module of that group (else the fixture
    would be built on both workers: a clear error instead); the groups of WORKER_GROUPS first."""
    group_of_fixture = {fixture: group for group, fixtures in WORKER_GROUPS.items() for fixture in fixtures}
    for item in items:
        module = _module(item.nodeid)
        for fixture in set(item.fixturenames) & set(group_of_fixture):
            if MODULE_GROUPS.get(module) != group_of_fixture[fixture]:
                raise pytest.UsageError(
                    f"{item.nodeid} reads the shared fixture {fixture!r}: add {module!r}: "
                    f"{group_of_fixture[fixture]!r} to MODULE_GROUPS in tests/conftest.py, so that "
                    "the test workers build it once"
                )
    rank = {group: position for position, group in enumerate(WORKER_GROUPS)}
    items.sort(key=lambda item: rank.get(_worker_group(item.nodeid), len(rank)))


@pytest.fixture(autouse=True)
def _fixed_seed():
    torch.manual_seed(0)
    yield


@pytest.fixture(scope="session")
def demo_root(tmp_path_factory):
    """The generated demo dataset, written once per test session and registered."""
    from resnext_det.data import generate_demo_dataset, register_demo_datasets

    root = tmp_path_factory.mktemp("resnext_demo")
    generate_demo_dataset(root)
    register_demo_datasets(root)
    return root


def _randomize_frozen_norms(model: torch.nn.Module, seed: int = 0) -> None:
    """Give every FrozenBN a non-identity affine map, as a pretrained checkpoint would: with the
    initial identity norms, folding them would test nothing."""
    generator = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, FrozenBatchNorm2d):
            n = module.num_features
            module.weight.copy_(torch.rand(n, generator=generator) + 0.5)
            module.bias.copy_(torch.randn(n, generator=generator) * 0.1)
            module.running_mean.copy_(torch.randn(n, generator=generator) * 0.1)
            module.running_var.copy_(torch.rand(n, generator=generator) + 0.5)


@pytest.fixture(scope="session")
def randomize_frozen_norms():
    return _randomize_frozen_norms


def _write_stage(directory: Path, config: str, opts: list[str], randomize_frozen_norms, seed: int) -> Path:
    """A finished stage's OUTPUT_DIR as the training tools leave it, with random weights (and
    non-identity frozen norms, so that folding them is exercised)."""
    cfg = setup_cfg(get_config_file(config), ["MODEL.DEVICE", "cpu", "OUTPUT_DIR", str(directory), *opts])
    torch.manual_seed(seed)
    model = build_model(cfg)
    randomize_frozen_norms(model, seed)
    directory.mkdir(parents=True)
    torch.save({"model": model.state_dict(), "iteration": 0}, directory / "model_final.pth")
    (directory / "config.yaml").write_text(cfg.dump())
    return directory


@pytest.fixture(scope="session")
def tiny_stage_dirs(tmp_path_factory, demo_root, randomize_frozen_norms):
    """(rpn_dir, fast_rcnn_dir) of the demo's tiny template, random weights."""
    root = tmp_path_factory.mktemp("tiny_stages")
    rpn = _write_stage(root / "rpn", "demo/rpn_tiny_C4.yaml", [], randomize_frozen_norms, seed=1)
    frcn = _write_stage(root / "fast_rcnn", "demo/fast_rcnn_tiny_C4.yaml", [], randomize_frozen_norms, seed=2)
    return rpn, frcn


@pytest.fixture(scope="session")
def lazy_fast_rcnn_dir(tiny_stage_dirs, tmp_path_factory):
    """``tiny_stage_dirs``' stage 2 as a LazyConfig run leaves it: the twin's config dumped
    (``LazyConfig.save``, as ``setup_lazy_run`` writes ``config.yaml``), the same weights."""
    from resnext_det.engine.lazy_config import load_lazy_config

    from detectron2.config import LazyConfig

    directory = tmp_path_factory.mktemp("tiny_stages") / "lazy_fast_rcnn"
    directory.mkdir()
    cfg = load_lazy_config(str(get_config_file("lazy/demo/fast_rcnn_tiny_C4.py")), training=False)
    LazyConfig.save(cfg, str(directory / "config.yaml"))
    (directory / "model_final.pth").write_bytes((tiny_stage_dirs[1] / "model_final.pth").read_bytes())
    return directory


@pytest.fixture
def write_stage(randomize_frozen_norms):
    """``write_stage(directory, config, opts)``: one more random-weight stage folder."""
    return lambda directory, config, opts, seed=3: _write_stage(
        directory, config, opts, randomize_frozen_norms, seed
    )


@pytest.fixture(scope="session")
def tiny_pipeline(tmp_path_factory):
    """docs/detection.md's and docs/configs.md's runnable blocks (the tiny deterministic RPN ->
    Fast R-CNN pipeline, YAML and LazyConfig, and the YAML training stages once more), run once
    per session in this process: ``tests/pipelines.py``."""
    from pipelines import run_tiny_pipeline

    return run_tiny_pipeline(tmp_path_factory.mktemp("tiny_pipeline"))


@pytest.fixture(scope="session")
def gpu_check_on_cpu(tmp_path_factory):
    """``benchmarks/gpu_check.py --device cpu`` run once, in a child process: every pipeline stage
    through the tools (in that process, as on a one-GPU machine), then ``benchmarks/speed.py
    --quick`` with every group, which tests/test_speed_benchmark.py reads (no group is timed
    twice). (output dir, the run)."""
    from tool_runs import run_tool_process

    out = tmp_path_factory.mktemp("gpu_check")
    command = ["benchmarks/gpu_check.py", "--device", "cpu", "--output-dir", str(out)]
    return out, run_tool_process(*command, timeout=1500)
