"""A sweep member that runs as a cluster job gets its job's logs beside its results.

Hydra's submitit launcher keeps each job's sbatch script and stdout/stderr under the sweep's
``.submitit/<job id>/``; the member's run directory gets ``job.out`` and ``job.err``, relative links to
them, so that a run directory holds everything about its run. A requeued job writes on in the same files.
"""

from __future__ import annotations

import os
from pathlib import Path


def link_job_logs(run_dir: Path) -> list[Path]:
    """Inside a submitit job: link its stdout and stderr into ``run_dir``; elsewhere do nothing. Returns the
    links made or found."""
    if "SUBMITIT_FOLDER" not in os.environ and "SUBMITIT_EXECUTOR" not in os.environ:
        return []
    try:
        from submitit import JobEnvironment

        paths = JobEnvironment().paths
    except Exception:  # noqa: BLE001 - not a submitit job after all, or an older submitit: no links
        return []
    links = []
    for name, target in (("job.out", paths.stdout), ("job.err", paths.stderr)):
        link = Path(run_dir) / name
        if not link.is_symlink():
            link.symlink_to(os.path.relpath(Path(target).resolve(), Path(run_dir).resolve()))
        links.append(link)
    return links
