"""Shared by the scripts that generate checked-in docs: write the file, or with --check fail when stale."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def write_or_check(out: Path, render: Callable[[], str], *, description: str, script: str) -> int:
    """``script [--check]``: write ``render()`` to ``out``, or exit 1 if ``out`` differs from it."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--check", action="store_true", help=f"exit 1 if {out.relative_to(REPO)} is stale")
    args = parser.parse_args()
    text = render()
    if args.check:
        if not out.is_file() or out.read_text() != text:
            print(f"{out.relative_to(REPO)} is stale: run .venv/bin/python {script}", file=sys.stderr)
            return 1
        return 0
    out.write_text(text)
    print(f"wrote {out.relative_to(REPO)}")
    return 0
