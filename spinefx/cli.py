"""The `spinefx` command: the package's one entry point; subcommands import their stage lazily."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import yaml

from spinefx.errors import SpinefxError
from spinefx.settings import section_defaults


def _series(args: argparse.Namespace) -> int:
    """List every series of a study folder and what the `series:` rules would choose."""
    from spinefx.dicom import select  # lazy: `spinefx --help` needs no pydicom

    rules = section_defaults("series")
    if args.config:
        given = (yaml.safe_load(Path(args.config).read_text()) or {}).get("series") or {}
        rules = {name: given.get(name, rule) for name, rule in rules.items()}
    found = select.scan_study(args.folder)
    print(f"{len(found)} series in {args.folder}:")
    for s in found:
        print("  " + s.line())
    status = 0
    for name, rule in rules.items():
        try:
            print(f"{name}: {select.choose(found, rule, name=name, folder=args.folder).uid}")
        except SpinefxError as err:
            print(f"{name}: no choice: {err.problem.splitlines()[0]}")
            status = 1
    return status


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line and run a subcommand; a SpinefxError becomes one readable line."""
    parser = argparse.ArgumentParser(prog="spinefx", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("series", help="list the series of a DICOM study folder and what the rules choose")
    p.add_argument("folder", type=Path)
    p.add_argument("--config", type=Path, help="config YAML whose `series:` block replaces the defaults")
    p.set_defaults(run=_series)
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except SpinefxError as err:
        print(f"spinefx: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
