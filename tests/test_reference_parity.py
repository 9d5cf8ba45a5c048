"""Parity with the authors' own code, installed from PyPI (the ``parity`` extra, versions pinned).

Each test runs this project's solver through the real loop (Lightning, the StepContext, the framework's
clipping) and the reference optimizer through the reference's own training-loop convention, from the same
initial model, on the same batches and the same random stream, in float64, and compares the parameters.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from conftest import compose
from framework.runner import execute, prepare

STEPS, K = 25, 3
PROBLEMS = {  # embeddings, linear layers and norms; convolutions and linear layers
    "gpt2-nano": ["model=gpt2-nano", "model.n_layer=1", "model.n_head=2", "model.n_embd=16", "model.block_size=16",
                  "model.batch_size=4", "model.max_bytes=200000"],
    "cnn": ["model=cnn", "model.batch_size=32"],
}


def _official_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """nanoGPT's configure_optimizers as the Sophia repository's model.py has it: weights of Linear (and,
    which nanoGPT has none of, Conv) modules decay; Embedding and LayerNorm parameters, biases and the
    output head tied to the embedding do not."""
    decay, embeddings, seen = set(), set(), set()
    for module in model.modules():
        for name, p in module.named_parameters(recurse=False):
            if name == "weight" and isinstance(module, (torch.nn.Linear, torch.nn.Conv1d, torch.nn.Conv2d)):
                decay.add(id(p))
            if isinstance(module, torch.nn.Embedding):
                embeddings.add(id(p))
    decay -= embeddings  # nanoGPT: decay.remove('lm_head.weight'), the head tied to the token embedding
    params = [p for p in model.parameters() if not (id(p) in seen or seen.add(id(p)))]
    return [{"params": [p for p in params if id(p) in decay], "weight_decay": weight_decay},
            {"params": [p for p in params if id(p) not in decay], "weight_decay": 0.0}]


def _sophia_gap(tmp_path, problem: str, grad_clip: float | None, *settings: str) -> float:
    """The largest parameter difference between our SophiaG run and the official one after STEPS steps.

    Reference: ``sophia-opt`` 0.2.2 (the official SophiaG class, packaged) driven as ``train_sophiag.py``
    drives it: step with ``bs`` = tokens (or samples) per batch, then fetch the next batch, and after every
    k-th step a sampled-target pass on that next batch, clipped with grad_clip."""
    sophia_opt = pytest.importorskip("sophia_opt", reason="pip install 'optbench[parity]'")
    overrides = [*settings, "optimizer=sophia", f"optimizer.k={K}", "optimizer.lr=0.01", "optimizer.rho=0.04",
                 "backend=cpu", "backend.precision=64-true", f"trainer.max_steps={STEPS}",
                 f"trainer.val_check_interval={STEPS}", "checkpoint.enabled=false", *PROBLEMS[problem],
                 *([f"grad_clip={grad_clip}"] if grad_clip else [])]
    ours = prepare(compose(*overrides), tmp_path / "ours")
    reference = prepare(compose(*overrides), tmp_path / "reference")  # same seed: same model, batches, RNG
    model, task = reference.problem.model, reference.problem
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), ours.problem.model.parameters()))
    random_state = torch.random.get_rng_state()  # where both runs start drawing (the sampled targets)
    summary = execute(ours)
    torch.random.set_rng_state(random_state)
    assert summary["status"] == "completed" and summary["costs"]["curvature"] in ((STEPS - 1) // K, STEPS // K)

    solver = ours.solver
    optimizer = sophia_opt.SophiaG(_official_groups(model, solver.weight_decay), lr=solver.lr, betas=solver.betas,
                                   rho=solver.rho, weight_decay=solver.weight_decay)
    precision = reference.trainer.precision_plugin  # float64 inputs, as Lightning gives our loop
    batches = (precision.convert_input(b) for b in reference.train_batches)
    batch = next(batches)
    model.train()
    for iter_num in range(STEPS):
        out = task.forward(model, batch)
        out.loss.backward()
        if grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        optimizer.step(bs=out.items)
        optimizer.zero_grad(set_to_none=True)
        batch = next(batches)
        if iter_num % K == K - 1:
            logits = task.forward(model, batch).outputs
            logits = logits.reshape(-1, logits.size(-1))
            samples = torch.distributions.Categorical(logits=logits).sample()
            F.cross_entropy(logits, samples).backward()
            if grad_clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            optimizer.update_hessian()
            optimizer.zero_grad(set_to_none=True)

    start = prepare(compose(*overrides), tmp_path / "start").problem.model
    travelled = max((a - b).abs().max().item() for a, b in zip(model.parameters(), start.parameters()))
    assert travelled > 1e-3  # the runs went somewhere
    return max((a - b).abs().max().item() for a, b in zip(model.parameters(), ours.problem.model.parameters()))


@pytest.mark.parametrize("grad_clip", [None, 0.05])
@pytest.mark.parametrize("problem", sorted(PROBLEMS))
def test_sophiag_matches_the_official_sophiag_and_its_training_loop(tmp_path, problem, grad_clip):
    assert _sophia_gap(tmp_path, problem, grad_clip) < 1e-10


@pytest.mark.parametrize("setting", ["optimizer.hessian_batch=same", "optimizer.clip_hessian_gradient=false"])
def test_sophiag_departs_from_the_official_loop_where_asked(tmp_path, setting):
    """The comparison sees loop-level differences: either option away from the official loop shows."""
    assert _sophia_gap(tmp_path, "cnn", 0.05, setting) > 1e-3
