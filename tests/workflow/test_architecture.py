"""docs/architecture.md is the map of rules, scripts, library modules and files, and it is current."""

from __future__ import annotations

import re
import subprocess
import sys

from workflow_run import REPO


def test_architecture_map_is_generated_and_current() -> None:
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "architecture.py"), "--check"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr


def test_architecture_map_names_every_rule_and_script() -> None:
    text = (REPO / "docs" / "architecture.md").read_text()
    rules = set()
    for smk in (REPO / "workflow" / "rules").glob("*.smk"):
        rules |= set(re.findall(r"^rule (\w+):", smk.read_text(), flags=re.M))
    assert rules and all(f"| `{rule}` |" in text for rule in rules), rules
    for script in (REPO / "workflow" / "scripts").glob("*.py"):
        assert f"`workflow/scripts/{script.name}`" in text, script.name
