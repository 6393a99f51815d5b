"""Write docs/architecture.md, the map of the workflow stage by stage, from the rule files themselves
(or, with --check, fail when it is stale): each rule, its script, the spinefx modules that script uses,
and the files it reads and writes. Generated so that the map cannot drift from the code."""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

from generated import write_or_check

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "docs" / "architecture.md"
RULES = REPO / "workflow" / "rules"
# Stage files in DAG order; any other rule file follows, alphabetically.
ORDER = ["common", "demo", "convert", "register", "patches", "train", "stats", "predict"]
SECTIONS = ("input", "output", "log", "benchmark", "params", "conda", "resources", "threads", "script", "run")
OTHER = ("group", "default_target", "localrule", "shell", "wrapper", "message", "priority")
OTHER += ("wildcard_constraints",)


def _rules(text: str) -> list[dict]:
    """Each rule of a .smk file with the raw text of its input, output and script sections."""
    found = []
    for match in re.finditer(r"^(?:rule|checkpoint) (\w+):\n((?:[ \t]+.*\n|\n)*)", text, flags=re.M):
        body, sections, current = match.group(2), {}, None
        for line in body.splitlines():
            head = re.match(r"^    (\w+):\s*(.*)$", line)
            if head and head.group(1) in SECTIONS + OTHER:
                current = head.group(1)
                sections[current] = head.group(2)
            elif current:
                sections[current] += "\n" + line
        found.append({"name": match.group(1), **sections})
    return found


def _paths(section: str | None) -> list[str]:
    """The file patterns and input functions named in a rule section."""
    if not section:
        return []
    items = [f"`{p}`" for p in re.findall(r"\"((?:results|logs|benchmarks)/[^\"]+)\"", section)]
    items += [f"`{f}()`" for f in re.findall(r"unpack\((\w+)\)", section)]
    items += [f"`{f}()`" for f in re.findall(r"^\s*\w+=(\w+),?\s*$", section, flags=re.M) if f[0].islower()]
    items += [f"`{f}(...)`" for f in re.findall(r"\b(\w+_outputs?)\(", section)]
    items += [f"`{v}`" for v in re.findall(r"^\s*(?:\w+=)?([A-Z][A-Z_]+),?\s*$", section, flags=re.M)]
    return list(dict.fromkeys(items))


def _library_modules(script: Path) -> list[str]:
    modules = set()
    for node in ast.walk(ast.parse(script.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("spinefx"):
            for alias in node.names:
                candidate = f"{node.module}.{alias.name}"
                is_module = (REPO / Path(*candidate.split("."))).with_suffix(".py").is_file()
                modules.add(candidate if is_module else node.module)
        elif isinstance(node, ast.Import):
            modules |= {a.name for a in node.names if a.name.startswith("spinefx")}
    return sorted(modules)


def render() -> str:
    def stage_order(path: Path) -> tuple[int, str]:
        return (ORDER.index(path.stem) if path.stem in ORDER else 99, path.stem)

    files = sorted(RULES.glob("*.smk"), key=stage_order)
    lines = [
        "# Architecture: the workflow stage by stage",
        "",
        "<!-- Generated from workflow/rules/*.smk and workflow/scripts/*.py by scripts/architecture.py;",
        "     `make lint` fails when it is stale; regenerate with `python scripts/architecture.py`. -->",
        "",
        "Each stage of the DAG is one rule file in `workflow/rules/`; each rule runs one thin script in",
        "`workflow/scripts/`, which calls the `spinefx` library, laid out by stage (`spinefx/dicom`, `demo`,",
        "`imaging`, `learn`, `evaluate`; a stage imports only earlier ones). The files named here are the",
        "contracts of `DESIGN.md`: a rule relies on nothing else of another rule. Input functions (`name()`)",
        "live in `workflow/rules/common.smk`.",
        "",
        "![rule graph](rulegraph.png)",
        "",
    ]
    for path in files:
        rules = _rules(path.read_text())
        if not rules:
            continue
        doc = ast.get_docstring(ast.parse(path.read_text().split("\n\n\n")[0])) or ""
        lines += [f"## `{path.relative_to(REPO)}`", "", doc, ""]
        lines += ["| rule | script | library | reads | writes |"]
        lines += ["| --- | --- | --- | --- | --- |"]
        for rule in rules:
            script_rel = re.findall(r"\"\.\./scripts/([\w.]+)\"", rule.get("script", ""))
            if script_rel:
                script = REPO / "workflow" / "scripts" / script_rel[0]
                script_cell = f"`workflow/scripts/{script_rel[0]}`"
                library = "<br>".join(f"`{m}`" for m in _library_modules(script)) or "(none)"
            else:
                script_cell, library = "(none: a target)", ""
            reads = "<br>".join(_paths(rule.get("input"))) or ""
            writes = "<br>".join(_paths(rule.get("output"))) or ""
            lines.append(f"| `{rule['name']}` | {script_cell} | {library} | {reads} | {writes} |")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def main() -> int:
    return write_or_check(OUT, render, description=__doc__, script="scripts/architecture.py")


if __name__ == "__main__":
    sys.exit(main())
