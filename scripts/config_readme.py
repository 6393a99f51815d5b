"""Write config/README.md from the config schema (or, with --check, fail when it is stale)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from spinefx.settings import render_config_readme

REPO = Path(__file__).resolve().parents[1]
README = REPO / "config" / "README.md"


def expected() -> str:
    demo = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    paper = yaml.safe_load((REPO / "config" / "paper.yaml").read_text())
    return render_config_readme(demo, paper)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="exit 1 if config/README.md is not up to date")
    args = parser.parse_args()
    text = expected()
    if args.check:
        if README.read_text() != text:
            print("config/README.md is stale: run .venv/bin/python scripts/config_readme.py", file=sys.stderr)
            return 1
        return 0
    README.write_text(text)
    print(f"wrote {README.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
