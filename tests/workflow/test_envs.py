"""The per-step conda envs and the container recipes: pinned, consistent with pyproject.toml, named by
the rules, covering what each rule's script imports, and the conda recipe never drifting from the envs."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from workflow_run import REPO, SNAKEMAKE

ENVS = sorted((REPO / "envs").glob("*.yaml"))
RULES_DIR = REPO / "workflow" / "rules"
# Import names that differ from the distribution name in pyproject.toml.
DIST_OF_MODULE = {"yaml": "pyyaml", "sklearn": "scikit-learn"}
# A stand-in for `conda` on machines without it (this one): `snakemake --containerize` asks conda
# only for its platform (to look for envs/*.<platform>.pin.txt files) and checks it is recent enough.
CONDA_SHIM = """#!/bin/sh
case "$*" in
  "info --json") echo '{"conda_prefix": "/opt/conda", "platform": "linux-64"}' ;;
  "--version") echo "conda 24.11.3" ;;
  "config --get channel_priority --json") echo '{"get": {"channel_priority": "strict"}}' ;;
  *) echo "conda shim: unsupported: $*" >&2; exit 1 ;;
esac
"""


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pyproject_pins() -> dict[str, str]:
    """Distribution name (normalised) -> exact version, from pyproject.toml's `==` pins."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    deps = list(project["dependencies"])
    for extra in project.get("optional-dependencies", {}).values():
        deps += extra
    pins = {}
    for dep in deps:
        m = re.fullmatch(r"([A-Za-z0-9_.-]+)==([0-9][0-9A-Za-z.]*)", dep.strip())
        assert m, f"pyproject.toml dependency {dep!r} is not pinned with =="
        pins[_norm(m.group(1))] = m.group(2)
    return pins


def env_pins(path: Path) -> dict[str, str]:
    """Package (normalised) -> version of one env file; fails on any package without an exact pin."""
    env = yaml.safe_load(path.read_text())
    pins = {}
    for dep in env["dependencies"]:
        if isinstance(dep, dict):
            for pip_dep in dep["pip"]:
                m = re.fullmatch(r"([A-Za-z0-9_.-]+)==(\d+(?:\.\d+)*)", pip_dep)
                assert m, f"{path.name}: pip package {pip_dep!r} is not pinned as name==x.y.z"
                pins[_norm(m.group(1))] = m.group(2)
        else:
            m = re.fullmatch(r"([A-Za-z0-9_.-]+)=(\d+(?:\.\d+)*)", dep)
            assert m, f"{path.name}: conda package {dep!r} is not pinned as name=x.y[.z]"
            pins[_norm(m.group(1))] = m.group(2)
    return pins


def rules_with_envs() -> dict[str, tuple[Path | None, Path | None]]:
    """Rule name -> (conda env file, script file), both resolved, read from workflow/rules/*.smk."""
    rules = {}
    for smk in sorted(RULES_DIR.glob("*.smk")):
        text = smk.read_text()
        for m in re.finditer(r"^rule (\w+):\n(.*?)(?=^\S|\Z)", text, re.S | re.M):
            body = m.group(2)
            env = re.search(r'^\s+conda:\s*\n\s+"([^"]+)"', body, re.M)
            script = re.search(r'^\s+script:\s*\n\s+"([^"]+)"', body, re.M)
            rules[m.group(1)] = (
                (RULES_DIR / env.group(1)).resolve() if env else None,
                (RULES_DIR / script.group(1)).resolve() if script else None,
            )
    return rules


def third_party_imports(script: Path) -> set[str]:
    """Top-level third-party modules a script needs, following its spinefx imports transitively."""
    seen: set[Path] = set()
    todo = [script]
    found: set[str] = set()
    while todo:
        tree = ast.parse(todo.pop().read_text())
        modules = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                modules |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules.add(node.module)
                modules |= {f"{node.module}.{a.name}" for a in node.names}
        for mod in modules:
            top = mod.split(".")[0]
            if top == "spinefx":
                for f in (REPO / f"{mod.replace('.', '/')}.py", REPO / mod.replace(".", "/") / "__init__.py"):
                    if f.exists() and f not in seen:
                        seen.add(f)
                        todo.append(f)
            elif top not in sys.stdlib_module_names and top != "snakemake":
                found.add(top)
    return found


@pytest.mark.parametrize("path", ENVS, ids=lambda p: p.name)
def test_env_parses_and_pins_every_package(path: Path) -> None:
    env = yaml.safe_load(path.read_text())
    assert env["channels"][0] == "conda-forge"
    pins = env_pins(path)
    assert pins["python"] == "3.11", "the envs run the same Python as the image and .venv"
    assert len(pins) >= 5


@pytest.mark.parametrize("path", ENVS, ids=lambda p: p.name)
def test_env_pins_agree_with_pyproject(path: Path) -> None:
    project = pyproject_pins()
    tools = {"python", "pip"}
    pins = env_pins(path)
    unknown = sorted(set(pins) - set(project) - tools)
    assert not unknown, f"{path.name} pins packages pyproject.toml does not: {unknown}"
    differ = {name: (v, project[name]) for name, v in pins.items() if name in project and v != project[name]}
    assert not differ, f"{path.name}: (env, pyproject) versions differ: {differ}"


def test_every_rule_with_a_script_names_an_existing_env() -> None:
    rules = rules_with_envs()
    assert {"assign_folds", "train_fold", "stats_tables", "dicom_to_nifti"} <= set(rules)
    for name, (env, script) in rules.items():
        if script is None:
            continue
        assert env is not None, f"rule {name} runs a script but has no conda: directive"
        assert env.exists(), f"rule {name}: conda env {env} does not exist"
        assert env.parent == REPO / "envs"


def test_each_env_holds_what_its_rules_import() -> None:
    """A rule run with `--sdm conda` imports only what its env installs (spinefx comes from the
    checkout via PYTHONPATH); a missing package here is an ImportError on a user's machine."""
    missing = {}
    for name, (env, script) in rules_with_envs().items():
        if script is None:
            continue
        have = set(env_pins(env))
        need = {_norm(DIST_OF_MODULE.get(m, m)) for m in third_party_imports(script)}
        if need - have:
            missing[f"{name} ({env.name})"] = sorted(need - have)
    assert not missing, f"env files lack packages their rules import: {missing}"


def test_import_scan_sees_transitive_imports() -> None:
    """The scan follows spinefx modules: extract_patches reaches SimpleITK and h5py only through
    spinefx.imaging.patches and spinefx.imaging.patchfile; assign_folds needs no DICOM library at all."""
    needs = third_party_imports(REPO / "workflow" / "scripts" / "extract_patches.py")
    assert {"SimpleITK", "h5py", "pandas", "numpy"} <= needs
    assert "spinefx" not in needs
    folds_needs = third_party_imports(REPO / "workflow" / "scripts" / "assign_folds.py")
    assert {"pandas", "numpy"} <= folds_needs and "pydicom" not in folds_needs


def test_containerize_output_matches_dockerfile_conda(tmp_path: Path) -> None:
    shim = tmp_path / "bin" / "conda"
    shim.parent.mkdir()
    shim.write_text(CONDA_SHIM)
    shim.chmod(0o755)
    env = dict(os.environ, PATH=f"{shim.parent}{os.pathsep}{os.environ['PATH']}")
    proc = subprocess.run(
        [SNAKEMAKE, "--containerize"], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    recipe = (REPO / "envs" / "Dockerfile.conda").read_text()
    assert proc.stdout == recipe, (
        "envs/Dockerfile.conda is stale: regenerate it with"
        " `snakemake --containerize > envs/Dockerfile.conda` (see envs/README.md)"
    )
    for path in ENVS:
        assert f"COPY envs/{path.name} /conda-envs/" in recipe


def test_containerfile_reads_pins_from_pyproject() -> None:
    """The pip recipe repeats no version: it installs pyproject.toml's pins and spinefx itself."""
    text = (REPO / "envs" / "Containerfile").read_text()
    assert "pyproject.toml" in text and "pip install ${PIP_ARGS} --no-deps /ctx" in text
    instructions = [ln for ln in text.splitlines() if ln and not ln.startswith("#")]
    assert not [ln for ln in instructions if re.search(r"==\d", ln)], "a version is pinned in the recipe"
