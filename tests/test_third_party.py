"""Third-party plugins installed for real (pip, entry points from package metadata) in a child venv."""

from __future__ import annotations

import json
import os
import site
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from conftest import ROOT, run_cli

FIXTURES = ROOT / "tests" / "fixtures"


def _site_dirs() -> list[str]:
    """Every directory this interpreter imports installed packages from (venv, conda or system; user site too)."""
    dirs = [*site.getsitepackages()]
    if site.ENABLE_USER_SITE:
        dirs.append(site.getusersitepackages())
    return [d for d in dirs if Path(d).is_dir()]


@pytest.fixture(scope="module")
def plugin_python(tmp_path_factory) -> str:
    """A venv that sees the packages of the interpreter running the tests, plus the two fixture plugins
    installed by pip.

    The child is not made with ``system_site_packages``, which would show it the *base* interpreter's
    packages (not this venv's, so neither torch nor optbench); a ``.pth`` line adds this interpreter's
    site directories instead, with their own ``.pth`` files (editable installs). The fixtures are built
    into wheels by this interpreter's setuptools and installed into the child from those wheels, so the
    child never builds anything.
    """
    python, _ = _child_venv(tmp_path_factory.mktemp("venv"),
                            "".join(f"import site; site.addsitedir({d!r})\n" for d in _site_dirs()))
    wheels = tmp_path_factory.mktemp("wheels")
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    for fixture in ("optbench-extra", "optbench-broken"):
        _check(subprocess.run([*pip, "wheel", "--quiet", "--no-deps", "--no-index", "--no-build-isolation",
                               "--wheel-dir", str(wheels), str(FIXTURES / fixture)], capture_output=True, text=True))
    _check(subprocess.run([*pip, "--python", python, "install", "--quiet", "--no-deps", "--no-index",
                           *map(str, sorted(wheels.glob("*.whl")))], capture_output=True, text=True))
    return python


def _child_venv(env_dir: Path, pth: str) -> tuple[str, str]:
    """A venv without pip in ``env_dir`` whose site directory holds ``pth`` as a ``.pth`` file: (its python,
    its site directory)."""
    venv.create(env_dir, system_site_packages=False, with_pip=False)
    python = str(env_dir / "bin" / "python")
    child_site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                check=True, capture_output=True, text=True).stdout.strip()
    (Path(child_site) / "_optbench_parent.pth").write_text(pth)
    return python, child_site


def _check(done: subprocess.CompletedProcess) -> None:
    assert done.returncode == 0, f"{' '.join(map(str, done.args))}\n{done.stdout[-2000:]}{done.stderr[-3000:]}"


def _listing(python: str, *flags: str) -> subprocess.CompletedProcess:
    return subprocess.run([python, "-m", "framework", "list", *flags], cwd=ROOT, capture_output=True, text=True)


def test_listing_shows_third_party_entries_and_broken_plugin(plugin_python):
    done = _listing(plugin_python, "--json")
    rows = {(r["group"], r["name"]): r for r in json.loads(done.stdout)}
    for key in [("optimizer", "signsgd"), ("model", "noisy-linear"), ("backend", "cpu-1thread")]:
        assert rows[key]["status"] == "ok" and rows[key]["package"] == "optbench-extra 0.1.0"
    assert rows[("optimizer", "sophia")]["package"].startswith("optbench ")
    broken = rows[("plugin", "broken")]
    assert broken["status"].startswith("broken: ImportError") and "not installed" in broken["status"]
    future = rows[("plugin", "future")]  # written against plugin API 2.0
    assert future["status"] == "broken: PluginError: optbench-broken: needs plugin API 2.0; this optbench provides 1.1"
    assert done.returncode == 1  # something is broken, the listing still printed everything


def test_a_name_clash_is_listed_refused_and_resolved_by_qualified_name(plugin_python, tmp_path):
    """optbench-extra ships an ``adamw`` too: neither replaces the other. The listing shows both with the
    clash; the plain name is refused with the candidates; a qualified name picks one, and the summary
    says which distribution's plugin ran."""
    rows = [r for r in json.loads(_listing(plugin_python, "--json").stdout) if (r["group"], r["name"]) ==
            ("optimizer", "adamw")]
    assert sorted(r["qualified"] for r in rows) == ["optbench-extra:adamw", "optbench:adamw"]
    assert all(r["status"].startswith("name clash with ") for r in rows)
    strict = ("from importlib.metadata import entry_points; from framework.registry import Registry\n"
              "Registry(strict=True, points=[e for e in entry_points(group='optbench.plugins')\n"
              "                              if e.name not in ('broken', 'future')])")
    clash = subprocess.run([plugin_python, "-c", strict], cwd=tmp_path, capture_output=True, text=True)
    assert clash.returncode == 1 and ("PluginError: optimizer=adamw is provided by optbench 0.1.0 and optbench-extra "
                                      "0.1.0; select one as optimizer=optbench:adamw or optimizer=optbench-extra:adamw"
                                      in clash.stderr), clash.stderr[-2000:]

    common = ["model=logreg", "logger=local", "backend=cpu", "trainer.max_steps=20", "trainer.val_check_interval=20"]
    refused = subprocess.run([plugin_python, "run.py", "optimizer=adamw", *common, f"hydra.run.dir={tmp_path / 'a'}"],
                             cwd=ROOT, capture_output=True, text=True)
    assert refused.returncode != 0 and not (tmp_path / "a").exists()
    assert ("error: optimizer='adamw': is provided by several installed packages; select one by its qualified "
            "name: optimizer=optbench-extra:adamw, optimizer=optbench:adamw") in refused.stderr
    for qualified, target in [("optbench-extra:adamw", "optbench_extra.solvers.SignSGD"),
                              ("optbench:adamw", "plugins.solvers.adamw.AdamW")]:
        out = tmp_path / qualified.replace(":", "-")
        done = subprocess.run([plugin_python, "run.py", f"optimizer={qualified}", *common, f"hydra.run.dir={out}"],
                              cwd=ROOT, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr[-2000:]
        plugin = json.loads((out / "summary.json").read_text())["versions"]["plugins"]["optimizer"]
        assert plugin == {"target": target, "distribution": qualified.split(":")[0], "version": "0.1.0"}


def test_a_solver_that_differentiates_by_itself_is_counted_truthfully(plugin_python, tmp_path):
    """``selfgrad`` runs the model and calls torch.autograd.grad twice a step (a graph-keeping gradient, then
    an HVP) and tells the loop nothing: all of it is counted."""
    out = tmp_path / "run"
    done = subprocess.run([plugin_python, "run.py", "optimizer=selfgrad", "model=logreg", "logger=local",
                           "backend=cpu", "trainer.max_steps=20", "trainer.val_check_interval=20",
                           f"hydra.run.dir={out}"], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    costs = json.loads((out / "summary.json").read_text())["costs"]
    assert costs["backward"] == costs["graph_backward"] == costs["hvp"] == 20
    # its forwards (the model called by the solver itself) too, with the batch's items and all the FLOPs:
    # 31 parameters, 64 samples a batch, 6N per sample for a forward+backward
    assert costs["forward"] == 20 and costs["items"] == 20 * 64
    assert costs["flops"] == pytest.approx(20 * 64 * 6 * 31 * (1 / 3 + 2 / 3 + 1))


def test_strict_listing_fails_on_the_broken_plugin(plugin_python):
    done = _listing(plugin_python, "--strict")
    assert done.returncode == 1
    assert "plugin 'broken' (optbench-broken 0.1.0): broken: ImportError" in done.stderr


def test_run_uses_third_party_solver_problem_and_backend(plugin_python, tmp_path):
    out = tmp_path / "run"
    done = subprocess.run(
        [plugin_python, "run.py", "optimizer=signsgd", "model=noisy-linear", "backend=cpu-1thread", "logger=local",
         "optimizer.lr=0.02", "trainer.max_steps=60", "trainer.val_check_interval=30", f"hydra.run.dir={out}"],
        cwd=ROOT, capture_output=True, text=True,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["names"] == {"optimizer": "signsgd", "model": "noisy-linear", "backend": "cpu-1thread",
                                "schedule": "constant"}
    assert summary["backend"].startswith("cpu-1thread")
    assert summary["metric"]["final"] < 0.1 * summary["metric"]["initial"]


def test_builtin_listing_without_extras_is_clean():
    done = run_cli("-m", "framework", "list", "--json")
    rows = json.loads(done.stdout)
    assert done.returncode == 0 and all(r["status"] == "ok" for r in rows)
    names = {(r["group"], r["name"]) for r in rows}
    expected = {("optimizer", n) for n in ["sgd", "adamw", "lbfgs", "sophia", "adahessian"]}
    expected |= {("model", n) for n in ["gpt2", "gpt2-nano", "logreg", "mlp"]}
    expected |= {("backend", n) for n in ["cpu", "cuda", "auto"]}
    assert expected <= names


def test_listing_does_not_import_torch_or_lightning():
    code = ("import sys, io, contextlib; from framework.__main__ import main\n"
            "with contextlib.redirect_stdout(io.StringIO()): main(['list'])\n"
            "print(sorted(m for m in ('torch', 'pytorch_lightning', 'lightning') if m in sys.modules))")
    done = run_cli("-c", code)
    assert done.stdout.strip() == "[]", done.stderr


def test_the_wheel_alone_runs_a_new_plugin_package_and_its_conformance_tests(tmp_path_factory):
    """The done-when of the plugin template, from the built wheel only (no checkout on the path): in a
    fresh venv that sees this interpreter's dependencies but not its optbench, ``optbench new plugin p``,
    ``pip install -e p``, ``optbench run optimizer=p-signum model=logreg``, and the generated tests pass."""
    root = tmp_path_factory.mktemp("wheel-only")
    env_dir, work = root / "venv", root / "work"
    work.mkdir()
    # the dependencies' directories as plain paths: their .pth files (this checkout's editable install) unread
    python, child_site = _child_venv(env_dir, "".join(f"{d}\n" for d in _site_dirs()))
    optbench = str(env_dir / "bin" / "optbench")
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    _check(subprocess.run([*pip, "wheel", "--quiet", "--no-deps", "--no-build-isolation", "--wheel-dir",
                           str(root / "dist"), str(ROOT)], capture_output=True, text=True))
    (wheel,) = (root / "dist").glob("optbench-*.whl")
    _check(subprocess.run([*pip, "--python", python, "install", "--quiet", "--no-deps", str(wheel)],
                          capture_output=True, text=True))
    where = subprocess.run([python, "-c", "import framework; print(framework.__file__)"], cwd=work,
                           capture_output=True, text=True).stdout
    assert where.startswith(child_site), where

    _check(subprocess.run([optbench, "new", "plugin", "p"], cwd=work, capture_output=True, text=True))
    _check(subprocess.run([*pip, "--python", python, "install", "--quiet", "--no-deps", "--no-build-isolation",
                           "-e", str(work / "p")], capture_output=True, text=True))
    out = work / "run"
    done = subprocess.run([optbench, "run", "optimizer=p-signum", "model=logreg", "trainer.max_steps=20",
                           "logger=local", f"hydra.run.dir={out}"], cwd=work, capture_output=True, text=True)
    _check(done)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["metric"]["final"] < summary["metric"]["initial"]
    assert summary["versions"]["plugins"]["optimizer"] == {"target": "p.solvers.Signum", "distribution": "p",
                                                           "version": "0.1.0"}
    tests = subprocess.run([python, "-m", "pytest", "-q", "-p", "no:cacheprovider"], cwd=work / "p",
                           capture_output=True, text=True, env={**os.environ, "WANDB_MODE": "offline"})
    assert tests.returncode == 0 and "3 passed" in tests.stdout, tests.stdout[-3000:]


def test_a_working_directory_with_its_own_plugins_and_framework_folders_changes_nothing(tmp_path):
    """A project folder holding ``plugins/`` and ``framework/`` packages of its own: ``optbench`` (and, for
    ``plugins/``, ``python -m framework``) still list and run the installed built-ins."""
    for name in ("plugins", "framework"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "__init__.py").write_text(f"raise RuntimeError('the local {name}/ was imported')\n")
    optbench = str(Path(sys.executable).parent / "optbench")
    listed = subprocess.run([optbench, "list", "--json"], cwd=tmp_path, capture_output=True, text=True)
    assert listed.returncode == 0 and all(r["status"] == "ok" for r in json.loads(listed.stdout)), listed.stderr
    done = subprocess.run([optbench, "run", "model=logreg", "logger=local", "trainer.max_steps=5",
                           f"hydra.run.dir={tmp_path / 'run'}"], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0 and (tmp_path / "run" / "summary.json").exists(), done.stderr[-2000:]
    (tmp_path / "framework" / "__init__.py").unlink()  # python -m framework runs the folder of that name
    (tmp_path / "framework").rmdir()
    listed = subprocess.run([sys.executable, "-m", "framework", "list", "--json"], cwd=tmp_path,
                            capture_output=True, text=True)
    assert listed.returncode == 0 and all(r["status"] == "ok" for r in json.loads(listed.stdout)), listed.stderr
