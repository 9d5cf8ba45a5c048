"""A run directory read back into the point where its run continues."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from framework.errors import ConfigError

LAST = "last.ckpt"
BEST = "best.ckpt"
#: the key under which a checkpoint holds what optbench adds to Lightning's contents
RUN_STATE = "optbench"
FORMAT = 1


def checkpoint_dir(run_dir: Path) -> Path:
    return Path(run_dir) / "checkpoints"


@dataclass
class ResumePoint:
    """The last checkpoint of a run and what the run stored in it beside Lightning's own state."""

    run_dir: Path
    path: Path
    config: dict[str, Any]
    step: int
    batches: int
    rng: dict[str, Any]
    metrics: tuple[int, list[str]]
    wandb_id: str | None
    resumes: list[dict[str, Any]] = field(default_factory=list)
    #: the run's optimizer steps per Lightning batch (:mod:`framework.lifecycle.fusion`)
    fused_steps: int = 1

    @classmethod
    def read(cls, run_dir: Path) -> "ResumePoint":
        """Read ``run_dir/checkpoints/last.ckpt``; one-line :class:`ConfigError` where there is none."""
        run_dir = Path(run_dir)
        path = checkpoint_dir(run_dir) / LAST
        if not path.is_file():
            why = "is not a directory" if not run_dir.is_dir() else f"has no checkpoint ({path.relative_to(run_dir)})"
            raise ConfigError("resume", str(run_dir), f"{why}; only a run that wrote a checkpoint can be resumed")
        try:
            checkpoint = torch.load(path, map_location="cpu", weights_only=False, mmap=True)
            state = checkpoint[RUN_STATE]
        except Exception as error:  # noqa: BLE001 - any unreadable file is the same answer to the user
            raise ConfigError("resume", str(run_dir), f"its checkpoint {path.name} cannot be read "
                                                      f"({type(error).__name__}: {error})") from None
        if state.get("format") != FORMAT:
            raise ConfigError("resume", str(run_dir), f"its checkpoint has format {state.get('format')}, "
                                                      f"this optbench reads format {FORMAT}")
        return cls(run_dir=run_dir, path=path, config=state["config"], step=int(checkpoint["global_step"]),
                   batches=int(checkpoint["batches"]), rng=state["rng"],
                   metrics=(int(state["metrics"][0]), list(state["metrics"][1])), wandb_id=state.get("wandb_id"),
                   resumes=list(state.get("resumes", [])), fused_steps=int(checkpoint.get("fused_steps", 1)))
