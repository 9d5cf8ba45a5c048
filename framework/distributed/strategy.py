"""Lightning's DDP without the ``DistributedDataParallel`` wrapper: the processes, the process group,
rank-zero logging and checkpointing are Lightning's; the reductions are the framework's.

``DistributedDataParallel`` all-reduces gradients in hooks of a plain backward only: it misses gradients of
gradients (pytorch#63812), gradients a solver computes with ``torch.autograd.grad`` (PSGD, Gauss-Newton),
and expects one backward per forward (L-BFGS evaluates its closure many times). The step's reductions
(:class:`~framework.distributed.DataParallel`) cover all of them, so the model runs unwrapped.
"""

from __future__ import annotations

import torch.distributed as dist
from pytorch_lightning.strategies import DDPStrategy

from framework.checkpoints.rng import capture_rng, restore_rng
from framework.errors import ConfigError


class ReplicatedDDPStrategy(DDPStrategy):
    """Every process holds the whole model; training starts from rank 0's parameters and buffers.

    Lightning re-seeds the global generators when it sets up the process group; here they keep the state
    the run left them in, as in a single process, so that the solvers' draws are the single process's.
    """

    strategy_name = "optbench_ddp"

    def _configure_launcher(self) -> None:
        """The processes are started before the Trainer exists (:func:`~framework.distributed.local_processes`,
        srun, torchrun); Lightning's launcher would re-run this process's command line in new processes."""
        assert self.cluster_environment is not None
        if self.num_processes * self.num_nodes == 1 or self.cluster_environment.creates_processes_externally:
            super()._configure_launcher()  # nothing to start
        else:
            raise ConfigError("backend", "ddp", "its processes are started by framework.runner.run (optbench run, "
                              "run.py), srun or torchrun; a Trainer built without them would re-run this command")

    def setup_distributed(self) -> None:
        state = capture_rng()
        super().setup_distributed()
        restore_rng(state)

    def configure_ddp(self) -> None:
        assert self.model is not None
        for tensor in [*self.model.parameters(), *self.model.buffers()]:
            dist.broadcast(tensor.data, src=0)
