"""The loop's own duties: gradient clipping for every solver, parameter partitions."""

from __future__ import annotations

import pytorch_lightning as pl
import torch

from conftest import compose
from framework.partitions import decay_groups, hidden_matrices
from framework.runner import execute, prepare
from plugins.problems.transformer import GPT, GPTShape


def _first_step_change(run_dir, *overrides):
    r = prepare(compose("optimizer=sgd", "optimizer.momentum=0", "optimizer.lr=1.0", "model=logreg",
                        "trainer.max_steps=1", *overrides), run_dir)
    before = [p.detach().clone() for p in r.problem.model.parameters()]
    execute(r)
    after = list(r.problem.model.parameters())
    return torch.sqrt(sum(((a - b) ** 2).sum() for a, b in zip(after, before))).item()


def test_grad_clip_bounds_the_update(tmp_path):
    unclipped = _first_step_change(tmp_path / "a")
    clipped = _first_step_change(tmp_path / "b", "grad_clip=0.01")
    assert unclipped > 0.05
    assert abs(clipped - 0.01) < 1e-6  # SGD with lr 1: the step is the clipped gradient itself


def test_partitions_of_a_gpt():
    model = GPT(GPTShape(n_layer=2, n_head=2, n_embd=16, block_size=8, vocab_size=256))
    hidden, rest = hidden_matrices(model)
    ids = {id(p) for p in hidden}
    assert id(model.wte.weight) not in ids and id(model.backbone.wpe.weight) not in ids  # embeddings, tied head
    assert len(hidden) == 2 * 4  # qkv, attention proj, fc, mlp proj per block
    assert all(p.ndim == 2 for p in hidden) and all(p.ndim == 1 for p in rest if p is not model.wte.weight
                                                     and p is not model.backbone.wpe.weight)
    decay, no_decay = decay_groups(model, 0.1)
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    # nanoGPT's rule in the Sophia repository: the matmul weights decay; embeddings, biases and norms do not
    assert {id(p) for p in decay["params"]} == ids
    embeddings = {id(model.wte.weight), id(model.backbone.wpe.weight)}
    assert all(p.ndim < 2 or id(p) in embeddings for p in no_decay["params"]) and len(no_decay["params"]) > 2


def test_muon_partitions_hidden_matrices_from_embeddings_head_and_vectors(run_dir):
    r = prepare(compose("optimizer=muon", "model=mlp", "trainer.max_steps=1"), run_dir)
    optimizer = r.solver.setup(r.problem.model)
    muon_group, adamw_group = optimizer.param_groups
    layers = [m for m in r.problem.model if isinstance(m, torch.nn.Linear)]
    # the input layer (128 x 64) and the head go to AdamW, as the Muon README routes them
    assert muon_group["use_muon"] and [p.shape for p in muon_group["params"]] == [(128, 128)]
    head, first = layers[-1].weight, layers[0].weight
    assert any(p is head for p in adamw_group["params"]) and any(p is first for p in adamw_group["params"])
    assert all(p.ndim == 1 or p is head or p is first for p in adamw_group["params"])


def test_schedule_free_is_evaluated_at_its_average_and_trained_at_its_gradient_point(run_dir):
    r = prepare(compose("optimizer=schedulefree", "model=mlp", "trainer.max_steps=30",
                        "trainer.val_check_interval=10"), run_dir)
    modes = []

    class Spy(pl.Callback):
        def on_train_batch_start(self, trainer, module, *args):
            modes.append(("train", module.solver.optimizer.param_groups[0]["train_mode"]))

        def on_validation_batch_start(self, trainer, module, *args):
            if module.solver.optimizer is not None:
                modes.append(("val", module.solver.optimizer.param_groups[0]["train_mode"]))

    r.trainer.callbacks.append(Spy())
    execute(r)
    assert {m for m in modes if m[0] == "train"} == {("train", True)}
    assert [m for m in modes if m[0] == "val"] == [("val", False)] * 3  # at steps 10, 20 and 30


def test_the_plugin_api_module_exports_everything_lazily_and_versions_itself():
    """framework.api is the one import of a plugin author: every name resolves to the defining module's
    object, ``import framework.api`` alone loads no torch, and ``supports`` judges a declared version."""
    import subprocess
    import sys

    import framework.api as api

    assert set(api.__all__) == {"API_VERSION", "supports", *api._EXPORTS}
    for name in api.__all__:
        assert getattr(api, name) is not None, name
    from framework.solver import StepContext
    assert api.StepContext is StepContext
    code = "import sys, framework.api; from framework.api import hookimpl, yaml_entries; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"
    assert api.supports(api.API_VERSION) is None and api.supports("1.0") is None
    assert api.supports("2.0") == f"needs plugin API 2.0; this optbench provides {api.API_VERSION}"
    assert api.supports("x") == "OPTBENCH_API='x' is not a version 'major.minor'"


def test_plugin_mistakes_fail_the_run_with_one_line_naming_the_plugin(tmp_path):
    """A problem whose validation_metrics lacks its own metric fails at the first validation; a solver
    whose step steps its optimizer behind the loop's back fails at its first step (it would loop forever)."""
    import json

    r = prepare(compose("model=logreg", "trainer.max_steps=5"), tmp_path / "metric")
    r.problem.metric = "perplexity"
    try:
        execute(r)
    except Exception as error:  # noqa: BLE001 - the message is what is checked
        message = str(error)
    assert message == ("model='LogisticRegression': validation_metrics returns ['accuracy', 'loss'], without the "
                       "problem's metric 'perplexity'")
    assert json.loads((tmp_path / "metric" / "summary.json").read_text())["status"] == "failed"

    r = prepare(compose("model=logreg", "trainer.max_steps=5"), tmp_path / "step")

    def behind_the_loop(ctx):
        loss = ctx.forward_backward()
        r.solver.optimizer.step()
        return loss

    r.solver.step = behind_the_loop
    try:
        execute(r)
    except Exception as error:  # noqa: BLE001
        message = str(error)
    assert message.startswith("optimizer='AdamW': its step did not step the optimizer through the loop")


def test_list_check_catches_an_authors_mistakes_and_passes_the_builtins():
    """``optbench list --check`` imports each target: all built-ins pass; a missing class, a class of the
    wrong kind, a YAML key the constructor does not take and a constructor argument the YAML leaves out
    are each named on one line."""
    import json
    import subprocess
    import sys

    from framework.authoring.checks import check_entry
    from framework.entries import ConfigEntry

    done = subprocess.run([sys.executable, "-m", "framework", "list", "--check", "--json"], capture_output=True,
                          text=True)
    assert done.returncode == 0 and all(row["status"] == "ok" for row in json.loads(done.stdout))

    def problem(group: str, config: dict) -> str | None:
        return check_entry(group, ConfigEntry("x", config))

    assert problem("optimizer", {"_target_": "plugins.solvers.adamw.AdamWW"}).startswith(
        "_target_ plugins.solvers.adamw.AdamWW does not import")
    assert problem("optimizer", {"_target_": "plugins.problems.logreg.LogisticRegression"}) == (
        "_target_ plugins.problems.logreg.LogisticRegression is not a subclass of framework.solver.Solver")
    assert problem("optimizer", {"_target_": "torch.optim.SGD", "lr": 0.1}).endswith("framework.solver.Solver")
    assert problem("optimizer", {"_target_": "torch.optim.SGD", "_partial_": True, "lr": 0.1}) is None
    assert problem("optimizer", {"_target_": "plugins.solvers.sgd.SGD", "lr": 0.1, "momentun": 0.9,
                                 "weight_decay": 0.0, "nesterov": False, "search_space": {}}) == (
        "YAML keys momentun are not arguments of plugins.solvers.sgd.SGD; "
        "plugins.solvers.sgd.SGD needs momentum, which the YAML does not set")


def test_backward_goes_through_lightning_whenever_a_hook_asks_for_it(tmp_path):
    """The loop skips Lightning's backward wrappers only where they would do nothing: a callback that
    overrides ``on_after_backward`` gets every backward (the step's and SophiaG's sampled pass alike)."""

    class CountBackwards(pl.Callback):
        def __init__(self) -> None:
            self.calls = 0

        def on_after_backward(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
            self.calls += 1

    plain = prepare(compose("model=logreg", "trainer.max_steps=3"), tmp_path / "plain")
    execute(plain)
    assert plain.task.backward_directly  # one CPU, full precision, no backward hook: straight to torch

    hooked = prepare(compose("optimizer=sophia", "optimizer.k=2", "model=logreg", "trainer.max_steps=6"),
                     tmp_path / "hooked")
    counter = CountBackwards()
    hooked.trainer.callbacks.append(counter)
    summary = execute(hooked)
    assert not hooked.task.backward_directly
    assert counter.calls == summary["costs"]["backward"] == 6 + 2  # 6 steps, sampled passes after steps 2 and 4


def test_plain_attribute_writes_on_the_task_keep_module_semantics(tmp_path):
    """TrainingTask stores plain values directly (Lightning sets one around every hook call); parameters,
    submodules and buffers still register as nn.Module registers them."""
    task = prepare(compose("model=logreg", "trainer.max_steps=1"), tmp_path / "run").task
    count = len(list(task.parameters()))
    task._current_fx_name = "training_step"
    task.extra_layer = torch.nn.Linear(2, 2)
    task.scale = torch.nn.Parameter(torch.ones(()))
    task.register_buffer("seen", torch.zeros(3))
    task.seen = torch.ones(3)
    assert task._current_fx_name == "training_step" and "_current_fx_name" in vars(task)
    assert "extra_layer" in dict(task.named_children()) and len(list(task.parameters())) == count + 3
    assert torch.equal(task.state_dict()["seen"], torch.ones(3))
    task.extra_layer = None  # a submodule's name takes None as a module, not as a plain value
    assert task._modules["extra_layer"] is None and "extra_layer" not in vars(task)
