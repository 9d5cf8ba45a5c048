"""The end of a sweep: one line per member that did not complete, and an exit code that counts them."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from framework.lifecycle.status import COMPLETED
from framework.results import SUMMARY, read_summary


def _job_number(folder: Path) -> tuple[int, str]:
    match = re.match(r"(\d+)", folder.name)
    return (int(match.group(1)) if match else sys.maxsize, folder.name)


def member_outcomes(sweep_dir: Path) -> list[tuple[str, str, str | None]]:
    """(member directory, status, error) for every member of a sweep, in job order; a member without a
    summary (killed, or still running elsewhere) has status ``no result``."""
    outcomes = []
    members = [d for d in Path(sweep_dir).iterdir() if d.is_dir() and ((d / ".hydra").is_dir() or (d / SUMMARY).exists())]
    for folder in sorted(members, key=_job_number):
        try:
            summary = read_summary(folder)
            outcomes.append((folder.name, summary.get("status", "unknown"), summary.get("error")))
        except (OSError, ValueError):
            outcomes.append((folder.name, "no result", None))
    return outcomes


class SweepReport(Callback):
    """A Hydra callback: after a multirun, report its members; exit with the number that did not complete
    (at most 125, as shells keep higher codes for themselves)."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(str(config.hydra.sweep.dir))
        if not sweep_dir.is_dir():
            return
        outcomes = member_outcomes(sweep_dir)
        failed = [o for o in outcomes if o[1] != COMPLETED]
        print(f"\nsweep {sweep_dir}: {len(outcomes) - len(failed)} of {len(outcomes)} members completed")
        for name, status, error in failed:
            print(f"  {name}: {status}" + (f": {error}" if error else ""))
        if failed:
            raise SystemExit(min(len(failed), 125))
