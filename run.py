"""Train one solver on one problem: ``python run.py optimizer=sophia model=gpt2-nano``.

Any Hydra override works (``trainer.max_steps=200 optimizer.lr=1e-3 seed=1 hydra.run.dir=...``);
``python run.py resume=<run dir>`` continues a stopped run from its last checkpoint;
``python run.py -m +experiment=<name>`` runs a study from ``experiments/``;
``python -m framework list`` shows every installed solver, problem and backend.
"""

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from framework.app import prepare, train


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> float | None:
    return train(cfg)


if __name__ == "__main__":
    sys.argv[1:] = prepare(sys.argv[1:], Path(__file__).resolve().parent)
    main()
