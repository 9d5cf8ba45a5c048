"""``hydra/sweeper=basic``, the default sweeper, as optbench installs it: Hydra's, composing each member once.

Hydra's basic sweeper composes every member's config twice: once to check the whole batch before launching
any member (a typo fails the sweep at once, not at its 50th member), once more in the launcher. A
composition of optbench's config takes ~60 ms on the benchmark machine, three times the 100 steps of a
small member (benchmarks/sweep_member.py). This sweeper keeps the check and hands its result to the
launcher, which composes only what it was not handed: a launcher in another process (joblib, SLURM) gets
the loader without the kept configs and composes as before.

It takes the place of Hydra's entry ``basic`` in the config group ``hydra/sweeper`` (Hydra registers its
own before it imports the ``hydra_plugins`` packages), so that the default, a command line's
``hydra/sweeper=basic`` and an experiment's choice of another sweeper all keep their meaning.
"""

# no ``from __future__ import annotations``: Hydra loads this module without registering it in sys.modules,
# where dataclasses look string annotations up
from dataclasses import dataclass
from typing import Any, Dict, List, Sequence, Tuple

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper, BasicSweeperConf
from hydra.core.config_store import ConfigStore
from hydra.core.config_loader import ConfigLoader
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig


@dataclass
class ComposeOnceSweeperConf(BasicSweeperConf):
    """``hydra.sweeper.*``: Hydra's basic sweeper's settings (``max_batch_size``, ``params``)."""

    _target_: str = "hydra_plugins.optbench_sweeper.basic_sweeper.ComposeOnceSweeper"


ConfigStore.instance().store(group="hydra/sweeper", name="basic", node=ComposeOnceSweeperConf, provider="optbench")


class KeptCompositions:
    """A config loader that answers a request for a member's config with the one composed for the check,
    once; everything else goes to Hydra's loader."""

    def __init__(self, loader: ConfigLoader) -> None:
        self.loader = loader
        self.kept: Dict[Tuple[int, Tuple[str, ...]], DictConfig] = {}

    def __getattr__(self, name: str) -> Any:
        if name in ("loader", "kept"):  # not set yet (unpickling): no recursion through __getattr__
            raise AttributeError(name)
        return getattr(self.loader, name)

    def __getstate__(self) -> Dict[str, Any]:
        """Pickled for a launcher's other processes: without the kept configs, which stay here."""
        return {"loader": self.loader, "kept": {}}

    def __setstate__(self, state: Dict[str, Any]) -> None:
        self.__dict__.update(state)

    def compose(self, master_config: DictConfig, overrides: List[str]) -> None:
        """Compose a member's config (raising what Hydra raises for a bad one) and keep it."""
        self.kept[(id(master_config), tuple(overrides))] = self.loader.load_sweep_config(master_config, overrides)

    def load_sweep_config(self, master_config: DictConfig, sweep_overrides: List[str]) -> DictConfig:
        kept = self.kept.pop((id(master_config), tuple(sweep_overrides)), None)
        return kept if kept is not None else self.loader.load_sweep_config(master_config, sweep_overrides)


class ComposeOnceSweeper(BasicSweeper):
    """Hydra's basic sweeper (the cross product of the command line's lists, in batches), whose check of
    each batch composes the configs the launcher then runs."""

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.kept = KeptCompositions(hydra_context.config_loader)
        keeping = HydraContext(config_loader=self.kept, callbacks=hydra_context.callbacks)  # type: ignore[arg-type]
        super().setup(hydra_context=keeping, task_function=task_function, config=config)

    def validate_batch_is_legal(self, batch: Sequence[Sequence[str]]) -> None:
        assert self.config is not None
        self.kept.kept.clear()  # a batch the launcher did not ask for (another process composed it) is dropped
        for overrides in batch:
            self.kept.compose(self.config, list(overrides))
