"""GPT-2 on byte tokens: the loss falls with AdamW and SophiaG; user text files; the 124M shape."""

from __future__ import annotations

import pytest

from conftest import compose, train
from framework.estimate import warn_if_slow
from framework.runner import build
from plugins.problems.transformer import GPT, GPTShape

NANO = ["model=gpt2-nano", "trainer.max_steps=60", "trainer.val_check_interval=60", "model.max_bytes=400000"]


@pytest.mark.parametrize("solver,lr", [("adamw", 3e-3), ("sophia", 1e-3)])
def test_nano_validation_loss_falls(run_dir, solver, lr):
    summary = train(run_dir, *NANO, f"optimizer={solver}", f"optimizer.lr={lr}")
    metric = summary["metric"]
    assert metric["initial"] > 5.0  # about ln(256) before training
    assert metric["final"] < metric["initial"] - 1.5, metric["history"]
    assert summary["items"] == {"unit": "tokens", "count": 60 * 16 * 64}
    if solver == "sophia":  # before steps 10, 20, ..., 50, on their batches (none after the last update)
        assert summary["costs"]["curvature"] == 5


def test_trains_on_user_text_files(run_dir, tmp_path):
    corpus = tmp_path / "text"
    corpus.mkdir()
    for i in range(3):
        (corpus / f"part{i}.txt").write_text("the quick brown fox jumps over the lazy dog. " * 400)
    summary = train(run_dir, *NANO, f"model.files=[{corpus}/*.txt]", "optimizer.lr=3e-3")
    # a repetitive text is learned far faster than source code
    assert summary["metric"]["final"] < 1.5


def test_gpt2_is_the_124m_shape():
    model = GPT(GPTShape(n_layer=12, n_head=12, n_embd=768, block_size=1024, vocab_size=50304))
    assert model.lm_head.weight is model.wte.weight
    assert 124_000_000 < sum(p.numel() for p in model.parameters()) < 125_000_000


def test_gpt2_on_cpu_warns_once_with_an_estimate():
    cfg = compose("model=gpt2", "model.max_bytes=300000")
    problem = build(cfg.model, "model")
    backend = build(cfg.backend, "backend").resolve()
    note = warn_if_slow(problem, backend, max_steps=cfg.trainer.max_steps, name="gpt2")
    assert note is not None and "124.4M parameters" in note and "model=gpt2-nano" in note
    small = build(compose("model=gpt2-nano", "model.max_bytes=300000").model, "model")
    assert warn_if_slow(small, backend, max_steps=500, name="gpt2-nano") is None
    long_run = warn_if_slow(small, backend, max_steps=10**6, name="gpt2-nano")
    assert long_run is not None and "use model=" not in long_run  # no advice to switch to itself
