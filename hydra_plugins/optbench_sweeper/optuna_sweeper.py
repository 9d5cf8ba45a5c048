"""``hydra/sweeper=optuna``: tuning with Optuna through whatever Hydra launcher is configured (local or SLURM).

The Hydra side only: settings, composing a member's config, launching. The tuning itself is
:mod:`framework.studies.tuning`. Hydra finds this plugin because it lives in the ``hydra_plugins``
namespace package; importing the module registers the config group option.
"""

# no ``from __future__ import annotations``: Hydra loads this module without registering it in sys.modules,
# where dataclasses look string annotations up; OmegaConf wants typing's List and Dict here.
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig
from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, ListConfig, OmegaConf, open_dict


@dataclass
class OptunaSweeperConf:
    """``hydra.sweeper.*``: see the README's "Tuning" section."""

    _target_: str = "hydra_plugins.optbench_sweeper.optuna_sweeper.OptunaSweeper"
    #: finished trials per study (every plain list of the command line, e.g. optimizer=adamw,sophia, is a study)
    n_trials: int = 20
    #: trials asked and launched at once (parallel on SLURM; one after the other with the local launcher)
    n_jobs: int = 1
    #: tpe, random, qmc (scrambled Halton) or grid
    sampler: str = "tpe"
    sampler_seed: int = 0
    #: the trial's value: the validation metric at the end (final) or its best value (best)
    objective: str = "final"
    #: after tuning, each study's best configuration runs again on these seeds
    rerun_seeds: List[int] = field(default_factory=list)
    #: search space and fixed settings, in Hydra's sweep syntax (the command line wins for the same key)
    params: Dict[str, Any] = field(default_factory=dict)
    #: null, median or asha: stop unpromising trials early from their validation history
    pruner: Optional[str] = None


ConfigStore.instance().store(group="hydra/sweeper", name="optuna", node=OptunaSweeperConf, provider="optbench")


class OptunaSweeper(Sweeper):
    """Hydra sweeper over :class:`framework.studies.tuning.Tuning`."""

    def __init__(self, **settings: Any) -> None:
        """``settings``: the fields of :class:`OptunaSweeperConf`, as Hydra composed them."""
        from framework.studies.tuning import TuningSettings

        plain = {key: OmegaConf.to_container(value) if isinstance(value, (DictConfig, ListConfig)) else value
                 for key, value in settings.items()}
        self.settings = TuningSettings(**plain)
        self.config: Optional[DictConfig] = None
        self.hydra_context: Optional[HydraContext] = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config = config
        self.hydra_context = hydra_context
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config)

    def sweep(self, arguments: List[str]) -> Any:
        from framework.app import fail
        from framework.errors import ConfigError
        from framework.studies.tuning import Tuning

        assert self.config is not None
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        try:
            tuning = Tuning(self.settings, sweep_dir, self._launch, self._member)
            return tuning.run(list(arguments))
        except ConfigError as error:
            fail(str(error))
        except SystemExit:
            print(f"tuning stopped; continue it with the same command and hydra.sweep.dir={sweep_dir}",
                  file=sys.stderr)
            raise

    def _launch(self, jobs: List[List[str]], first_job: int) -> None:
        self.launcher.launch(jobs, initial_job_idx=first_job)

    def _member(self, overrides: List[str], job_num: int) -> Tuple[DictConfig, Path]:
        """The config of the member with these overrides and number, and its run directory (as Hydra
        will name it when the launcher runs it)."""
        from framework.errors import ConfigError

        assert self.hydra_context is not None and self.config is not None
        try:
            config = self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))
        except Exception as error:  # Hydra's own message: unknown option, bad override, ...
            raise ConfigError("override", " ".join(overrides), str(error).splitlines()[0]) from None
        with open_dict(config):
            config.hydra.job.num = job_num
        hydra = HydraConfig.instance()
        previous = hydra.cfg
        hydra.set_config(config)
        try:
            run_dir = Path(str(config.hydra.sweep.dir)) / str(config.hydra.sweep.subdir)
        finally:
            hydra.cfg = previous
        return config, run_dir
