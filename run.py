"""Train one solver on one problem from a checkout: ``python run.py optimizer=sophia model=gpt2-nano``.

The same as ``optbench run ...`` (the installed command), with the checkout's ``experiments/``. Any Hydra
override works (``trainer.max_steps=200 optimizer.lr=1e-3 seed=1 hydra.run.dir=...``);
``python run.py resume=<run dir>`` continues a stopped run from its last checkpoint;
``python run.py -m +experiment=<name>`` runs a study from ``experiments/``;
``optbench list`` shows every installed solver, problem and backend.
"""

import sys
from pathlib import Path

from framework.app import launch

if __name__ == "__main__":
    launch(sys.argv[1:], Path(__file__).resolve().parent / "experiments", program="run.py")
