"""``optbench report <dir>... --out <dir>``: the comparison as figures and one offline HTML page.

Writes, into the output directory: ``curves-<problem>.png`` and ``.svg`` (the validation metric against
steps, items, FLOPs and seconds, one line per solver: the mean over seeds, shaded from the lowest to the
highest seed, the target dashed),
``profiles.png``/``.svg`` (performance profiles in steps, FLOPs and seconds), ``tuneability.png``/``.svg``
(expected best metric against the number of tuning trials, where the directories hold tuning sweeps),
``compare.md`` (the table) and ``report.html``: all of it with interactive plotly figures, the plotly
library embedded, so that the file opens offline and asks the network for nothing.
"""

from __future__ import annotations

import html
import os
from pathlib import Path
from typing import Any, Callable

import numpy as np

from framework.studies.compare import aggregate, cells, headers, notes, render
from framework.studies.figures import AXES, PROFILE_UNITS, ProblemCurves, curves, profiles, tuneability
from framework.studies.runs import Collection, RunResult

PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
           "#17becf"]


def _labeller(by: list[str]) -> Callable[[RunResult], str]:
    def label(run: RunResult) -> str:
        return " ".join([run.solver, *(f"{key}={run.setting(key)}" for key in by)])
    return label


def _colors(names: list[str]) -> dict[str, str]:
    return {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(sorted(set(names)))}


def _log_scale(values: list[np.ndarray]) -> bool:
    """A log axis for values that are all positive and span more than a factor of 20."""
    flat = np.concatenate(values) if values else np.array([])
    return flat.size > 0 and bool(np.all(flat > 0)) and flat.max() / flat.min() > 20


# -- matplotlib -----------------------------------------------------------------------------------------------

def _save(figure: Any, out: Path, name: str) -> list[Path]:
    paths = [out / f"{name}.png", out / f"{name}.svg"]
    figure.savefig(paths[0], dpi=120, bbox_inches="tight")
    figure.savefig(paths[1], bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(figure)
    return paths


def _curves_png(problem: ProblemCurves, colors: dict[str, str], out: Path) -> list[Path]:
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(AXES), figsize=(4.2 * len(AXES), 3.6), sharey=True)
    for ax, (axis, title) in zip(axes, AXES.items()):
        for curve in problem.by_axis[axis]:
            color = colors[curve.label]
            ax.plot(curve.x, curve.mean, color=color, label=f"{curve.label} (n={curve.seeds})")
            ax.fill_between(curve.x, curve.low, curve.high, color=color, alpha=0.2, linewidth=0)
        if problem.target is not None:
            ax.axhline(problem.target, color="black", linestyle="--", linewidth=1, label="target")
        ax.set_xlabel(title)
        ax.grid(alpha=0.3)
        if _log_scale([c.mean for c in problem.by_axis[axis]]):
            ax.set_yscale("log")
    axes[0].set_ylabel(problem.metric)
    axes[0].legend(fontsize=8)
    figure.suptitle(f"{problem.problem}: {problem.metric}, mean over seeds, band from lowest to highest")
    return _save(figure, out, f"curves-{problem.problem}")


def _profiles_png(data: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]], colors: dict[str, str],
                  out: Path) -> list[Path]:
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(PROFILE_UNITS), figsize=(4.5 * len(PROFILE_UNITS), 3.6), sharey=True)
    for ax, (unit, title) in zip(axes, PROFILE_UNITS.items()):
        for solver, (taus, fractions) in data[unit].items():
            ax.step(taus, fractions, where="post", color=colors[solver], label=solver)
        ax.set_xscale("log")
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel(f"tau (time to target in {title} / best)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("fraction of problems")
    axes[0].legend(fontsize=8)
    figure.suptitle("performance profiles")
    return _save(figure, out, "profiles")


def _tuneability_png(data: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]], colors: dict[str, str],
                     metric: str, out: Path) -> list[Path]:
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(data), figsize=(4.5 * len(data), 3.6), squeeze=False)
    for ax, (problem, solvers) in zip(axes[0], sorted(data.items())):
        for solver, (k, expected) in sorted(solvers.items()):
            ax.plot(k, expected, marker="o", markersize=3, color=colors.get(solver, "gray"), label=solver)
        ax.set_title(problem)
        ax.set_xlabel("tuning trials")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel(f"expected best {metric}")
    axes[0][0].legend(fontsize=8)
    figure.suptitle("tuneability: expected best after k trials")
    return _save(figure, out, "tuneability")


# -- plotly (report.html) -------------------------------------------------------------------------------------

def _rgba(color: str, alpha: float) -> str:
    r, g, b = (int(color[i:i + 2], 16) for i in (1, 3, 5))
    return f"rgba({r},{g},{b},{alpha})"


def _curves_plotly(problem: ProblemCurves, colors: dict[str, str]) -> Any:
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    figure = make_subplots(rows=1, cols=len(AXES), shared_yaxes=True, subplot_titles=list(AXES.values()))
    for col, axis in enumerate(AXES, start=1):
        for curve in problem.by_axis[axis]:
            color = colors[curve.label]
            figure.add_trace(go.Scatter(x=np.concatenate([curve.x, curve.x[::-1]]),
                                        y=np.concatenate([curve.high, curve.low[::-1]]), fill="toself",
                                        fillcolor=_rgba(color, 0.2), line={"width": 0}, hoverinfo="skip", mode="lines",
                                        showlegend=False, legendgroup=curve.label), row=1, col=col)
            figure.add_trace(go.Scatter(x=curve.x, y=curve.mean, name=f"{curve.label} (n={curve.seeds})",
                                        line={"color": color}, mode="lines", legendgroup=curve.label, showlegend=col == 1),
                             row=1, col=col)
        if problem.target is not None:
            figure.add_hline(y=problem.target, line_dash="dash", line_color="black", row=1, col=col)
        if _log_scale([c.mean for c in problem.by_axis[axis]]):
            figure.update_yaxes(type="log", row=1, col=col)
    figure.update_layout(title=f"{problem.problem}: {problem.metric}, mean over seeds, band from lowest to highest", height=420)
    return figure


def _lines_plotly(data: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]], colors: dict[str, str],
                  titles: list[str], title: str, log_x: bool, shape: str, shared_y: bool) -> Any:
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    figure = make_subplots(rows=1, cols=len(data), shared_yaxes=shared_y, subplot_titles=titles)
    for col, (_, lines) in enumerate(data.items(), start=1):
        for name, (x, y) in sorted(lines.items()):
            figure.add_trace(go.Scatter(x=x, y=y, name=name, mode="lines",
                                        line={"color": colors.get(name, "gray"), "shape": shape},
                                        legendgroup=name, showlegend=col == 1), row=1, col=col)
        if log_x:
            figure.update_xaxes(type="log", row=1, col=col)
    figure.update_layout(title=title, height=400)
    return figure


def _html_table(rows: list[dict[str, Any]], by: list[str]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers(by, rows))
    body = "".join("<tr" + (' class="best"' if r["best"] else "") + ">"
                   + "".join(f"<td>{html.escape(c)}</td>" for c in cells(r, by)) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _page(title: str, table: str, notes_html: str, figures: list[Any]) -> str:
    config = {"displaylogo": False, "responsive": True}
    divs = [f.to_html(full_html=False, include_plotlyjs=(i == 0), config=config) for i, f in enumerate(figures)]
    style = ("body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;font-size:13px}"
             "td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}tr.best{font-weight:bold;"
             "background:#e8f5e9}.note{color:#666;font-size:12px}")
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{style}</style></head><body><h1>{html.escape(title)}</h1>{table}{notes_html}"
            + "".join(f"<div class='figure'>{d}</div>" for d in divs) + "</body></html>")


# -- the report -----------------------------------------------------------------------------------------------

def log_to_wandb(rows: list[dict[str, Any]], images: list[Path], directories: list[Path], out: Path) -> Path:
    """Log the table and the figures as one W&B run with ``job_type=report``, in the group of the sweep
    it reports on (as its members are); offline unless ``WANDB_MODE`` says otherwise. Returns its folder."""
    import wandb

    from framework.studies.compare import flat

    group = "/".join(Path(directories[0]).resolve().parts[-2:])
    run = wandb.init(project="optbench", group=group, job_type="report", name=f"report {group}", dir=str(out),
                     mode=os.environ.get("WANDB_MODE", "offline"), reinit="finish_previous")
    try:
        table = [flat(r) for r in rows]
        columns = list(table[0]) if table else []
        run.log({"compare": wandb.Table(columns=columns, data=[[_cell(row.get(c)) for c in columns] for row in table]),
                 **{image.stem: wandb.Image(str(image)) for image in images if image.suffix == ".png"}})
    finally:
        run.finish()
    return Path(run.dir).parent


def _cell(value: Any) -> Any:
    return value if value is None or isinstance(value, (bool, int, float, str)) else str(value)


def write_report(collection: Collection, directories: list[Path], out: Path, by: list[str],
                 to_wandb: bool = False) -> list[Path]:
    """Draw every figure and write the page (and log both to W&B with ``to_wandb``); return the files
    written."""
    import matplotlib

    matplotlib.use("Agg")
    matplotlib.rcParams["svg.fonttype"] = "none"  # text stays text in the SVGs: smaller, searchable
    out.mkdir(parents=True, exist_ok=True)
    runs = collection.results()
    label = _labeller(by)
    rows = aggregate(runs, by)
    problems = curves(runs, label)
    profile = profiles(runs, label)
    tuned = dict(sorted(tuneability(collection).items()))
    colors = _colors([label(r) for r in runs] + [s for lines in tuned.values() for s in lines])
    metric = next((p.metric for p in problems), "metric")

    written = [out / "compare.md"]
    written[0].write_text(render(rows, by, "markdown", collection.missing))
    figures = []
    for problem in problems:
        written += _curves_png(problem, colors, out)
        figures.append(_curves_plotly(problem, colors))
    if any(p.target is not None for p in problems):
        written += _profiles_png(profile, colors, out)
        figures.append(_lines_plotly(profile, colors, [f"tau in {u}" for u in PROFILE_UNITS.values()],
                                     "performance profiles: fraction of problems within tau of the best",
                                     log_x=True, shape="hv", shared_y=True))
    if tuned:
        written += _tuneability_png(tuned, colors, metric, out)
        figures.append(_lines_plotly(tuned, colors, sorted(tuned), f"tuneability: expected best {metric} after k "
                                     "trials", log_x=False, shape="linear", shared_y=False))
    notes_html = "".join(f"<p class='note'>{html.escape(n)}</p>" for n in notes(collection.missing, rows))
    page = out / "report.html"
    page.write_text(_page("optbench report", _html_table(rows, by), notes_html, figures), encoding="utf-8")
    written.append(page)
    if to_wandb:
        written.append(log_to_wandb(rows, written, directories, out))
    return written
