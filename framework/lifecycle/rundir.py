"""Run directories: a unique name for every launch, a guard that never writes over a result, and a lock
that keeps two processes out of one directory.

Hydra's own ``.hydra/`` files are written here, after the guard (``hydra.output_subdir`` is null in the
primary config), so that a refused launch leaves an existing directory exactly as it was.
"""

from __future__ import annotations

import fcntl
import os
import secrets
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from framework.checkpoints.resume import LAST, checkpoint_dir
from framework.lifecycle.status import COMPLETED, DIVERGED, PRUNED
from framework.results import SUMMARY, read_summary

UNIQUE_RESOLVER = "optbench.unique"
LOCK = ".lock"


def register_unique_resolver() -> None:
    """``${optbench.unique:}``: 6 random hex digits, drawn once per launch (a sweep's members share them).

    With the time of day in the default run and sweep directories, two launches in the same second
    still get directories of their own; the lock below catches the one-in-16-million rest.
    """
    if not OmegaConf.has_resolver(UNIQUE_RESOLVER):
        OmegaConf.register_new_resolver(UNIQUE_RESOLVER, lambda: secrets.token_hex(3), use_cache=True)


def new_run_refusal(run_dir: Path) -> str | None:
    """Why a new run may not start in ``run_dir``, or None."""
    if (run_dir / SUMMARY).exists():
        return f"already holds a result ({SUMMARY}); choose a new directory"
    if (checkpoint_dir(run_dir) / LAST).exists():
        return f"holds a run that stopped before it finished; continue it with resume={run_dir}"
    return None


def resume_refusal(run_dir: Path) -> str | None:
    """Why the run in ``run_dir`` may not be resumed, or None (an unreadable checkpoint is the reader's)."""
    if not run_dir.is_dir():
        return "no such run directory"
    if not (checkpoint_dir(run_dir) / LAST).is_file():
        return f"has no checkpoint (checkpoints/{LAST}); only a run that wrote one can be resumed"
    try:
        summary = read_summary(run_dir)
    except (OSError, ValueError):  # none yet (a killed run), or unreadable: the checkpoint decides
        return None
    if summary.get("status") == COMPLETED:
        return "the run already completed; there is nothing to resume"
    if summary.get("status") == PRUNED:
        return "the run is a tuning trial its study pruned; there is nothing to resume"
    if summary.get("status") == DIVERGED:
        step = (summary.get("divergence") or {}).get("step")
        return f"the run diverged (at step {step}); resuming would diverge again"
    return None


class RunLock:
    """An exclusive ``flock`` on ``<run dir>/.lock`` for as long as a run writes there.

    The operating system drops it when the process ends, however it ends, so a killed run's directory
    can be resumed at once, while a second live process is refused.
    """

    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / LOCK
        self._fd: int | None = None

    def acquire(self) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def save_hydra_config(run_dir: Path, task_cfg: DictConfig) -> None:
    """What Hydra writes to ``.hydra/`` (the composed config, Hydra's config, the overrides)."""
    from hydra.core.hydra_config import HydraConfig

    hydra = HydraConfig.get()
    folder = Path(run_dir) / ".hydra"
    folder.mkdir(parents=True, exist_ok=True)
    nodes = {"config.yaml": task_cfg, "hydra.yaml": OmegaConf.create({"hydra": hydra}),
             "overrides.yaml": hydra.overrides.task}
    for name, node in nodes.items():
        (folder / name).write_text(OmegaConf.to_yaml(node), encoding="utf-8")
