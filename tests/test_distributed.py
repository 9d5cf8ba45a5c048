"""Data parallel: 2 CPU processes (gloo) train as one process does on the whole batch, for every solver."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from conftest import train

#: float64 runs of 10 steps, small enough that every solver's DDP and single-process runs take seconds
EXACT = ["backend.precision=64-true", "trainer.max_steps=10", "trainer.val_check_interval=5"]
MLP = ["model=mlp", "model.width=32"]
#: settings that make each solver do its special work within 10 steps (curvature passes, refreshes, line search)
SETTINGS = {
    "sophia": ["optimizer.k=2", "grad_clip=0.5"],  # clipping of the training and the sampled gradient too
    "sophiah": ["optimizer.k=2"],
    # SOAP's eigenbases of rank-deficient factors are made of rounding noise (issue 12's finding), so any two
    # computations of one gradient that round differently (1 and 2 processes) part by O(lr) on mlp/digits
    # (2.4e-2 after 10 steps): exactness holds where every factor's null space has at most one dimension
    "soap": ["model=mlp", "model.dataset=iris", "model.width=3", "model.depth=1", "optimizer.precondition_frequency=3"],
    "lbfgs": ["optimizer.max_iter=4"],
    "gauss-newton": [*MLP, "model.width=8", "optimizer.cg_iters=5"],
    # full batch of breast_cancer's 455 training rows: 227 and 228 per process
    "newton": ["model=logreg", "model.batch_size=null"],
}


def _solvers() -> list[str]:
    from framework.registry import Registry

    return sorted(row.name for row in Registry().listing() if row.group == "optimizer" and row.ok)


def _weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]


@pytest.mark.parametrize("solver", _solvers())
def test_two_processes_train_as_one_process_on_the_whole_batch(tmp_path, solver):
    special = SETTINGS.get(solver, [])
    settings = [f"optimizer={solver}", *EXACT, *(special if special[:1] and special[0].startswith("model=") else
                                                 [*MLP, *special])]
    single = train(tmp_path / "single", *settings)
    ddp = train(tmp_path / "ddp", *settings, "backend=ddp", "backend.devices=2")
    assert single["status"] == ddp["status"] == "completed", ddp.get("error")
    one, two = _weights(tmp_path / "single"), _weights(tmp_path / "ddp")
    gap = max((one[name] - two[name]).abs().max().item() for name in one)
    assert gap < 1e-10, f"{solver}: parameters differ by {gap:.3g} after 10 steps"
    # one result: global items, passes and FLOPs as the single process counts them, and the world size
    assert ddp["world_size"] == 2 and single["world_size"] == 1
    assert ddp["items"] == single["items"] and ddp["costs"] == pytest.approx(single["costs"])
    assert abs(ddp["metric"]["final"] - single["metric"]["final"]) < 1e-10
    rows = (tmp_path / "ddp" / "metrics.csv").read_text().splitlines()
    assert len(rows) == len((tmp_path / "single" / "metrics.csv").read_text().splitlines())


def test_the_processes_slices_make_up_the_single_process_batch():
    from framework.checkpoints.stream import step_stream
    from plugins.problems.mlp import MLPClassifier

    problem = MLPClassifier(dataset="digits", batch_size=64, width=8, depth=1, val_fraction=0.2, l2=0.0, target=None)
    whole = iter(step_stream(problem.train_loader(3), start=5, seed=3))
    parts = [iter(step_stream(problem.train_loader(3), start=5, seed=3, rank=r, world=3)) for r in range(3)]
    for _ in range(30):  # across an epoch boundary (22 batches an epoch)
        x, y = next(whole)
        pieces = [next(part) for part in parts]
        assert [len(p[1]) for p in pieces] == [21, 21, 22]
        assert torch.equal(torch.cat([p[0] for p in pieces]), x) and torch.equal(torch.cat([p[1] for p in pieces]), y)


def test_a_batch_smaller_than_the_processes_is_refused_in_one_line(tmp_path):
    from framework.errors import ConfigError

    with pytest.raises(ConfigError, match=r"model.batch_size.*fewer than the 2 processes"):
        train(tmp_path / "run", "model=quadratic", "backend=ddp")
    assert not (tmp_path / "run" / "summary.json").exists()


def test_summary_is_written_once(tmp_path):
    summary = json.loads(json.dumps(train(tmp_path / "run", "model=logreg", "backend=ddp", "trainer.max_steps=5")))
    assert summary["backend"].startswith("ddp (cpu x2")
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["checkpoints", "hparams.yaml", "metrics.csv",
                                                                        "summary.json"]


def test_a_signal_to_rank_0_stops_both_processes_and_the_resumed_run_equals_the_uninterrupted_one(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    from conftest import ROOT, run_cli

    args = ["optimizer=sophia", "optimizer.k=3", *MLP, "model.width=8", "backend=ddp", "backend.precision=64-true",
            "trainer.max_steps=400", "trainer.val_check_interval=50", "checkpoint.every_n_minutes=null",
            "logger=local", "trainer.enable_progress_bar=false", "trainer.enable_model_summary=false"]
    out = tmp_path / "resumed"
    child = subprocess.Popen([sys.executable, "run.py", *args, f"hydra.run.dir={out}"], cwd=ROOT,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline, metrics = time.monotonic() + 300, out / "metrics.csv"
        while time.monotonic() < deadline and not (metrics.exists() and len(metrics.read_text().splitlines()) > 50):
            time.sleep(0.05)  # training rows reach the file 100 at a time
        child.send_signal(signal.SIGTERM)  # to rank 0 only: the other process stops at the same step
        output, _ = child.communicate(timeout=120)
    finally:
        child.kill()
    assert child.returncode == 75, output[-3000:]
    stopped = json.loads((out / "summary.json").read_text())
    assert stopped["status"] == "interrupted" and 0 < stopped["steps"] < 400
    assert stopped["stopped"]["by"] == "SIGTERM"
    done = run_cli("run.py", f"resume={out}")
    assert done.returncode == 0, done.stderr[-3000:]
    whole = run_cli("run.py", *args, f"hydra.run.dir={tmp_path / 'whole'}")
    assert whole.returncode == 0, whole.stderr[-3000:]
    resumed, uninterrupted = (json.loads((d / "summary.json").read_text()) for d in (out, tmp_path / "whole"))
    assert resumed["resumes"][0]["from_step"] == stopped["steps"]
    assert resumed["costs"] == uninterrupted["costs"] and resumed["items"] == uninterrupted["items"]
    one, two = _weights(out), _weights(tmp_path / "whole")
    assert all(torch.equal(one[name], two[name]) for name in one)  # same world size: bitwise
    assert (out / "metrics.csv").read_bytes() == (tmp_path / "whole" / "metrics.csv").read_bytes()


def test_a_multirun_of_data_parallel_members_runs_each_on_two_processes(tmp_path):
    from conftest import run_cli

    done = run_cli("run.py", "-m", "optimizer=adamw,psgd", "model=logreg", "backend=ddp", "trainer.max_steps=10",
                   "logger=local", "trainer.enable_progress_bar=false", f"hydra.sweep.dir={tmp_path}")
    assert done.returncode == 0, done.stderr[-3000:]
    summaries = sorted(tmp_path.rglob("summary.json"))
    assert [p.parent.name for p in summaries] == ["0_adamw_logreg", "1_psgd_logreg"]
    for path in summaries:
        summary = json.loads(path.read_text())
        assert summary["status"] == "completed" and summary["world_size"] == 2
        assert summary["items"]["count"] == 10 * 64


@pytest.mark.parametrize("args, line", [
    (["backend=fsdp", "optimizer=shampoo"], "error: optimizer='shampoo': needs whole parameters (or second derivatives) "
     "and cannot run on backend=fsdp, which shards them: use backend=ddp"),
    (["backend=fsdp", "optimizer=adamw"], "error: backend='fsdp': needs 2 CUDA devices per node, 0 visible here "
     "(Lightning's FSDP strategy runs on GPUs only); backend=ddp runs on CPUs"),
    (["backend=ddp", "backend.devices=0"], "error: backend.devices=0: must be an integer >= 1"),
    (["backend=cuda", "backend.devices=2"], "error: backend.devices=2: must be 1: several GPUs train one run with "
     "backend=ddp backend.accelerator=gpu (or backend=fsdp)"),
    (["backend=ddp", "backend.num_nodes=2"], "error: backend.num_nodes=2: needs a launcher that starts the processes "
     "on every node: hydra/launcher=slurm with hydra.launcher.nodes and tasks_per_node, or torchrun"),
])
def test_backends_that_cannot_run_say_so_in_one_line_and_write_nothing(tmp_path, args, line):
    from conftest import run_cli

    if torch.cuda.is_available():
        pytest.skip("the refusals are those of a machine without CUDA")
    done = run_cli("run.py", *args, "model=logreg", "logger=local", f"hydra.run.dir={tmp_path / 'run'}")
    assert done.returncode == 2 and done.stderr.strip().splitlines() == [line]
    assert not (tmp_path / "run").exists()


def test_list_shows_the_backends_each_solver_runs_on_as_its_class_declares(tmp_path):
    from hydra.utils import get_object

    from conftest import run_cli
    from framework.solver import FactorySolver

    done = run_cli("-m", "framework", "list", "--json")
    rows = {row["name"]: row for row in json.loads(done.stdout) if row["group"] == "optimizer"}
    for name, row in rows.items():
        target = get_object(row["target"])
        torch_optimizer = issubclass(target, torch.optim.Optimizer)  # optimizer=external
        sharded = FactorySolver.runs_sharded if torch_optimizer else target.runs_sharded
        assert ("fsdp" in row["runs_on"]) == sharded, name
        assert {"cpu", "cuda", "ddp", "auto"} <= set(row["runs_on"]), name
    assert "fsdp" in rows["adamw"]["runs_on"] and "fsdp" not in rows["sophiah"]["runs_on"]


@pytest.mark.parametrize("solver", ["sophia", "psgd"])
def test_token_problem_with_sampled_targets_and_self_differentiation_is_exact(tmp_path, solver):
    """gpt2-nano: the sampled targets are drawn per token (rows per item = sequence length) and cut by process;
    PSGD differentiates by itself."""
    settings = [f"optimizer={solver}", "model=gpt2-nano", "backend.precision=64-true", "trainer.max_steps=6",
                "trainer.val_check_interval=3", "optimizer.k=2" if solver == "sophia" else "optimizer.update_every=1"]
    single = train(tmp_path / "single", *settings)
    ddp = train(tmp_path / "ddp", *settings, "backend=ddp")
    one, two = _weights(tmp_path / "single"), _weights(tmp_path / "ddp")
    assert max((one[name] - two[name]).abs().max().item() for name in one) < 1e-10
    assert ddp["items"] == single["items"] == {"unit": "tokens", "count": 6 * 1024}
    counter = "curvature" if solver == "sophia" else "hvp"
    assert ddp["costs"][counter] == single["costs"][counter] > 0


def test_torchrun_started_processes_train_one_run(tmp_path):
    """torchrun starts both processes (RANK, WORLD_SIZE in the environment): the run starts none itself."""
    import subprocess
    import sys

    from conftest import ROOT

    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node=2", "run.py", "backend=ddp",
                           "model=logreg", "trainer.max_steps=10", "logger=local", "trainer.enable_progress_bar=false",
                           f"hydra.run.dir={tmp_path / 'run'}"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["world_size"] == 2 and summary["items"]["count"] == 640


def test_a_trainer_built_without_its_processes_is_refused_instead_of_re_running_the_command(tmp_path):
    """prepare() alone (no runner.run, no srun/torchrun): Lightning's launcher would start this command again."""
    from conftest import compose
    from framework.errors import ConfigError
    from framework.runner import prepare

    with pytest.raises(ConfigError, match="its processes are started by framework.runner.run"):
        prepare(compose("backend=ddp", "model=logreg"), tmp_path / "run")


def test_a_signal_at_any_moment_ends_both_processes_together(tmp_path):
    """SIGTERM to rank 0 as soon as the run has written anything (during the first validation or the first
    steps): the processes agree before each step, so neither waits for the other in a collective."""
    import signal
    import subprocess
    import sys
    import time

    from conftest import ROOT

    out = tmp_path / "run"
    child = subprocess.Popen([sys.executable, "run.py", "model=logreg", "backend=ddp", "trainer.max_steps=100000",
                              "logger=local", "trainer.enable_progress_bar=false", f"hydra.run.dir={out}"],
                             cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not (out / "metrics.csv").exists():
            time.sleep(0.01)
        child.send_signal(signal.SIGTERM)
        assert child.wait(timeout=120) == 75
    finally:
        child.kill()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "interrupted" and summary["steps"] < 100000
