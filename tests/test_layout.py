"""The library is laid out by stage, like the DAG; imports run from a later stage to an earlier one only."""

from __future__ import annotations

import ast
from pathlib import Path

import spinefx

PACKAGE = Path(spinefx.__file__).parent
# Stages in the order a module may import them: each may import the shared top-level modules and the
# stages listed before it. dicom/ is the DICOM format itself, which the demo uses to write its cohort.
STAGES = ["dicom", "demo", "imaging", "learn", "evaluate"]
MAX_TOP_LEVEL_MODULES = 8


def _stage(module: str) -> str | None:
    """'spinefx.learn.train' -> 'learn'; shared top-level modules and the package itself -> None."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in STAGES else None


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            base = node.module
            found.add(base)
            found |= {f"{base}.{a.name}" for a in node.names}  # `from spinefx.learn import train`
    return {m for m in found if m == "spinefx" or m.startswith("spinefx.")}


def _module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    return ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)


def test_one_subpackage_per_stage_and_few_top_level_modules() -> None:
    subpackages = sorted(p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file())
    assert subpackages == sorted(STAGES)
    # __init__.py is the package, not a module with a job of its own, so it does not count.
    top = sorted(p.name for p in PACKAGE.glob("*.py") if p.name != "__init__.py")
    assert len(top) <= MAX_TOP_LEVEL_MODULES, top
    for stage in STAGES:
        doc = ast.get_docstring(ast.parse((PACKAGE / stage / "__init__.py").read_text()))
        assert doc and "import" in doc, f"spinefx/{stage}/__init__.py must say what it owns and may import"


def test_no_stage_imports_a_later_stage() -> None:
    bad = []
    for path in sorted(PACKAGE.rglob("*.py")):
        here = _stage(_module_name(path))
        for target in _imports(path):
            there = _stage(target)
            # cli.py is the one entry point (`spinefx` console script): dispatching to stages is its job,
            # and it imports them lazily inside its subcommands.
            if here is None and there is not None and _module_name(path) != "spinefx.cli":
                bad.append(f"{_module_name(path)} (shared) imports {target}")
            elif here and there and STAGES.index(there) > STAGES.index(here):
                bad.append(f"{_module_name(path)} imports {target}")
    assert not bad, "imports must run down the DAG:\n" + "\n".join(bad)


def test_the_walk_sees_a_backward_import(tmp_path: Path) -> None:
    """The check above can fail: a dicom/ module that imported learn/ would be found."""
    fake = tmp_path / "x.py"
    fake.write_text("from spinefx.learn import train\nimport spinefx.evaluate.stats\n")
    assert {"spinefx.learn.train", "spinefx.evaluate.stats"} <= _imports(fake)
    assert STAGES.index(_stage("spinefx.learn.train")) > STAGES.index("dicom")


def test_tests_mirror_the_library() -> None:
    tests = Path(__file__).parent
    for stage in STAGES:
        modules = {p.stem for p in (PACKAGE / stage).glob("*.py") if p.stem != "__init__"}
        tested = {p.stem.removeprefix("test_") for p in (tests / stage).glob("test_*.py")}
        assert modules <= tested | {"write"}, f"{stage}: untested modules {sorted(modules - tested)}"
