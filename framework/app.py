"""Glue between the command line (``optbench run``, ``run.py``) and the runner: the packaged default config,
plugin configs, the run-directory guard, exit codes, one-line errors.

A single run exits with its status's code (:mod:`framework.lifecycle.status`); in a sweep (``-m``) a member
that fails, diverges or has a bad value is recorded in its own directory and the sweep goes on, a stop
signal stops the whole sweep (exit 75), and running the same sweep again continues its stopped members
and skips the finished ones.
"""

from __future__ import annotations

import functools
import gc
import os
import shutil
import sys
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from framework.configs import quoted, register_configs
from framework.errors import ConfigError
from framework.lifecycle.joblogs import link_job_logs
from framework.lifecycle.rundir import RunLock, new_run_refusal, resume_refusal, save_hydra_config
from framework.lifecycle.status import EXIT_CODES, EXIT_CONFIG, FAILED, INTERRUPTED
from framework.results import SUMMARY, write_summary

#: what Hydra itself writes into a run directory before the task starts (``hydra.job.name`` is ``run``)
_HYDRA_FILES = (".hydra", "run.log")

#: the default config (the checkout's ``conf/``, reached through the symlink ``framework/conf``; a wheel
#: holds a copy of the files)
CONFIG_DIR = Path(__file__).resolve().parent / "conf"


def fail(message: str, code: int = EXIT_CONFIG) -> None:
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(code)


@functools.cache
def freeze_startup_heap() -> None:
    """Once per process: take every object alive now (the modules of torch, Lightning, W&B and Hydra, about a
    million objects) out of the cyclic garbage collector's walks (``gc.freeze``). A sweep member allocates
    enough (two Hydra compositions, a Trainer) to set off full collections, each of which would walk that
    whole heap again: ~75 ms a member of a 100-step logreg sweep (benchmarks/sweep_member.py). Objects made
    later are collected as usual."""
    gc.freeze()


def launch(argv: list[str], experiments: Path, program: str = "optbench run") -> None:
    """Hydra's command line over the packaged config, with ``train`` as the task: ``optbench run ...`` and
    ``python run.py ...`` both end here. ``experiments`` is the folder of ``+experiment=<name>`` studies."""
    import hydra

    sys.argv = [program, *prepare(argv, experiments)]
    freeze_startup_heap()
    hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="config")(train)()


def prepare(argv: list[str], experiments: Path) -> list[str]:
    """Run before ``hydra.main``: make plugins and ``experiments/*.yaml`` selectable; return the arguments.

    ``resume=<run dir>`` points Hydra's run directory at that run (so nothing new is created), after
    checking that the run may be continued; it takes no other setting, since the run continues with the
    config stored in its checkpoint.
    """
    register_configs(experiments=experiments)
    # submitit (hydra/launcher=slurm) warns its jobs with SIGUSR1, as the README documents, instead of USR2
    os.environ.setdefault("SUBMITIT_PREEMPT_SIGNAL", "USR1")
    resume = [arg.partition("=")[2] for arg in argv if arg.partition("=")[0].lstrip("+") == "resume"]
    if not resume or not resume[0] or resume[0] == "null":
        return argv
    run_dir = resume[0]
    others = [arg for arg in argv if not arg.lstrip("+").startswith(("resume=", "hydra."))]
    if others:
        fail(f"resume={run_dir}: takes no other arguments (the run continues with its stored config); "
             f"got {' '.join(others)}")
    refusal = resume_refusal(Path(run_dir))
    if refusal:
        fail(f"resume={run_dir}: {refusal}")
    return [*argv, f"hydra.run.dir={quoted(run_dir)}"]


def _discard_fresh_run_dir(run_dir: Path, top: Path) -> None:
    """Remove what Hydra and the guard wrote for a run that never started, and the folders left empty by
    that, up to ``top``; leave anything else untouched."""
    for name in (*_HYDRA_FILES, ".lock"):
        path = run_dir / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
    folder, top = run_dir.resolve(), top.resolve()
    while True:
        try:
            folder.rmdir()
        except OSError:
            return  # not empty: it holds files that are not ours
        folder = folder.parent
        if folder == top or top not in folder.parents:
            return


def _record_refused_member(run_dir: Path, cfg: DictConfig, error: ConfigError) -> None:
    """A sweep member with a bad value: a summary that says so, in the member's own directory."""
    try:
        config: Any = OmegaConf.to_container(cfg, resolve=True)
    except Exception:  # noqa: BLE001 - an unresolvable config is recorded as written
        config = OmegaConf.to_container(cfg, resolve=False)
    write_summary(run_dir, {"status": FAILED, "error": f"{error}", "names": (config or {}).get("names"),
                            "config": config})


def _same_run(run_dir: Path, cfg: DictConfig) -> bool:
    """Whether the checkpoint in ``run_dir`` is of the run ``cfg`` describes (a sweep run again)."""
    from framework.checkpoints import ResumePoint

    try:
        stored = ResumePoint.read(run_dir).config
    except ConfigError:
        return False
    return {**stored, "resume": None} == {**OmegaConf.to_container(cfg, resolve=True), "resume": None}


def _report(summary: dict[str, Any], run_dir: Path) -> None:
    metric = summary["metric"]
    values = "no validation" if metric["initial"] is None else f"{metric['initial']:.4g} -> {metric['final']:.4g}"
    line = (f"\n{summary['status']}: {metric['name']} {values} in {summary['steps']} steps, "
            f"{summary['wall_clock_s']['train']:.1f} s of training")
    if summary.get("divergence"):
        d = summary["divergence"]
        line += f"; {d['quantity']} became {d['value']} at step {d['step']}"
    if summary.get("stopped"):
        line += f"; stopped by {summary['stopped']['by']}"
    print(line)
    print(f"results: {run_dir / SUMMARY}")
    print(f"per-step metrics: {run_dir / 'metrics.csv'}")
    if summary.get("checkpoint"):
        hint = f" (continue with: python run.py resume={run_dir})" if summary["status"] == "interrupted" else ""
        print(f"checkpoint: {run_dir / summary['checkpoint']}{hint}")
    wandb_dir = run_dir / "wandb"
    if wandb_dir.exists():
        print(f"W&B run: {wandb_dir} (offline runs upload with `wandb sync {wandb_dir}/offline-run-*`)")


def _share_cores(launcher: Any) -> None:
    """Under the joblib launcher (``hydra/launcher=joblib``, members in parallel worker processes), give each
    member its share of the cores as torch threads, so that ``n_jobs`` members do not oversubscribe them
    (``backend.threads`` still decides where it is set)."""
    if not str(OmegaConf.select(launcher, "_target_", default="")).endswith("JoblibLauncher"):
        return
    import torch

    from framework.distributed.launch import available_cores

    cores = available_cores()
    jobs = int(launcher.n_jobs)
    jobs = cores if jobs == -1 else cores + 1 + jobs if jobs < 0 else jobs
    torch.set_num_threads(max(1, cores // max(1, jobs)))


def train(cfg: DictConfig) -> float | None:
    """The Hydra task: guard the directory, train, report, exit with the status's code.

    Returns the final metric (for sweepers); in a sweep, a member that did not complete returns None.
    """
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from framework.distributed import external_rank
    from framework.runner import run

    freeze_startup_heap()  # in launcher worker processes (joblib, submitit) too
    hydra = HydraConfig.get()
    run_dir = Path(hydra.runtime.output_dir)
    if external_rank():  # another task of a data-parallel run (srun): rank 0 guards, writes and reports
        run(cfg, run_dir)
        return None
    in_sweep = hydra.mode == RunMode.MULTIRUN
    resuming = bool(cfg.get("resume"))
    if in_sweep:
        _share_cores(hydra.launcher)
    if in_sweep and OmegaConf.select(cfg, "logger.group", default="") is None:  # W&B: one group per sweep
        cfg.logger.group = "/".join(Path(str(hydra.sweep.dir)).parts[-2:])
    if in_sweep and not resuming and resume_refusal(run_dir) is None and _same_run(run_dir, cfg):
        print(f"{run_dir.name}: continuing from its checkpoint", file=sys.stderr)
        cfg.resume, resuming = str(run_dir), True

    def refuse(message: str) -> None:
        if not in_sweep:
            fail(message)
        print(f"error: {message} (member skipped)", file=sys.stderr)

    refusal = None if resuming else new_run_refusal(run_dir)
    if refusal:
        refuse(f"{run_dir}: {refusal}")
        return None
    lock = RunLock(run_dir)
    if not lock.acquire():
        refuse(f"{run_dir}: in use by another running process")
        return None
    try:
        if not resuming:
            save_hydra_config(run_dir, cfg)
        link_job_logs(run_dir)
        summary = run(cfg, run_dir)
    except ConfigError as error:
        if in_sweep:
            _record_refused_member(run_dir, cfg, error)
            print(f"error: {run_dir.name}: {error}", file=sys.stderr)
            return None
        if not resuming:
            _discard_fresh_run_dir(run_dir, Path(hydra.runtime.cwd))
        fail(str(error))
    except Exception as error:
        if not in_sweep:
            raise
        if not (run_dir / SUMMARY).exists():
            write_summary(run_dir, {"status": FAILED, "error": f"{type(error).__name__}: {error}"})
        print(f"error: {run_dir.name}: failed: {type(error).__name__}: {error}", file=sys.stderr)
        return None
    finally:
        lock.release()
    _report(summary, run_dir)
    code = EXIT_CODES[summary["status"]]
    if in_sweep and summary["status"] == INTERRUPTED:
        print(f"sweep stopped at {run_dir.name}; the same command continues it", file=sys.stderr)
        raise SystemExit(code)
    if code and not in_sweep:
        raise SystemExit(code)
    return summary["metric"]["final"] if code == 0 else None
