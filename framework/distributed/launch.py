"""Starting the processes of a data-parallel run on this machine, unless a launcher already has.

Under ``srun`` with several tasks (SLURM) or ``torchrun`` every process was started by the launcher and
runs the whole command; each knows its rank from the environment. Otherwise the run's first process
starts the others itself: each runs :mod:`framework.distributed.worker` with the run's resolved config,
so the same thing happens whether the run came from the command line, a Hydra multirun, a Python call or
a test. (Lightning's own launcher re-runs the command line instead, which under ``-m`` starts the whole
sweep again in every process.)
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from framework.errors import ConfigError

#: the environment a process group is built from (torch.distributed's env:// and Lightning's environment)
_RANK_VARIABLES = ("MASTER_ADDR", "MASTER_PORT", "WORLD_SIZE", "RANK", "LOCAL_RANK", "NODE_RANK")


def _slurm_tasks() -> int:
    return int(os.environ.get("SLURM_NTASKS", "1")) if "SLURM_PROCID" in os.environ else 1


def external_rank() -> int | None:
    """This process's global rank where a launcher started the run's processes (several SLURM tasks,
    ``torchrun``, or :func:`local_processes`), else None."""
    if _slurm_tasks() > 1:
        return int(os.environ["SLURM_PROCID"])
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ:
        return int(os.environ["RANK"])
    return None


def _launched_world() -> int:
    return _slurm_tasks() if _slurm_tasks() > 1 else int(os.environ.get("WORLD_SIZE", "1"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def available_cores() -> int:
    """The CPU cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


@contextmanager
def local_processes(world: int, nodes: int, config: dict[str, Any], run_dir: Path,
                    threads: int | None = None) -> Iterator[int]:
    """Within the block, this process is rank 0 of ``world`` processes on this machine, the others running
    ``config`` in ``run_dir`` as workers; yields this process's rank (where a launcher started the
    processes, the rank it gave). ``threads`` sets torch's threads per process (CPU runs; null: the cores
    shared out). The block ends when every worker has ended; a worker that failed raises."""
    if world == 1:
        yield 0
        return
    rank = external_rank()
    if rank is not None:
        if _slurm_tasks() > 1 and "SLURM_NTASKS_PER_NODE" not in os.environ:
            raise ConfigError("backend.devices", world, "under srun needs --ntasks-per-node (SLURM sets no tasks per "
                              "node for --ntasks alone): srun --nodes=<backend.num_nodes> "
                              "--ntasks-per-node=<backend.devices>")
        if _launched_world() != world:
            raise ConfigError("backend.devices", world, f"x backend.num_nodes does not match the {_launched_world()} "
                              "processes the launcher started (SLURM: hydra.launcher.tasks_per_node and nodes)")
        yield rank
        return
    if nodes > 1:
        raise ConfigError("backend.num_nodes", nodes, "needs a launcher that starts the processes on every node: "
                          "hydra/launcher=slurm with hydra.launcher.nodes and tasks_per_node, or torchrun")
    if _slurm_tasks() == 1 and "SLURM_JOB_ID" in os.environ and os.environ.get("SLURM_JOB_NAME") not in (
            "bash", "interactive"):
        raise ConfigError("backend.devices", world, "runs one SLURM task per device: set "
                          f"hydra.launcher.tasks_per_node={world} (sbatch --ntasks-per-node={world})")
    threads = threads or max(1, available_cores() // world)
    shared = {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port()), "WORLD_SIZE": str(world),
              "NODE_RANK": "0"}
    workers = []
    payload = json.dumps({"config": config, "run_dir": str(run_dir)})
    for worker_rank in range(1, world):
        env = {**os.environ, **shared, "RANK": str(worker_rank), "LOCAL_RANK": str(worker_rank),
               "OMP_NUM_THREADS": str(threads), "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
        process = subprocess.Popen([sys.executable, "-m", "framework.distributed.worker"], env=env,
                                   stdin=subprocess.PIPE, text=True)
        process.stdin.write(payload)  # type: ignore[union-attr]
        process.stdin.close()  # type: ignore[union-attr]
        workers.append(process)
    saved = {name: os.environ.get(name) for name in _RANK_VARIABLES}
    os.environ.update({**shared, "RANK": "0", "LOCAL_RANK": "0"})
    import torch

    saved_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    finished = False
    try:
        yield 0
        finished = True
    finally:
        torch.set_num_threads(saved_threads)
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
        codes = _wait(workers, patient=finished)
    failed = [f"process {i} exited with code {code}" for i, code in enumerate(codes, start=1) if code]
    if failed:
        raise RuntimeError(f"data-parallel run in {run_dir}: {'; '.join(failed)}")


def _wait(workers: list[subprocess.Popen], patient: bool) -> list[int]:
    """The workers' exit codes; those still running after rank 0 failed are stopped."""
    codes = []
    for process in workers:
        try:
            codes.append(process.wait(timeout=None if patient else 30))
        except subprocess.TimeoutExpired:
            process.kill()
            codes.append(process.wait())
    return codes
