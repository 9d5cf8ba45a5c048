"""The conformance suite: what every solver, problem and backend must do, checked by real runs.

A plugin author calls these from pytest (``optbench new plugin`` writes the file)::

    from framework.api import check_backend, check_problem, check_solver

    def test_my_solver(tmp_path):
        check_solver("mysolver", tmp_path)

Each ``check_*`` composes the packaged config with Hydra, trains for a few steps through the real loop
(CPU, float64 where exactness is checked, no W&B) and raises ``AssertionError`` naming the plugin and
the broken promise. The built-in plugins pass the same suite in this repository's CI.
"""

from __future__ import annotations

import math
import os
import signal
from pathlib import Path
from typing import Any, Sequence

#: what every conformance run adds: local results only, the CPU, quiet, no periodic checkpoints
QUIET = ["logger=local", "backend=cpu", "trainer.enable_progress_bar=false", "trainer.enable_model_summary=false",
         "checkpoint.every_n_minutes=null"]


def compose(*overrides: str, quiet: Sequence[str] = QUIET) -> Any:
    """The packaged config composed by Hydra with every installed plugin registered, as ``optbench run``
    composes it, after the ``quiet`` overrides, less the ``hydra`` node (the run directory is given to the
    runner instead)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    from framework.app import CONFIG_DIR
    from framework.configs import register_configs

    register_configs()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3", job_name="run"):
        cfg = hydra_compose("config", overrides=[*quiet, *overrides], return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        cfg.names = {key: str(value) for key, value in cfg.names.items()}
        del cfg.hydra
    return cfg


def _train(run_dir: Path, *overrides: str, stop_at: int | None = None) -> tuple[Any, dict]:
    """A run through the real loop: (the prepared run, its summary); ``stop_at`` signals the process as a
    cluster would (SIGUSR1) once the run has made that many steps (with fused steps, at the end of the group
    that reaches it)."""
    import pytorch_lightning as pl

    from framework.runner import execute, prepare

    run = prepare(compose(*overrides), run_dir)
    if stop_at is not None:
        class StopAt(pl.Callback):
            signalled = False

            def on_train_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:
                if trainer.global_step >= stop_at and not self.signalled:
                    self.signalled = True
                    os.kill(os.getpid(), signal.SIGUSR1)

        run.trainer.callbacks.append(StopAt())
    return run, execute(run)


def _same_parameters(a: Any, b: Any) -> bool:
    import torch

    return all(torch.equal(x, y) for x, y in zip(a.problem.model.state_dict().values(),
                                                  b.problem.model.state_dict().values()))


def _fails(what: str, condition: bool, message: str) -> None:
    if not condition:
        raise AssertionError(f"conformance: {what}: {message}")


def check_solver(name: str, tmp_path: Path, overrides: Sequence[str] = (), steps: int = 30) -> None:
    """A solver option (``optimizer=<name>``): its YAML matches its constructor; it lowers the loss of a
    quadratic and of a small classifier; two runs with one seed are identical; a run stopped and resumed
    ends bit for bit as an uninterrupted one (float64); its costs count every step's items and at least
    one pass; it trains with ``grad_clip`` and a warmup schedule (or, if it sets its own learning rate,
    refuses one). ``overrides`` tune it for these problems (``optimizer.lr=...``)."""
    from hydra.utils import get_object

    from framework.authoring.checks import check_entry
    from framework.errors import ConfigError
    from framework.registry import Registry
    from framework.runner import execute, prepare_resume

    what = f"optimizer={name}"
    options = Registry().usable("optimizer")
    entries = {**{item.name: item.entry for item in options}, **{item.qualified: item.entry for item in options}}
    _fails(what, name in entries, "no such installed option (optbench list shows them)")
    problem = check_entry("optimizer", entries[name])
    _fails(what, problem is None, str(problem))
    base = [f"optimizer={name}", *overrides, f"trainer.max_steps={steps}", f"trainer.val_check_interval={steps}"]
    needs_likelihood = getattr(get_object(entries[name].target), "needs_likelihood", False)
    for model in ("logreg",) if needs_likelihood else ("quadratic", "logreg"):  # a quadratic has no likelihood
        run, summary = _train(tmp_path / model, *base, f"model={model}")
        metric = summary["metric"]
        _fails(what, summary["status"] == "completed" and metric["final"] < metric["initial"],
               f"does not lower the loss of model={model} in {steps} steps: status {summary['status']}, "
               f"{metric['name']} {metric['initial']} -> {metric['final']}")
        costs, items = summary["costs"], summary["items"]["count"]
        _fails(what, costs["backward"] + costs["hvp"] >= steps and costs["forward"] >= steps and items > 0,
               f"costs on model={model} count fewer passes than steps: {costs}")
        _fails(what, costs["flops"] > 0 or run.problem.flops_per_item() == 0, f"counts no FLOPs on model={model}: "
                                                                              f"{costs}")
    exact = [*base, "model=logreg", "backend.precision=64-true"]
    first, whole = _train(tmp_path / "seeded-1", *exact)
    second, _ = _train(tmp_path / "seeded-2", *exact)
    _fails(what, _same_parameters(first, second), "two runs with the same seed end with different parameters")
    _, stopped = _train(tmp_path / "resumed", *exact, stop_at=steps // 3)
    _fails(what, stopped["status"] == "interrupted", f"a stop signal did not interrupt it: {stopped['status']}")
    resumed = prepare_resume(tmp_path / "resumed")
    again = execute(resumed)
    _fails(what, _same_parameters(first, resumed), "a run stopped and resumed differs from an uninterrupted one")
    _fails(what, whole["costs"] == again["costs"], f"costs of a resumed run differ: {again['costs']} against "
                                                   f"{whole['costs']}")
    clipped = [*base, "model=logreg", "grad_clip=1.0", "schedule=warmup-cosine", "schedule.warmup_steps=5"]
    try:
        _, summary = _train(tmp_path / "clipped", *clipped)
    except ConfigError as error:  # a schedule-free solver refuses a schedule with one line
        _fails(what, "schedule" in str(error), f"refuses grad_clip or a schedule: {error}")
    else:
        _fails(what, summary["status"] == "completed" and math.isfinite(summary["metric"]["final"]),
               f"does not train with grad_clip and schedule=warmup-cosine: {summary['status']}")


def check_problem(name: str, tmp_path: Path, overrides: Sequence[str] = (), steps: int = 20) -> None:
    """A problem option (``model=<name>``): its loaders are deterministic; ``forward`` returns a finite
    scalar loss and a positive item count; validation reports its metric; its target is not met by the
    untrained model, in its metric's direction; with a likelihood, ``sampled_loss`` is a finite scalar
    with a gradient; AdamW trains on it through the real loop."""
    import torch

    from framework.problem import Forward
    from framework.runner import prepare

    what = f"model={name}"
    run = prepare(compose(f"model={name}", *overrides, "trainer.max_steps=1"), tmp_path / "built")
    problem, model = run.problem, run.problem.model
    _fails(what, problem.metric_mode in ("min", "max"), f"metric_mode {problem.metric_mode!r} is not min or max")
    first, again = (next(iter(problem.train_loader(0))) for _ in range(2))
    _fails(what, _equal(first, again), "train_loader(seed) gives different batches for the same seed")
    _fails(what, _equal(next(iter(problem.val_loader())), next(iter(problem.val_loader()))),
           "val_loader gives different batches on two passes")
    out = problem.forward(model, first)
    _fails(what, isinstance(out, Forward), f"forward returns {type(out).__name__}, not Forward")
    _fails(what, out.loss.ndim == 0 and bool(torch.isfinite(out.loss)), "forward's loss is not a finite scalar")
    _fails(what, isinstance(out.items, int) and out.items > 0, f"forward's items {out.items!r} is not a positive int")
    with torch.no_grad():
        metrics = problem.validation_metrics(model, next(iter(problem.val_loader())))
    _fails(what, problem.metric in metrics, f"validation_metrics returns {sorted(metrics)}, without its metric "
                                            f"{problem.metric!r}")
    if problem.target is not None:
        value = float(metrics[problem.metric])
        met = value <= problem.target if problem.metric_mode == "min" else value >= problem.target
        _fails(what, not met, f"the untrained model already meets target {problem.target} ({problem.metric} "
                              f"{value:.4g}, mode {problem.metric_mode})")
    if problem.likelihood != "none":
        sampled = problem.sampled_loss(problem.forward(model, first))
        _fails(what, sampled.ndim == 0 and bool(torch.isfinite(sampled)) and sampled.requires_grad,
               f"sampled_loss (likelihood {problem.likelihood}) is not a finite differentiable scalar")
    _, summary = _train(tmp_path / "trained", f"model={name}", *overrides, "optimizer=adamw",
                        f"trainer.max_steps={steps}", f"trainer.val_check_interval={steps}")
    _fails(what, summary["status"] == "completed", f"AdamW does not train on it: {summary['status']} "
                                                    f"{summary.get('error')}")


def check_backend(name: str, tmp_path: Path, overrides: Sequence[str] = ()) -> None:
    """A backend option (``backend=<name>``): it resolves, and a short logistic-regression run on it
    completes with the backend's description in the summary."""
    from framework.runner import run  # which starts the processes of a multi-process backend

    summary = run(compose(f"backend={name}", *overrides, "model=logreg", "trainer.max_steps=5",
                          "trainer.val_check_interval=5"), tmp_path / "run")
    what = f"backend={name}"
    _fails(what, summary["status"] == "completed", f"a 5-step run did not complete: {summary.get('error')}")
    _fails(what, bool(summary["backend"]), "the summary does not describe the backend")


def _equal(a: Any, b: Any) -> bool:
    """Batches equal as nested tensors, sequences and mappings."""
    import torch

    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.shape == b.shape and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return isinstance(b, (list, tuple)) and len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b))
    return a == b
