"""The test workers' share of the cores (tests/conftest.py): ``cores // workers`` threads each, for
their own torch ops and, through OMP_NUM_THREADS, for the tools they start; never two threads per
worker on two cores, where GNU OpenMP's spinning threads of two processes slow both down."""

from __future__ import annotations

import os

import pytest
import torch
from tool_runs import run_tool_process


def test_a_worker_and_the_tools_it_starts_take_their_share_of_the_cores(pytestconfig):
    if not hasattr(pytestconfig, "workerinput"):
        pytest.skip("checks make test's workers; this run has none (WORKERS=0)")
    share = max(1, (os.cpu_count() or 1) // pytestconfig.workerinput["workercount"])
    assert torch.get_num_threads() == share
    child = run_tool_process("-c", "import torch; print(torch.get_num_threads())")
    assert child.returncode == 0 and child.stdout.split()[-1] == str(share), child.stderr[-2000:]
