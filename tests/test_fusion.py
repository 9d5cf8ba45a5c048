"""Fused steps (several optimizer steps in one Lightning batch) and the sweeper that composes each member once:
what makes small problems and big sweeps cheap changes nothing a run writes."""

from __future__ import annotations

import json

import pytest
from hydra.core.global_hydra import GlobalHydra
from hydra.types import HydraContext

from conftest import compose
from framework.errors import ConfigError
from framework.runner import execute, prepare
from test_resume import assert_same_run, stopped_and_resumed

SHORT = ["model=mlp", "trainer.max_steps=47", "trainer.val_check_interval=20", "checkpoint.every_n_minutes=null"]


def _batches(run) -> int:
    """Training batches Lightning's loop ran."""
    return run.trainer.fit_loop.epoch_loop.batch_progress.total.completed


def test_fused_run_writes_what_the_unfused_run_writes(tmp_path):
    """auto fuses 10 steps of the mlp (its step is ~1e7 FLOPs) and cuts the last group at max_steps: same
    parameters, metrics.csv byte for byte (each step's row, validations at steps 20 and 40), same summary."""
    overrides = ["optimizer=sophia", "optimizer.k=3", *SHORT]  # curvature every 3 steps: off the group edges
    single = prepare(compose(*overrides, "fuse_steps=1"), tmp_path / "single")  # seeds the global generator
    assert execute(single)["status"] == "completed"
    fused = prepare(compose(*overrides, "fuse_steps=auto"), tmp_path / "fused")
    assert execute(fused)["status"] == "completed"
    assert (single.task.fused_steps, fused.task.fused_steps) == (1, 10)
    assert (_batches(single), _batches(fused)) == (47, 5)
    assert fused.task.global_step == 47 and fused.task.totals.curvature == single.task.totals.curvature == 15
    for summary in (tmp_path / "single" / "summary.json", tmp_path / "fused" / "summary.json"):  # the one difference
        summary.write_text(json.dumps({**json.loads(summary.read_text()), "config": None}))
    assert_same_run(tmp_path / "single", single, tmp_path / "fused", fused)


def test_fused_run_stopped_and_resumed_is_bitwise_the_uninterrupted_one(tmp_path):
    """Stop signals are answered between two groups; a resumed run keeps its groups (and so its validations)."""
    overrides = ["optimizer=sophia", "optimizer.k=3", "model=mlp", "model.width=8", "trainer.max_steps=25",
                 "trainer.val_check_interval=10", "checkpoint.every_n_minutes=null", "fuse_steps=5"]
    whole = prepare(compose(*overrides), tmp_path / "whole")
    execute(whole)
    resumed = stopped_and_resumed(tmp_path / "resumed", overrides, [10, 15])
    assert resumed.task.fused_steps == 5
    assert_same_run(tmp_path / "whole", whole, tmp_path / "resumed", resumed)


def test_auto_fuses_only_small_steps_and_divides_the_intervals(tmp_path):
    def fused(*overrides: str) -> int:
        return prepare(compose(*overrides), tmp_path / "unused").task.fused_steps

    assert fused("model=quadratic") == 10  # val_check_interval 100
    assert fused("model=quadratic", "trainer.val_check_interval=25", "checkpoint.every_n_steps=15") == 5
    assert fused("model=quadratic", "trainer.val_check_interval=7") == 7
    assert fused("model=quadratic", "trainer.val_check_interval=11") == 1
    assert fused("model=gpt2-nano") == 1  # a step of ~5e9 FLOPs: Lightning's loop is noise there


@pytest.mark.parametrize(("value", "allowed"), [
    ("3", "must divide trainer.val_check_interval (100)"),
    ("0", "must be auto or an integer >= 1"),
    ("often", "must be auto or an integer >= 1"),
])
def test_bad_fuse_steps_is_one_line_naming_it(tmp_path, value, allowed):
    with pytest.raises(ConfigError) as error:
        prepare(compose("model=quadratic", f"fuse_steps={value}"), tmp_path / "run")
    message = str(error.value)
    assert "fuse_steps" in message and allowed in message and "\n" not in message
    assert not (tmp_path / "run").exists()


class _CountingLoader:
    """Hydra's own config loader, counting the member compositions asked of it."""

    def __init__(self, loader) -> None:
        self.loader, self.compositions = loader, 0

    def __getattr__(self, name: str):
        return getattr(self.loader, name)

    def load_sweep_config(self, master_config, sweep_overrides):
        self.compositions += 1
        return self.loader.load_sweep_config(master_config, sweep_overrides)


def _grid_sweep(tmp_path, ran: list, *arguments: str) -> _CountingLoader:
    """optbench's default sweeper as its composed config sets it up, with Hydra's basic launcher in this
    process, swept over ``arguments``; each member appends its learning rate to ``ran``."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra._internal.callbacks import Callbacks
    from hydra.core.plugins import Plugins

    from framework.app import CONFIG_DIR
    from framework.configs import register_configs

    register_configs()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3", job_name="run"):
        cfg = hydra_compose("config", overrides=[f"hydra.sweep.dir={tmp_path}"], return_hydra_config=True)
        assert cfg.hydra.sweeper._target_.endswith("ComposeOnceSweeper")
        loader = _CountingLoader(GlobalHydra.instance().config_loader())
        sweeper = Plugins.instance().instantiate_sweeper(
            config=cfg, hydra_context=HydraContext(loader, Callbacks()),
            task_function=lambda member: ran.append(member.optimizer.lr))
        sweeper.sweep(arguments=list(arguments))
    return loader


def test_default_sweeper_composes_each_member_once_and_still_checks_all_before_the_first(tmp_path):
    ran: list = []
    loader = _grid_sweep(tmp_path / "good", ran, "optimizer.lr=0.1,0.01,0.001")
    assert ran == [0.1, 0.01, 0.001]
    assert loader.compositions == 3  # Hydra's basic sweeper: 6 (a check of the batch, then the launcher's)
    ran.clear()
    with pytest.raises(Exception, match="nosuch"):
        _grid_sweep(tmp_path / "typo", ran, "optimizer.lr=0.1,0.01", "model=mlp,nosuch")
    assert ran == []  # the bad member was found before the first member ran
