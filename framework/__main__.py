"""Command line of the core (``optbench``, also ``python -m framework``): ``run`` trains (Hydra's command line
over the packaged config), ``list`` shows every installed plugin entry, ``compare`` tabulates runs aggregated
over seeds, ``report`` draws them.

Only ``run`` imports torch and Lightning; the other commands answer in seconds.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from framework.registry import PluginError, Registry


def _settings(settings: dict) -> str:
    return " ".join(f"{key}={json.dumps(value)}" for key, value in settings.items())


def _status(row: Any) -> str:
    if not row.ok:
        return row.status
    if row.clashes:
        return (f"name clash with {', '.join(row.clashes)}: select as {row.group}={row.qualified}")
    return "ok"


def _runs_on(rows: list[Any]) -> dict[int, list[str] | None]:
    """For each working solver row (by id), the backends it runs on (None: its source does not say)."""
    from framework.authoring.capabilities import runs_on

    backends = {row.qualified if row.clashes else row.name: row.entry.target
                for row in rows if row.group == "backend" and row.ok and row.entry}
    return {id(row): runs_on(row.entry.target, bool(row.entry.config.get("_partial_")), backends)
            for row in rows if row.group == "optimizer" and row.ok and row.entry}


def list_plugins(strict: bool = False, as_json: bool = False, check: bool = False) -> int:
    """Print solvers, problems and backends with package, status and settings; 1 if any is broken, two
    packages provide the same name (each is then selected by its qualified name), or, with ``check``, an
    option's target does not match its kind or its YAML."""
    try:
        registry = Registry(strict=strict)
    except PluginError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    rows = registry.listing()
    if check:
        from framework.authoring.checks import check_entry

        for row in rows:
            problem = check_entry(row.group, row.entry) if row.ok and row.entry else None
            if problem:
                row.status = f"check failed: {problem}"
    trouble = int(any(_status(row) != "ok" for row in rows))  # broken, clashing or failing a check
    backends = _runs_on(rows)
    if as_json:
        print(json.dumps([
            {"group": r.group, "name": r.name, "qualified": r.qualified, "package": r.package, "plugin": r.plugin,
             "status": _status(r), "clashes": r.clashes, "target": r.entry.target if r.entry else None,
             "settings": r.entry.settings if r.entry else None, "runs_on": backends.get(id(r))}
            for r in rows
        ], indent=2, default=str))
        return trouble

    from rich.console import Console
    from rich.table import Table

    labels = {"optimizer": "solver", "model": "problem", "backend": "backend", "plugin": "plugin"}
    table = Table(title="optbench plugins", show_lines=True, expand=False)
    for column in ("kind", "name", "package"):
        table.add_column(column, no_wrap=True)
    table.add_column("status", overflow="fold")
    table.add_column("settings", overflow="fold")
    for row in rows:
        status = "[green]ok[/]" if _status(row) == "ok" else f"[red]{_status(row)}[/]"
        settings = _settings(row.entry.settings) if row.entry else ""
        if row.entry and row.entry.description:
            settings += f"\n[dim]{row.entry.description}[/]"
        if row.group == "optimizer" and row.ok:
            runs = backends.get(id(row))
            settings += f"\n[cyan]backends: {', '.join(runs) if runs is not None else 'see optbench list --check'}[/]"
        table.add_row(labels.get(row.group, row.group), f"[bold]{row.name}[/]", row.package, status, settings)
    Console(soft_wrap=False).print(table)
    return trouble


def _collect(directories: list[str]) -> Any:
    """The runs under ``directories``, or the exit code after a one-line error."""
    from framework.errors import ConfigError
    from framework.studies.runs import collect

    try:
        collection = collect(Path(d) for d in directories)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if not collection.runs:
        print(f"error: no summary.json under {' '.join(directories)}", file=sys.stderr)
        return 1
    return collection


def compare_runs(directories: list[str], by: list[str], fmt: str, export_to: str | None,
                 all_trials: bool = False) -> int:
    """Print the comparison table of every run under ``directories``; export the long table if asked."""
    from framework.studies.compare import aggregate, notes, render, rich_table
    from framework.studies.export import export

    collection = _collect(directories)
    if isinstance(collection, int):
        return collection
    rows = aggregate(collection.results(all_trials), by)
    if fmt == "table":
        from rich.console import Console

        console = Console()
        console.print(rich_table(rows, by))
        for line in notes(collection.missing, rows):
            console.print(line, style="dim", markup=False, highlight=False)
    else:
        sys.stdout.write(render(rows, by, fmt, collection.missing))
    if export_to:
        root = Path(directories[0]) if len(directories) == 1 else None
        for path in export(collection.runs, Path(export_to), root):
            print(f"exported: {path}", file=sys.stderr)
    return 0


def report_runs(directories: list[str], out: str, by: list[str], to_wandb: bool = False) -> int:
    """Write the figures and the HTML page of every run under ``directories`` into ``out``."""
    try:
        from framework.studies.report import write_report
    except ImportError as error:
        print(f"error: optbench report needs matplotlib and plotly ({error.name} is missing): "
              f"pip install 'optbench[report]'", file=sys.stderr)
        return 2
    collection = _collect(directories)
    if isinstance(collection, int):
        return collection
    for path in write_report(collection, [Path(d) for d in directories], Path(out), by, to_wandb):
        print(path)
    return 0


def _without_working_directory() -> None:
    """``python -m framework`` puts the working directory first on ``sys.path``: a folder there named like
    one of the installed packages (a project's own ``plugins/``) would shadow it. Drop that entry, unless
    the working directory is the checkout this package is imported from. (``optbench`` never adds it.)"""
    here, checkout = Path.cwd().resolve(), Path(__file__).resolve().parents[1]
    if here != checkout:
        sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != here]


def new_plugin_package(directory: str) -> int:
    """Write a plugin package into ``directory`` and say how to use it."""
    from framework.authoring.template import new_plugin
    from framework.errors import ConfigError

    try:
        files = new_plugin(Path(directory))
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    name = Path(directory).resolve().name.lower()
    for path in files:
        print(path)
    print(f"\nnext: pip install -e {directory} && optbench run optimizer={name}-signum model={name}-linreg"
          f"\n      pytest {directory}   # the conformance suite on the new plugins", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    _without_working_directory()
    if argv[:1] == ["run"]:  # Hydra parses the rest (overrides, -m, --cfg, --help)
        from framework.app import launch

        launch(argv[1:], Path.cwd() / "experiments")
        return 0
    parser = argparse.ArgumentParser(prog="optbench", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("run", help="train: optbench run optimizer=sophia model=gpt2-nano [-m ...] "
                                    "(Hydra overrides; +experiment=<name> from ./experiments)")
    listing = commands.add_parser("list", help="list solvers, problems and backends")
    listing.add_argument("--strict", action="store_true", help="fail on the first broken plugin")
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    listing.add_argument("--check", action="store_true", help="import every target and match it against its "
                                                               "kind and its YAML keys (loads torch)")
    comparing = commands.add_parser("compare", help="runs under some directories, aggregated over seeds")
    comparing.add_argument("directories", nargs="+", help="run, sweep or study directories (searched recursively)")
    comparing.add_argument("--by", action="append", default=[], metavar="KEY",
                           help="also group by this config key (e.g. optimizer.lr); repeat for more")
    comparing.add_argument("--format", default="table", choices=["table", "markdown", "csv", "json"])
    comparing.add_argument("--export", metavar="DIR", help="write every validation point to DIR/points.csv "
                                                           "and DIR/points.parquet")
    comparing.add_argument("--all-trials", action="store_true",
                           help="of a tuning sweep, every trial (default: the re-runs of each study's best)")
    creating = commands.add_parser("new", help="write a new plugin package: optbench new plugin <dir>")
    creating.add_argument("kind", choices=["plugin"])
    creating.add_argument("directory", help="the package's folder, named as the package (e.g. my-optimizers)")
    reporting = commands.add_parser("report", help="figures and an offline HTML page of the comparison")
    reporting.add_argument("directories", nargs="+", help="run, sweep or study directories (searched recursively)")
    reporting.add_argument("--out", required=True, metavar="DIR", help="where the figures and report.html go")
    reporting.add_argument("--by", action="append", default=[], metavar="KEY", help="as for compare")
    reporting.add_argument("--wandb", action="store_true",
                           help="also log the table and figures as a W&B run (job_type=report, the sweep's group)")
    args = parser.parse_args(argv)
    if args.command == "list":
        return list_plugins(strict=args.strict, as_json=args.json, check=args.check)
    if args.command == "compare":
        return compare_runs(args.directories, args.by, args.format, args.export, args.all_trials)
    if args.command == "new":
        return new_plugin_package(args.directory)
    if args.command == "report":
        return report_runs(args.directories, args.out, args.by, args.wandb)
    return 2


if __name__ == "__main__":
    sys.exit(main())
