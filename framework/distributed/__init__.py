"""Data-parallel training: one run over several processes that trains as one process would.

Every process holds the whole model and the whole optimizer state; each step's global batch (the problem's
``batch_size``) is cut into one contiguous slice per process (:mod:`~framework.distributed.shard`). What a
solver sees of a differentiation is always the global result: the loss, every gradient and every curvature
product with respect to the parameters is combined over the processes, weighted by their share of the
batch, before the solver reads it (:mod:`~framework.distributed.reduce`). So first- and second-order
solvers alike make the decisions a single process would make on the whole batch, and need no code of their
own for it. Processes are started by the launcher that runs the job (``srun`` under SLURM, ``torchrun``) or,
on one machine, by :mod:`~framework.distributed.launch`.
"""

from framework.distributed.launch import external_rank, local_processes
from framework.distributed.reduce import DataParallel
from framework.distributed.shard import Shard, current_shard, draw_for_rows, slice_batch

__all__ = ["DataParallel", "Shard", "current_shard", "draw_for_rows", "external_rank", "local_processes",
           "slice_batch"]
