"""Two CPU processes over gloo: detectron2's communication helpers and DDP work."""

from __future__ import annotations

import json

from resnext_det.engine import launch

import pytest
import torch

# code the two detectron2 builds differ in: CI runs this file on both (tests/README.md)
pytestmark = pytest.mark.both_builds


def _two_process_worker(out_dir):
    from resnext_det.engine.trainer import wrap_for_processes

    from detectron2.utils import comm

    rank = comm.get_rank()
    torch.manual_seed(0)
    model = wrap_for_processes(torch.nn.Linear(3, 1), broadcast_buffers=False)
    # each rank sees different data; DDP must average the gradients
    x = torch.full((4, 3), float(rank + 1))
    model(x).sum().backward()
    grad = model.module.weight.grad.flatten().tolist()
    result = {
        "rank": rank,
        "world": comm.get_world_size(),
        "local_size": comm.get_local_size(),
        "gathered": comm.all_gather(rank),
        "grad": grad,
        "ddp": type(model).__name__,
    }
    (out_dir / f"rank{rank}.json").write_text(json.dumps(result))


@pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU (gloo) path runs where CUDA is absent")
def test_two_cpu_processes(tmp_path):
    launch(_two_process_worker, 2, dist_url="auto", args=(tmp_path,))
    results = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    for rank, result in enumerate(results):
        assert result["rank"] == rank and result["world"] == 2 and result["local_size"] == 2
        assert result["gathered"] == [0, 1]
        assert result["ddp"] == "DistributedDataParallel"
    # gradient of sum(w.x) is sum of x: ranks see 1s and 2s (4 rows each), DDP averages to 6
    assert results[0]["grad"] == results[1]["grad"] == pytest.approx([6.0, 6.0, 6.0])


def test_bad_launch_arguments():
    with pytest.raises(ValueError, match="--num-gpus >= 1"):
        launch(print, 0)


def _raise_in_every_worker():
    from resnext_det.errors import ConfigError

    raise ConfigError("bad key in the worker")  # each worker reports before it raises


@pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU (gloo) path runs where CUDA is absent")
def test_a_user_error_in_a_worker_reaches_the_launcher_as_itself():
    """Its class and message cross as data (the worker's report), not as a traceback's text (a
    third-party class of the same name: tests/test_errors.py)."""
    from resnext_det.errors import ConfigError, user_error_message

    with pytest.raises(ConfigError) as caught:
        launch(_raise_in_every_worker, 2, dist_url="auto")
    assert type(caught.value) is ConfigError and user_error_message(caught.value) == "bad key in the worker"
