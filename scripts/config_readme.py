"""Write config/README.md from the config schema (or, with --check, fail when it is stale)."""

from __future__ import annotations

import sys
from pathlib import Path

import yaml
from generated import write_or_check

from spinefx.settings import render_config_readme

REPO = Path(__file__).resolve().parents[1]
README = REPO / "config" / "README.md"


def expected() -> str:
    demo = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    paper = yaml.safe_load((REPO / "config" / "paper.yaml").read_text())
    return render_config_readme(demo, paper)


def main() -> int:
    return write_or_check(README, expected, description=__doc__, script="scripts/config_readme.py")


if __name__ == "__main__":
    sys.exit(main())
