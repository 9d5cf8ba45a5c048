"""The end of a sweep: one line per member that did not complete, and an exit code that counts them.

A tuning sweep (``hydra/sweeper=optuna``) is judged by its studies instead: diverged and failed trials are
part of tuning; a study with no completed trial, or a re-run of a best configuration that did not
complete, is a failure.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from framework.lifecycle.status import COMPLETED
from framework.results import SUMMARY, read_summary

#: written by the tuner (framework.studies.tuning, which needs Optuna: not imported here)
MANIFEST, BEST = "tuning.json", "best"


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


def tuning_outcomes(manifest: dict[str, Any]) -> tuple[list[str], int]:
    """One line per study of a tuning record, and the number of failures in it."""
    lines, failures = [], 0
    for study in manifest["studies"]:
        statuses = [t["status"] or t["state"].lower() for t in study["trials"]]
        counts = ", ".join(f"{statuses.count(s)} {s}" for s in sorted(set(statuses)))
        best = study["best"]
        if best is None:
            failures += 1
            lines.append(f"  {study['name']}: {len(statuses)} trials ({counts}); none completed")
            continue
        params = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in best["params"].items())
        line = (f"  {study['name']}: {len(statuses)} trials ({counts}); best {study['metric']} "
                f"{best['value']:.4g} (trial {best['number']}: {params})")
        reruns = study["reruns"]
        if reruns:
            values = [f"{r['value']:.4g}" if r["status"] == COMPLETED else r["status"] for r in reruns]
            failures += sum(r["status"] != COMPLETED for r in reruns)
            line += f"; seeds {', '.join(str(r['seed']) for r in reruns)}: {', '.join(values)}"
        lines.append(line)
    return lines, failures


class SweepReport(Callback):
    """A Hydra callback: after a multirun, report its members; exit with the number that did not complete
    (at most 125, as shells keep higher codes for themselves)."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(str(config.hydra.sweep.dir))
        if not sweep_dir.is_dir():
            return
        if (sweep_dir / MANIFEST).is_file():
            lines, failures = tuning_outcomes(json.loads((sweep_dir / MANIFEST).read_text()))
            print(f"\ntuning {sweep_dir}: best configurations in {sweep_dir / BEST}", *lines, sep="\n")
            if failures:
                raise SystemExit(min(failures, 125))
            return
        outcomes = member_outcomes(sweep_dir)
        failed = [o for o in outcomes if o[1] != COMPLETED]
        print(f"\nsweep {sweep_dir}: {len(outcomes) - len(failed)} of {len(outcomes)} members completed")
        for name, status, error in failed:
            print(f"  {name}: {status}" + (f": {error}" if error else ""))
        if failed:
            raise SystemExit(min(len(failed), 125))
