"""Command line of the core: ``python -m framework list`` shows every installed plugin entry.

This path never imports torch or Lightning, so it answers in well under two seconds.
"""

from __future__ import annotations

import argparse
import json
import sys

from framework.registry import PluginError, Registry


def _settings(settings: dict) -> str:
    return " ".join(f"{key}={json.dumps(value)}" for key, value in settings.items())


def list_plugins(strict: bool = False, as_json: bool = False) -> int:
    """Print solvers, problems and backends with package, status and settings; 1 if any is broken."""
    try:
        registry = Registry(strict=strict)
    except PluginError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    rows = registry.listing()
    if as_json:
        print(json.dumps([
            {"group": r.group, "name": r.name, "package": r.package, "plugin": r.plugin, "status": r.status,
             "target": r.entry.target if r.entry else None,
             "settings": r.entry.settings if r.entry else None}
            for r in rows
        ], indent=2, default=str))
        return 1 if registry.broken else 0

    from rich.console import Console
    from rich.table import Table

    labels = {"optimizer": "solver", "model": "problem", "backend": "backend", "plugin": "plugin"}
    table = Table(title="optbench plugins", show_lines=True, expand=False)
    for column in ("kind", "name", "package"):
        table.add_column(column, no_wrap=True)
    table.add_column("status", overflow="fold")
    table.add_column("settings", overflow="fold")
    for row in rows:
        status = "[green]ok[/]" if row.ok else f"[red]{row.status}[/]"
        settings = _settings(row.entry.settings) if row.entry else ""
        if row.entry and row.entry.description:
            settings += f"\n[dim]{row.entry.description}[/]"
        table.add_row(labels.get(row.group, row.group), f"[bold]{row.name}[/]", row.package, status, settings)
    Console(soft_wrap=False).print(table)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m framework", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    listing = commands.add_parser("list", help="list solvers, problems and backends")
    listing.add_argument("--strict", action="store_true", help="fail on the first broken plugin")
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    args = parser.parse_args(argv)
    if args.command == "list":
        return list_plugins(strict=args.strict, as_json=args.json)
    return 2


if __name__ == "__main__":
    sys.exit(main())
