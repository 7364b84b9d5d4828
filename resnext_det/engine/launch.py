"""``launch``: detectron2's launcher, extended to CPU processes over gloo.

detectron2 0.6's ``launch`` asserts CUDA and hard-codes NCCL, so on a machine without GPUs a
multi-process run (``--num-gpus 2``) cannot start. This launcher keeps detectron2's behaviour on
GPUs (it delegates to it) and, without CUDA, spawns ``num_gpus_per_machine`` CPU processes joined
with gloo. One machine and many machines are the same code path, as in detectron2.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
import tempfile
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from detectron2.engine import launch as detectron2_launch
from detectron2.utils import comm

from ..atomic_files import atomic_write_text
from ..errors import ConfigError, MissingFileError, ResNeXtDetError, error_from_report, error_report

__all__ = [
    "DEFAULT_TIMEOUT",
    "check_batch_divides",
    "check_device",
    "check_num_gpus",
    "check_weights_file",
    "launch",
]

DEFAULT_TIMEOUT = timedelta(minutes=30)


def _free_local_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def check_device(device: str, name: str = "MODEL.DEVICE", fix: str | None = None) -> None:
    """``MODEL.DEVICE`` (or the flag or key ``name``) must be usable here: ``cuda`` needs a GPU."""
    if device.startswith("cuda") and not torch.cuda.is_available():
        if fix is None and name == "MODEL.DEVICE":
            fix = "add `MODEL.DEVICE cpu` to the command line"
        fix = fix or f"use {name} cpu"
        raise ConfigError(f"{name} is {device!r} but this machine has no usable GPU; {fix}")


def check_weights_file(weights: str, key: str = "MODEL.WEIGHTS") -> None:
    """``MODEL.WEIGHTS`` (or the LazyConfig's ``key``), when it names a local file, must exist (a
    URL is left to detectron2)."""
    if weights and "://" not in weights and not os.path.isfile(weights):
        raise MissingFileError(
            f"{key} {weights} does not exist; give the path of a weights file "
            "(tools/convert_weights.py writes them), or an empty string for random initialisation"
        )


def check_batch_divides(key: str, batch: int, processes: int) -> None:
    """A total batch (``SOLVER.IMS_PER_BATCH`` ...) must split evenly over the processes."""
    if batch % processes:
        raise ConfigError(
            f"{key} is {batch}, which does not divide over {processes} processes (--num-gpus x "
            f"--num-machines); use a multiple of {processes}"
        )


def check_num_gpus(num_gpus: int) -> None:
    """``--num-gpus`` must not exceed the GPUs present; without CUDA it counts CPU processes
    (gloo), at most one per core."""
    if torch.cuda.is_available():
        available = torch.cuda.device_count()
        if num_gpus > available:
            raise ConfigError(
                f"--num-gpus {num_gpus} is more than the {available} GPU(s) this machine has; "
                "lower --num-gpus (the schedule scales with SOLVER.REFERENCE_WORLD_SIZE)"
            )
        return
    cores = os.cpu_count() or 1
    if num_gpus > cores:
        raise ConfigError(
            f"--num-gpus {num_gpus}: this machine has no GPU, and {num_gpus} CPU processes are more "
            f"than its {cores} cores; use --num-gpus {cores} or fewer (each gets cores/num-gpus threads)"
        )


def launch(
    main_func,
    num_gpus_per_machine: int,
    num_machines: int = 1,
    machine_rank: int = 0,
    dist_url: str | None = None,
    args: tuple = (),
    timeout: timedelta = DEFAULT_TIMEOUT,
):
    """Run ``main_func(*args)`` in ``num_machines * num_gpus_per_machine`` processes.

    With CUDA: detectron2's launcher (NCCL, one process per GPU); asking for more GPUs than the
    machine has is an error. Without CUDA: ``num_gpus_per_machine`` CPU processes (gloo), each
    with an equal share of the CPU threads; models must use ``MODEL.DEVICE cpu``.
    """
    if num_gpus_per_machine < 1 or num_machines < 1 or not 0 <= machine_rank < num_machines:
        raise ValueError(
            f"launch: need --num-gpus >= 1, --num-machines >= 1 and 0 <= --machine-rank < "
            f"--num-machines; got {num_gpus_per_machine}, {num_machines}, {machine_rank}"
        )
    check_num_gpus(num_gpus_per_machine)
    world_size = num_machines * num_gpus_per_machine
    if world_size == 1:
        return main_func(*args)
    with tempfile.TemporaryDirectory(prefix="resnext_det_errors_") as reports:
        try:
            return _launch_processes(
                _ReportUserErrors(main_func, reports),
                num_gpus_per_machine,
                num_machines,
                machine_rank,
                dist_url,
                args,
                timeout,
            )
        except Exception:
            reported = _reported_error(reports)
            if reported is None:
                raise
            raise reported from None


def _launch_processes(main_func, num_gpus_per_machine, num_machines, machine_rank, dist_url, args, timeout):
    if torch.cuda.is_available():
        return detectron2_launch(
            main_func, num_gpus_per_machine, num_machines, machine_rank, dist_url, args, timeout
        )
    world_size = num_machines * num_gpus_per_machine
    if dist_url in (None, "auto"):
        if num_machines > 1:
            raise ValueError("--dist-url must be given (tcp://HOST:PORT) for multi-machine jobs")
        dist_url = f"tcp://127.0.0.1:{_free_local_port()}"
    mp.start_processes(
        _cpu_worker,
        nprocs=num_gpus_per_machine,
        args=(main_func, world_size, num_gpus_per_machine, machine_rank, dist_url, args, timeout),
        daemon=False,
        start_method="spawn",
    )


class _ReportUserErrors:
    """``main_func`` in a worker process, writing a user error as data (``errors.error_report``)
    into ``reports`` before it propagates: torch's launcher hands the parent only its traceback
    as text, and a class is not found reliably in text."""

    def __init__(self, main_func, reports: str):
        self.main_func, self.reports = main_func, reports

    def __call__(self, *args):
        try:
            return self.main_func(*args)
        except ResNeXtDetError as e:
            path = Path(self.reports, f"rank{comm.get_rank():05d}.json")
            atomic_write_text(path, json.dumps(error_report(e)))
            raise


def _reported_error(reports: str) -> ResNeXtDetError | None:
    """The user error of the lowest rank that reported one, if any did."""
    for path in sorted(Path(reports).glob("rank*.json")):
        error = error_from_report(json.loads(path.read_text()))
        if error is not None:
            return error
    return None


def _cpu_worker(
    local_rank, main_func, world_size, processes_per_machine, machine_rank, dist_url, args, timeout
):
    global_rank = machine_rank * processes_per_machine + local_rank
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // processes_per_machine))
    try:
        dist.init_process_group(
            backend="gloo",
            init_method=dist_url,
            world_size=world_size,
            rank=global_rank,
            timeout=timeout,
        )
    except Exception:
        logging.getLogger(__name__).error("could not join the process group at %s", dist_url)
        raise
    if hasattr(comm, "create_local_process_group"):  # detectron2 after 0.6
        comm.create_local_process_group(processes_per_machine)
    else:  # v0.6 has no function for it: set the group its comm.get_local_rank() reads
        for machine in range(world_size // processes_per_machine):
            ranks = list(range(machine * processes_per_machine, (machine + 1) * processes_per_machine))
            group = dist.new_group(ranks)
            if machine == machine_rank:
                comm._LOCAL_PROCESS_GROUP = group
    comm.synchronize()
    try:
        main_func(*args)
    except BaseException:
        dist.destroy_process_group()
        raise  # torch.multiprocessing reports it to the launching process
    comm.synchronize()
    dist.destroy_process_group()
    _exit_without_finalizing()


def _exit_without_finalizing() -> None:
    """End a worker that finished cleanly without Python's interpreter finalization.

    With torch 2.14 a gloo worker aborted (SIGABRT, "terminate called without an active
    exception") during finalization in 1 to 2 of 8 two-process runs, after its work and after
    ``destroy_process_group``: gloo's threads still held tensors whose release needs the
    interpreter being torn down (pytorch/pytorch#179291). Everything the worker wrote is already on
    disk (atomic files are fsynced); what is left in Python's buffers and log handlers is flushed
    here, and the exit status is 0.
    """
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
