"""Shared test helpers: real Hydra composition of the project's config, real runs in a temp directory."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
# token caches of the test session live in a temporary directory, never in the user's cache
os.environ["OPTBENCH_CACHE"] = os.environ.get("OPTBENCH_TEST_CACHE") or __import__("tempfile").mkdtemp(prefix="optbench-")
# Hugging Face data sets: local builders only, no hub lookups
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# quiet, fast runs: no W&B unless a test asks for it, no progress bars in the log
QUIET = ["logger=local", "backend=cpu", "trainer.enable_progress_bar=false", "trainer.enable_model_summary=false"]


def compose(*overrides: str) -> Any:
    """The project's config composed by Hydra with plugin configs registered, as ``optbench run`` sees it."""
    from framework.authoring.conformance import compose as compose_config

    return compose_config(*overrides, quiet=QUIET)


def train(run_dir: Path, *overrides: str) -> dict:
    """Compose and run in-process; return the summary written to ``run_dir``."""
    from framework.runner import run

    return run(compose(*overrides), run_dir)


def run_cli(*args: str, cwd: Path = ROOT, env: dict | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    """``python run.py ...`` (or any module via ``-m``) in a subprocess, as a user types it."""
    full_env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", **(env or {})}
    return subprocess.run([sys.executable, *args], cwd=cwd, env=full_env, capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    return tmp_path / "run"
