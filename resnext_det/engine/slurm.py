"""``--slurm``: the same training job, submitted to a Slurm cluster through submitit.

The tool checks its inputs where it is started (a login node: the config, the data, OUTPUT_DIR;
not the GPUs, which are on the compute nodes), then submits one task per node with
``--slurm-gpus-per-node`` GPUs each. Every task reads its place in the job from Slurm's variables
(submitit's ``JobEnvironment``: the node list, this node's index) and starts the project's usual
launcher, ``launch(main, gpus_per_node, num_machines=nodes, machine_rank=node,
dist_url=tcp://<first node>:<port>)``, so torch.distributed comes up exactly as with
``--num-machines`` by hand (NCCL on GPUs, gloo on CPUs). A preempted or timed-out job is requeued
by submitit and continues with ``--resume``. ``--slurm-local`` runs the job with submitit's local
executor instead (one node, on this machine), which is how the tests run it.
"""

from __future__ import annotations

import copy
import importlib
import sys
import zlib
from pathlib import Path

__all__ = ["SlurmTask", "add_slurm_arguments", "job_failure", "submit"]


def add_slurm_arguments(parser):
    group = parser.add_argument_group("Slurm (submitit)")
    group.add_argument(
        "--slurm", action="store_true", help="submit this job to Slurm instead of running it here"
    )
    group.add_argument("--slurm-nodes", type=int, default=1, help="nodes (machines)")
    group.add_argument("--slurm-gpus-per-node", type=int, default=8, help="GPUs (processes) per node")
    group.add_argument("--slurm-partition", default="", help="Slurm partition")
    group.add_argument("--slurm-time", type=int, default=72 * 60, help="time limit in minutes")
    group.add_argument("--slurm-cpus-per-gpu", type=int, default=10, help="CPU cores per GPU (data loading)")
    group.add_argument("--slurm-folder", default="slurm_jobs/%j", help="submitit's logs and job files")
    group.add_argument(
        "--slurm-local", action="store_true", help="run the job with submitit's local executor"
    )
    group.add_argument("--slurm-wait", action="store_true", help="wait for the job and report its end")
    return parser


def _port(job_id: str) -> int:
    """The rendezvous port, the same on every node of a job and unlikely to collide between jobs."""
    return 20_000 + zlib.crc32(str(job_id).encode()) % 20_000


class SlurmTask:
    """What each node runs: the tool's ``main`` through ``launch``, placed by Slurm's variables.

    A tool's ``main`` lives in its script (``__main__`` where the tool was started), which the
    processes that ``launch`` spawns on a node cannot unpickle; so the task names the script and
    imports its ``main`` on the node, as a module of the script's folder."""

    def __init__(self, main, args):
        self.args = args
        self.main = main if main.__module__ != "__main__" else None
        self.script = Path(sys.argv[0]).resolve() if self.main is None else None
        self.main_name = main.__name__

    def _main(self):
        if self.main is not None:
            return self.main
        sys.path.insert(0, str(self.script.parent))  # spawned processes inherit sys.path
        return getattr(importlib.import_module(self.script.stem), self.main_name)

    def __call__(self):
        import submitit

        from .launch import launch

        env = submitit.JobEnvironment()
        dist_url = f"tcp://{env.hostnames[0]}:{_port(env.job_id)}"
        return launch(
            self._main(),
            self.args.num_gpus,
            num_machines=env.num_nodes,
            machine_rank=env.node,
            dist_url=dist_url,
            args=(self.args,),
        )

    def checkpoint(self, *args, **kwargs):
        """submitit calls this on preemption or timeout: requeue, continuing from the last checkpoint."""
        import submitit

        resumed = copy.copy(self.args)
        if hasattr(resumed, "resume"):
            resumed.resume = True
        task = copy.copy(self)
        task.args = resumed
        return submitit.helpers.DelayedSubmission(task)


def job_failure(job) -> str:
    """The line of a failed job's log that says why: its last error line, else its last line."""
    log = Path(job.paths.stderr)
    lines = (
        [line.strip() for line in log.read_text(errors="replace").splitlines() if line.strip()]
        if log.is_file()
        else []
    )
    errors = [line for line in lines if line.startswith("error:") or "Error" in line.split(":")[0]]
    return (errors or lines or ["no message in the log"])[-1][:300]


def slurm_processes(args) -> None:
    """Make ``--num-gpus`` / ``--num-machines`` say what the job will run, for the preflight's
    checks (the batch must divide over every process of the job)."""
    args.num_gpus, args.num_machines, args.machine_rank = args.slurm_gpus_per_node, args.slurm_nodes, 0


def submit(main, args, job_name: str = "resnext_det"):
    """Submit ``main(args)`` as a job; returns the submitit job (its ``.job_id``, ``.paths``)."""
    import submitit

    folder = Path(args.slurm_folder)
    if args.slurm_local:
        executor = submitit.LocalExecutor(folder=folder)
        executor.update_parameters(timeout_min=args.slurm_time, tasks_per_node=1, nodes=1)
    else:
        executor = submitit.AutoExecutor(folder=folder, slurm_max_num_timeout=3)
        parameters = dict(
            name=job_name,
            nodes=args.slurm_nodes,
            tasks_per_node=1,  # one launcher per node; it starts one process per GPU
            gpus_per_node=args.slurm_gpus_per_node,
            cpus_per_task=args.slurm_cpus_per_gpu * args.slurm_gpus_per_node,
            timeout_min=args.slurm_time,
        )
        if args.slurm_partition:
            parameters["slurm_partition"] = args.slurm_partition
        executor.update_parameters(**parameters)
    task_args = copy.copy(args)
    task_args.slurm = False  # the task runs the job; it does not submit again
    return executor.submit(SlurmTask(main, task_args))
