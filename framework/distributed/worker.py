"""A worker process of a data-parallel run on one machine (started by
:func:`~framework.distributed.launch.local_processes`): reads ``{"config", "run_dir"}`` as JSON from
stdin and runs that config as the rank its environment gives. It writes nothing: rank 0 does."""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main() -> int:
    from omegaconf import OmegaConf

    from framework.errors import ConfigError
    from framework.runner import run

    job = json.loads(sys.stdin.read())
    try:
        run(OmegaConf.create(job["config"]), Path(job["run_dir"]))
    except ConfigError:
        return 2  # rank 0 met the same setting and says so
    return 0


if __name__ == "__main__":
    sys.exit(main())
