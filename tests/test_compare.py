"""``optbench compare`` and ``optbench report`` on a real sweep: 3 solvers x 3 seeds on logreg."""

from __future__ import annotations

import csv
import json
import math
import shutil
import statistics
import subprocess
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import t

from conftest import QUIET, run_cli
from wandb_records import read_run

SOLVERS = ("sgd", "adamw", "sophia")


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("compare") / "sweep"
    done = run_cli("run.py", "-m", "optimizer=sgd,adamw,sophia", "seed=0,1,2", "model=logreg", *QUIET,
                   "trainer.max_steps=150", "trainer.val_check_interval=25", f"hydra.sweep.dir={folder}")
    assert done.returncode == 0, done.stderr[-3000:]
    return folder


def _summaries(sweep: Path, solver: str) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(sweep.glob(f"*_{solver}_logreg/summary.json"))]


def _optbench(*args: str) -> subprocess.CompletedProcess:
    return run_cli("-m", "framework", *args, env={"COLUMNS": "220"})  # a wide terminal: rows not wrapped


def test_compare_aggregates_seeds_with_a_t_interval_and_time_to_target(sweep):
    done = _optbench("compare", str(sweep), "--format", "json")
    assert done.returncode == 0, done.stderr
    table = json.loads(done.stdout)
    assert table["interval"] == "95% t-interval over seeds" and table["missing"] == []
    groups = {g["solver"]: g for g in table["groups"]}
    assert set(groups) == set(SOLVERS)
    for solver, group in groups.items():
        runs = _summaries(sweep, solver)
        finals = [r["metric"]["final"] for r in runs]
        assert group["runs"] == group["seeds"] == group["completed"] == group["final_n"] == 3
        half = t.ppf(0.975, 2) * statistics.stdev(finals) / math.sqrt(3)
        assert group["final_mean"] == pytest.approx(statistics.mean(finals))
        assert (group["final_low"], group["final_high"]) == pytest.approx((statistics.mean(finals) - half,
                                                                           statistics.mean(finals) + half))
        reached = [r["metric"]["reached_target"] for r in runs if r["metric"]["reached_target"]]
        assert group["reached"] == len(reached)
        if reached:
            assert group["step_to_target_mean"] == pytest.approx(statistics.mean(p["step"] for p in reached))
        assert group["forward_per_step_mean"] == pytest.approx(runs[0]["costs"]["forward"] / runs[0]["steps"])
    # sorted by final metric, the best first and marked
    order = [g["solver"] for g in table["groups"]]
    assert order == sorted(groups, key=lambda s: groups[s]["final_mean"])
    assert [g["best"] for g in table["groups"]] == [True, False, False]
    assert sum(groups[s]["reached"] for s in SOLVERS) > 0  # logreg's target is reachable in 150 steps

    text = _optbench("compare", str(sweep)).stdout
    assert text.count(" logreg ") == 3 and f"* {order[0]}" in text and "(3 seeds)" in text
    markdown = _optbench("compare", str(sweep), "--format", "markdown").stdout.splitlines()
    assert markdown[0].startswith("| solver | problem | runs") and len([l for l in markdown if "| logreg |" in l]) == 3
    rows = list(csv.DictReader(_optbench("compare", str(sweep), "--format", "csv").stdout.splitlines()))
    assert [r["solver"] for r in rows] == order and float(rows[0]["final_mean"]) == groups[order[0]]["final_mean"]


def test_group_by_a_config_key_and_export_every_validation_point(sweep, tmp_path):
    done = _optbench("compare", str(sweep), "--by", "seed", "--format", "json", "--export", str(tmp_path))
    assert done.returncode == 0, done.stderr
    groups = json.loads(done.stdout)["groups"]
    assert len(groups) == 9 and all(g["runs"] == 1 and g["final_low"] is None for g in groups)
    assert "(n=1)" in _optbench("compare", str(sweep), "--by", "seed").stdout
    with open(tmp_path / "points.csv") as f:
        points = list(csv.DictReader(f))
    summaries = [s for solver in SOLVERS for s in _summaries(sweep, solver)]
    assert len(points) == sum(len(s["metric"]["history"]) for s in summaries) == 9 * 7
    first = next(p for p in points if p["solver"] == "adamw" and p["seed"] == "1" and p["step"] == "150")
    run = json.loads((sweep / first["run"] / "summary.json").read_text())
    assert float(first["value"]) == run["metric"]["final"]
    assert float(first["config.optimizer.lr"]) == run["config"]["optimizer"]["lr"]
    pq = pytest.importorskip("pyarrow.parquet")
    table = pq.read_table(tmp_path / "points.parquet")
    assert table.num_rows == len(points) and table.column("value").to_pylist() == [float(p["value"]) for p in points]


def test_killed_runs_are_listed_and_an_unknown_schema_is_one_line(sweep, tmp_path):
    copy = tmp_path / "sweep"
    shutil.copytree(sweep, copy)
    killed = next(copy.glob("*_sgd_logreg"))
    (killed / "summary.json").unlink()
    done = _optbench("compare", str(copy), "--format", "json")
    assert done.returncode == 0, done.stderr
    table = json.loads(done.stdout)
    assert table["missing"] == [str(killed)] and {g["solver"]: g["runs"] for g in table["groups"]}["sgd"] == 2
    assert "1 run directories hold no summary.json" in _optbench("compare", str(copy)).stdout
    odd = next(copy.glob("*_sophia_logreg")) / "summary.json"
    summary = json.loads(odd.read_text())
    summary["config"]["optimizer"]["rho"] = 0.5
    odd.write_text(json.dumps(summary))
    assert "sophia on logreg mixes runs that differ in optimizer.rho: split them with --by optimizer.rho" in (
        _optbench("compare", str(copy)).stdout)
    future = next(copy.glob("*_adamw_logreg")) / "summary.json"
    future.write_text(json.dumps({**json.loads(future.read_text()), "schema_version": 99}))
    done = _optbench("compare", str(copy))
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert f"error: {future}: schema_version=99: this optbench reads schema 1, 2" in done.stderr


def test_expected_best_of_k_trials_is_exact():
    from framework.studies.figures import expected_best

    # pairs of [3, 1, 2]: (3, 1) -> 1, (3, 2) -> 2, (1, 2) -> 1
    assert expected_best([3.0, 1.0, 2.0], "min") == pytest.approx([2.0, 4 / 3, 1.0])
    assert expected_best([3.0, 1.0, 2.0], "max") == pytest.approx([2.0, 8 / 3, 3.0])
    rng = np.random.default_rng(0)
    values = list(rng.normal(size=7))
    draws = [min(rng.choice(values, size=3, replace=False)) for _ in range(20000)]
    assert expected_best(values, "min")[2] == pytest.approx(np.mean(draws), abs=0.02)


def _not_blank(png: Path) -> np.ndarray:
    from matplotlib.image import imread

    pixels = imread(png)[..., :3]
    assert pixels.shape[0] > 200 and pixels.shape[1] > 400
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 50  # lines, bands, text: not a blank canvas
    return pixels


def test_report_draws_curves_profiles_and_the_table(sweep, tmp_path):
    pytest.importorskip("matplotlib")
    pytest.importorskip("plotly")
    done = _optbench("report", str(sweep), "--out", str(tmp_path), "--wandb")
    assert done.returncode == 0, done.stderr
    for name in ("curves-logreg", "profiles"):
        _not_blank(tmp_path / f"{name}.png")
    svg = (tmp_path / "curves-logreg.svg").read_text()
    for text in ("steps", "items (samples or tokens)", "FLOPs", "training seconds", "val/loss", "target",
                 *(f"{s} (n=3)" for s in SOLVERS)):
        assert f">{text}<" in svg, text
    assert all(f">{s}<" in (tmp_path / "profiles.svg").read_text() for s in SOLVERS)
    assert (tmp_path / "compare.md").read_text().count("| logreg |") == 3
    page = (tmp_path / "report.html").read_text()
    assert page.count('class="plotly-graph-div"') == 2 and "<table>" in page
    assert '<script src=' not in page  # plotly.js is inline, not fetched
    # --wandb: one offline run in the sweep's group, holding the table and the figures
    (record,) = (tmp_path / "wandb").glob("offline-run-*/run-*.wandb")
    logged = read_run(record)
    assert logged["job_type"] == "report" and logged["group"] == "/".join(sweep.resolve().parts[-2:])
    assert logged["summary"]["compare/_type"] == "table-file" and logged["summary"]["compare/nrows"] == 3
    assert logged["summary"]["curves-logreg/_type"] == "image-file"


def _browser_missing() -> str | None:
    if shutil.which("chromium") is None:
        return "no chromium here (apt-get install chromium; .ci/run installs it as root)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install 'optbench[test]')"
    return None


@pytest.mark.skipif(_browser_missing() is not None, reason=str(_browser_missing()))
def test_report_page_draws_every_figure_offline_in_chromium(sweep, tmp_path):
    from playwright.sync_api import sync_playwright

    assert _optbench("report", str(sweep), "--out", str(tmp_path)).returncode == 0
    page_url = (tmp_path / "report.html").as_uri()
    requested, refused = [], []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=shutil.which("chromium"), args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.on("request", lambda request: requested.append(request.url))
            page.route("http*://**", lambda route: (refused.append(route.request.url), route.abort()))
            page.goto(page_url, wait_until="load")
            page.wait_for_selector(".plotly-graph-div .main-svg")
            figures = page.locator(".plotly-graph-div")
            assert figures.count() == 2
            for i in range(figures.count()):  # every figure has drawn lines with real path data
                lines = figures.nth(i).locator(".scatterlayer .trace path.js-line")
                assert lines.count() >= 3
                assert all(len(lines.nth(j).get_attribute("d") or "") > 20 for j in range(lines.count()))
            assert page.locator("table tbody tr").count() == 3
            page.screenshot(path=str(tmp_path / "page.png"), full_page=True)
        finally:
            browser.close()
    assert requested == [page_url] and refused == []  # the page asks the network for nothing
    _not_blank(tmp_path / "page.png")
