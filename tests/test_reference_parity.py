"""Parity with the authors' own code, installed from PyPI (the ``parity`` extra, versions pinned).

Each test runs this project's solver through the real loop (Lightning, the StepContext, the framework's
clipping) and the reference optimizer through the reference's own training-loop convention, from the same
initial model, on the same batches and the same random stream, in float64, and compares the parameters.
"""

from __future__ import annotations

import json

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


def _twins(tmp_path, overrides: list[str]):
    """Our run, executed, and a second copy of it prepared (same seed: same model, batches and random
    stream) for the reference to train; returns (ours, reference, the reference's batches in float64)."""
    common = ["backend=cpu", "backend.precision=64-true", f"trainer.max_steps={STEPS}",
              f"trainer.val_check_interval={STEPS}", "checkpoint.enabled=false"]
    ours = prepare(compose(*common, *overrides), tmp_path / "ours")
    reference = prepare(compose(*common, *overrides), tmp_path / "reference")
    start = [p.detach().clone() for p in reference.problem.model.parameters()]
    assert all(torch.equal(a, b) for a, b in zip(start, ours.problem.model.parameters()))
    random_state = torch.random.get_rng_state()  # where both runs start drawing (sampled targets)
    summary = execute(ours)
    torch.random.set_rng_state(random_state)
    assert summary["status"] == "completed"
    ours.start = start
    precision = reference.trainer.precision_plugin  # float64 inputs, as Lightning gives our loop
    reference.problem.model.train()
    return ours, reference, (precision.convert_input(b) for b in reference.train_batches)


def _gap(ours, reference) -> float:
    """The largest parameter difference of the two runs, after checking that they went somewhere."""
    model = reference.problem.model
    assert max((a - b).abs().max().item() for a, b in zip(model.parameters(), ours.start)) > 1e-3
    return max((a - b).abs().max().item() for a, b in zip(model.parameters(), ours.problem.model.parameters()))


def _sophia_gap(tmp_path, problem: str, grad_clip: float | None, *settings: str) -> float:
    """The largest parameter difference between our SophiaG run and the official one after STEPS steps.

    Reference: ``sophia-opt`` 0.2.2 (the official SophiaG class, packaged) driven as ``train_sophiag.py``
    drives it: step with ``bs`` = tokens (or samples) per batch, then fetch the next batch, and after every
    k-th step a sampled-target pass on that next batch, clipped with grad_clip."""
    sophia_opt = pytest.importorskip("sophia_opt", reason="pip install 'optbench[parity]'")
    ours, reference, batches = _twins(tmp_path, [*settings, "optimizer=sophia", f"optimizer.k={K}",
                                                 "optimizer.lr=0.01", "optimizer.rho=0.04", *PROBLEMS[problem],
                                                 *([f"grad_clip={grad_clip}"] if grad_clip else [])])
    model, task, solver = reference.problem.model, reference.problem, ours.solver
    optimizer = sophia_opt.SophiaG(_official_groups(model, solver.weight_decay), lr=solver.lr, betas=solver.betas,
                                   rho=solver.rho, weight_decay=solver.weight_decay)
    batch = next(batches)
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
    return _gap(ours, reference)


@pytest.mark.parametrize("grad_clip", [None, 0.05])
@pytest.mark.parametrize("problem", sorted(PROBLEMS))
def test_sophiag_matches_the_official_sophiag_and_its_training_loop(tmp_path, problem, grad_clip):
    assert _sophia_gap(tmp_path, problem, grad_clip) < 1e-10


@pytest.mark.parametrize("setting", ["optimizer.hessian_batch=same", "optimizer.clip_hessian_gradient=false"])
def test_sophiag_departs_from_the_official_loop_where_asked(tmp_path, setting):
    """The comparison sees loop-level differences: either option away from the official loop shows."""
    assert _sophia_gap(tmp_path, "cnn", 0.05, setting) > 1e-3


def _muon_routing(model: torch.nn.Module) -> tuple[list, list]:
    """The Muon README's routing, written out: hidden matrices and conv kernels to Muon; the input layer,
    the output head (the last layer), embeddings, gains and biases to AdamW."""
    weights = [m.weight for m in model.modules() if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d))]
    hidden = {id(p) for p in weights[1:-1]}
    return ([p for p in model.parameters() if id(p) in hidden],
            [p for p in model.parameters() if id(p) not in hidden])


@pytest.mark.parametrize("grad_clip", [None, 0.5])
@pytest.mark.parametrize("problem", ["mlp"])  # muon-optimizer 0.1.0 cannot step a conv kernel (see below)
def test_muon_matches_keller_jordans_muon(tmp_path, problem, grad_clip):
    """Reference: ``muon-optimizer`` 0.1.0 (Keller Jordan's ``muon`` module), ``SingleDeviceMuonWithAuxAdam``
    in a plain loop (backward, clip, step, zero). The reference iterates Newton-Schulz in bfloat16 always,
    so ours runs with ``ns_dtype=bfloat16`` here; everything else is float64. (Hidden layers here have
    rows <= columns, where the reference's bf16 rescaling by sqrt(rows/cols) is exact.) Convolutions are
    left out: the packaged reference flattens a 4-D kernel's update to 2-D and adds it to the 4-D kernel,
    which raises a shape error; ours reshapes it back, as the README describes."""
    muon = pytest.importorskip("muon", reason="pip install 'optbench[parity]'")
    settings = ["optimizer=muon", "optimizer.ns_dtype=bfloat16", "optimizer.lr=0.02", "optimizer.adamw_lr=0.003",
                "optimizer.weight_decay=0.01", "optimizer.adamw_weight_decay=0.01", f"model={problem}",
                *([f"grad_clip={grad_clip}"] if grad_clip else [])]
    ours, reference, batches = _twins(tmp_path, settings)
    model, solver = reference.problem.model, ours.solver
    hidden, rest = _muon_routing(model)
    assert [p.shape for p in hidden] == [p.shape for p in solver.optimizer.param_groups[0]["params"]]
    optimizer = muon.SingleDeviceMuonWithAuxAdam([
        {"params": hidden, "use_muon": True, "lr": solver.lr, "momentum": solver.momentum,
         "weight_decay": solver.weight_decay},
        {"params": rest, "use_muon": False, "lr": solver.adamw_lr, "betas": solver.adamw_betas,
         "eps": solver.adamw_eps, "weight_decay": solver.adamw_weight_decay}])
    _plain_loop(reference, batches, optimizer, grad_clip)
    assert _gap(ours, reference) < 1e-10


def _plain_loop(reference, batches, optimizer: torch.optim.Optimizer, grad_clip: float | None) -> None:
    """The usual training loop: forward, backward, clip, step, zero."""
    model, task = reference.problem.model, reference.problem
    for _ in range(STEPS):
        task.forward(model, next(batches)).loss.backward()
        if grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)


@pytest.mark.parametrize("grad_clip", [None, 0.5])
def test_lion_matches_lucidrains_lion(tmp_path, grad_clip):
    """Reference: ``lion-pytorch`` 0.2.5 (the implementation the Lion paper's authors point to for PyTorch),
    given the same parameter groups (weight decay on weights, not on biases: the loop's grouping)."""
    lion_pytorch = pytest.importorskip("lion_pytorch", reason="pip install 'optbench[parity]'")
    from framework.partitions import decay_groups

    ours, reference, batches = _twins(tmp_path, ["optimizer=lion", "optimizer.lr=0.001", "optimizer.weight_decay=0.1",
                                                 *PROBLEMS["cnn"], *([f"grad_clip={grad_clip}"] if grad_clip else [])])
    solver = ours.solver
    optimizer = lion_pytorch.Lion(decay_groups(reference.problem.model, solver.weight_decay), lr=solver.lr,
                                  betas=solver.betas, weight_decay=solver.weight_decay)
    _plain_loop(reference, batches, optimizer, grad_clip)
    assert _gap(ours, reference) < 1e-10


@pytest.mark.parametrize("grad_clip", [None, 0.5])
def test_schedule_free_matches_the_authors_schedulefree(tmp_path, grad_clip):
    """Reference: ``schedulefree`` 1.4.1 (Defazio et al.'s own package), ``AdamWScheduleFree`` in train mode
    through the loop, as its README asks (our loop also switches it to eval mode for each validation)."""
    schedulefree = pytest.importorskip("schedulefree")
    from framework.partitions import decay_groups

    ours, reference, batches = _twins(tmp_path, ["optimizer=schedulefree", "optimizer.lr=0.01",
                                                 "optimizer.weight_decay=0.01", "optimizer.warmup_steps=5",
                                                 *PROBLEMS["cnn"], *([f"grad_clip={grad_clip}"] if grad_clip else [])])
    solver = ours.solver
    optimizer = schedulefree.AdamWScheduleFree(decay_groups(reference.problem.model, solver.weight_decay),
                                               lr=solver.lr, betas=solver.betas, eps=solver.eps,
                                               warmup_steps=solver.warmup_steps)
    optimizer.train()
    _plain_loop(reference, batches, optimizer, grad_clip)
    assert _gap(ours, reference) < 1e-10


PSGD_CASES = [("cnn", "hessian", None, 1.0), ("cnn", "hessian", 0.5, 1.0), ("cnn", "hessian", None, 0.5),
              ("cnn", "gradient", None, 1.0), ("cnn", "gradient", 0.5, 0.5), ("gpt2-nano", "hessian", None, 1.0)]


@pytest.mark.parametrize("problem,fit,max_update_norm,probability", PSGD_CASES)
def test_psgd_kron_matches_xi_lin_lis_kron(tmp_path, problem, fit, max_update_norm, probability):
    """Reference: ``psgd-torch`` 0.6.1 (Xi-Lin Li's ``psgd_torch.Kron``), stepped with a closure that returns
    the loss, as its README does; both types (Newton: HVPs, whitening: gradients), with and without its
    clipping of the preconditioned step (``grad_clip_max_norm``: our ``max_update_norm``; the loop's
    ``grad_clip`` does not apply to a solver that differentiates by itself), fitting on every step or on
a random half of them (``preconditioner_update_probability``). Conv kernels get four
    factors, embeddings (longer than 10x their width) a diagonal one. The reference takes its parameters
    in our optimizer's order, so that both draw the probe vectors in the same order."""
    psgd_torch = pytest.importorskip("psgd_torch", reason="pip install 'optbench[parity]'")
    from torch.nn.attention import SDPBackend, sdpa_kernel

    from framework.partitions import decay_groups

    ours, reference, batches = _twins(tmp_path, [
        "optimizer=psgd" if fit == "hessian" else "optimizer=psgd-whiten", "optimizer.lr=0.02",
        "optimizer.momentum=0.9", f"optimizer.max_update_norm={max_update_norm or 'null'}",
        f"optimizer.update_probability={probability}", *PROBLEMS[problem]])
    model, task, solver = reference.problem.model, reference.problem, ours.solver
    params = [p for group in decay_groups(model, solver.weight_decay) for p in group["params"]]
    optimizer = psgd_torch.Kron(params, preconditioner_init_scale=solver.init_scale, lr_params=solver.lr,
                                lr_preconditioner=solver.lr_preconditioner, momentum=solver.momentum,
                                grad_clip_max_norm=max_update_norm, preconditioner_update_probability=probability,
                                preconditioner_type="Newton" if fit == "hessian" else "whitening")
    with sdpa_kernel([SDPBackend.MATH]):  # attention with a second derivative, as our loop selects
        for _ in range(STEPS):
            batch = next(batches)
            optimizer.step(lambda: task.forward(model, batch).loss)
    assert _gap(ours, reference) < 1e-10
    if fit == "hessian":  # one HVP per fit: every step, or the drawn ones
        hvps = json.loads((tmp_path / "ours" / "summary.json").read_text())["costs"]["hvp"]
        assert hvps == STEPS if probability == 1 else 1 < hvps < STEPS


@pytest.mark.parametrize("problem,grad_clip", [("gpt2-nano", None), ("cnn", None), ("cnn", 0.5)])
def test_adahessian_matches_pytorch_optimizers_adahessian(tmp_path, problem, grad_clip):
    """No official AdaHessian package exists (the authors' code is a repository, not on PyPI); the reference
    is ``pytorch-optimizer`` 4.1.0's port, stepped as its docstring says: ``backward(create_graph=True)``,
    clipping, ``step()``. The port estimates ``z * Hz`` per entry where the authors average a conv kernel's
    window, so on ``cnn`` ours runs with ``spatial_averaging=false``; the averaging itself is checked
    against the paper's formula in tests/test_parity.py."""
    pytorch_optimizer = pytest.importorskip("pytorch_optimizer", reason="pip install 'optbench[parity]'")
    ours, reference, batches = _twins(tmp_path, [
        "optimizer=adahessian", "optimizer.lr=0.01", "optimizer.weight_decay=0.01", *PROBLEMS[problem],
        *(["optimizer.spatial_averaging=false"] if problem == "cnn" else []),
        *([f"grad_clip={grad_clip}"] if grad_clip else [])])
    model, task, solver = reference.problem.model, reference.problem, ours.solver
    optimizer = pytorch_optimizer.AdaHessian(model.parameters(), lr=solver.lr, betas=solver.betas, eps=solver.eps,
                                             weight_decay=solver.weight_decay, hessian_power=solver.hessian_power,
                                             update_period=solver.k, foreach=False)
    from torch.nn.attention import SDPBackend, sdpa_kernel

    with sdpa_kernel([SDPBackend.MATH]):  # attention with a second derivative, as our loop selects
        for _ in range(STEPS):
            task.forward(model, next(batches)).loss.backward(create_graph=True)
            if grad_clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
    assert _gap(ours, reference) < 1e-10


class _Float32As64:
    """``torch`` as seen by a module, with ``torch.float32`` meaning float64: turns a float32 round trip in
    that module into a no-op and leaves everything else as it is."""

    float32 = torch.float64

    def __getattr__(self, name: str):
        return getattr(torch, name)


@pytest.mark.parametrize("problem,grad_clip", [("gpt2-nano", None), ("cnn", None), ("cnn", 0.5)])
def test_soap_matches_pytorch_optimizers_soap(tmp_path, monkeypatch, problem, grad_clip):
    """No official SOAP package exists (the authors' code is a repository); the reference is
    ``pytorch-optimizer`` 4.1.0's port of it, in a plain loop, bases refreshed every 3 steps. The port (as
    the authors' code) runs the refresh's QR decomposition in float32 whatever the parameters' dtype; that
    one round trip is made float64 here, because Adam's normalization in the rotated basis magnifies its
    1e-7 perturbation of the basis in directions where the gradient is tiny (as shipped, the runs are
    5e-3 apart after 25 steps at lr 3e-3, see benchmarks/RESULTS.md)."""
    pytorch_optimizer = pytest.importorskip("pytorch_optimizer", reason="pip install 'optbench[parity]'")
    from pytorch_optimizer.optimizer import soap

    from framework.partitions import decay_groups

    monkeypatch.setattr(soap, "torch", _Float32As64())
    ours, reference, batches = _twins(tmp_path, ["optimizer=soap", "optimizer.weight_decay=0.01",
                                                 "optimizer.precondition_frequency=3", *PROBLEMS[problem],
                                                 *([f"grad_clip={grad_clip}"] if grad_clip else [])])
    solver = ours.solver
    optimizer = pytorch_optimizer.SOAP(decay_groups(reference.problem.model, solver.weight_decay), lr=solver.lr,
                                       betas=solver.betas, shampoo_beta=solver.shampoo_beta, eps=solver.eps,
                                       weight_decay=solver.weight_decay,
                                       precondition_frequency=solver.precondition_frequency,
                                       max_precondition_dim=solver.max_dim)
    _plain_loop(reference, batches, optimizer, grad_clip)
    assert _gap(ours, reference) < 1e-10
