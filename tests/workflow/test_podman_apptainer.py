"""scripts/podman_apptainer/apptainer, against a podman stand-in that records its calls (no podman needed):
Snakemake's apptainer calls become the podman runs the adapter's docstring promises, and what it does
not map is refused. The real thing, podman and the whole tiny demo, is tests/workflow/test_container.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.version import Version
from snakemake.deployment.singularity import Singularity

from workflow_run import REPO

ADAPTER = REPO / "scripts" / "podman_apptainer" / "apptainer"
FAKE_PODMAN = """#!{python}
import json, os, sys
with open(os.environ["FAKE_PODMAN_LOG"], "a") as f:
    f.write(json.dumps(sys.argv[1:]) + "\\n")
if sys.argv[1:3] == ["image", "inspect"]:
    print("0123abcd sha256:feedbeef")
"""


@pytest.fixture()
def fake(tmp_path: Path) -> dict[str, str]:
    podman = tmp_path / "podman"
    podman.write_text(FAKE_PODMAN.format(python=sys.executable))
    podman.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("APPTAINERENV_", "SINGULARITYENV_"))}
    return {**env, "PODMAN": str(podman), "FAKE_PODMAN_LOG": str(tmp_path / "calls.jsonl")}


def apptainer(env: dict[str, str], *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(ADAPTER), *args], env=env, cwd=cwd, capture_output=True, text=True)


def calls(env: dict[str, str]) -> list[list[str]]:
    return [json.loads(line) for line in Path(env["FAKE_PODMAN_LOG"]).read_text().splitlines()]


def test_version_satisfies_snakemake(fake: dict[str, str], tmp_path: Path) -> None:
    out = apptainer(fake, "--version", cwd=tmp_path).stdout
    assert out.startswith("apptainer ")  # Snakemake checks apptainer's minimum on this prefix
    assert Singularity().parseversion(out.strip()) >= Version("1.0.0")


def test_pull_records_the_image_id_and_exec_maps_apptainer(fake: dict[str, str], tmp_path: Path) -> None:
    proc = apptainer(fake, "pull", "--name", "h.simg", "docker://localhost/spinefx:0.1.0", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    record = json.loads((tmp_path / "h.simg").read_text())
    assert record["podman_image"] == "localhost/spinefx:0.1.0"
    assert (record["id"], record["digest"]) == ("0123abcd", "sha256:feedbeef")
    env = {**fake, "FOO": "bar", "VIRTUAL_ENV": "/host/.venv", "APPTAINERENV_BAZ": "1", "PYTHONPATH": "/x"}
    args = ["--quiet", "--silent", "exec", "--home", str(tmp_path), "--bind", "/data:/in:ro,/scratch"]
    args += ["--pwd", "/work", "--nv", str(tmp_path / "h.simg"), "bash", "-c", "python s.py"]
    proc = apptainer(env, *args, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    run = calls(fake)[-1]
    assert run[:2] == ["run", "--rm"] and run[-4:] == ["0123abcd", "bash", "-c", "python s.py"]
    pairs = {(a, b) for a, b in zip(run, run[1:], strict=False)}
    assert {("-v", f"{tmp_path}:{tmp_path}"), ("-v", "/tmp:/tmp"), ("-v", "/data:/in:ro")} <= pairs
    assert {("-v", "/scratch:/scratch"), ("-w", "/work"), ("--device", "nvidia.com/gpu=all")} <= pairs
    assert {("-e", "FOO=bar"), ("-e", "BAZ=1"), ("-e", "PYTHONPATH=/x"), ("-e", f"HOME={tmp_path}")} <= pairs
    passed = [b for a, b in zip(run, run[1:], strict=False) if a == "-e"]
    assert not [e for e in passed if e.startswith(("PATH=", "VIRTUAL_ENV=", "APPTAINERENV_"))]


def test_cleanenv_passes_only_what_is_asked(fake: dict[str, str], tmp_path: Path) -> None:
    env = {**fake, "FOO": "bar"}
    args = ["exec", "--cleanenv", "--env", "A=1", "docker://img", "true"]
    assert apptainer(env, *args, cwd=tmp_path).returncode == 0
    passed = [b for a, b in zip(calls(fake)[-1], calls(fake)[-1][1:], strict=False) if a == "-e"]
    assert sorted(passed) == ["A=1", f"HOME={tmp_path}"]


@pytest.mark.parametrize(
    "args",
    [
        ["exec", "--writable", "docker://img", "true"],  # an option it does not map
        ["exec", "img.sif", "true"],  # a .sif: podman cannot run it
        ["build", "x.sif", "docker://img"],  # another subcommand
        ["pull", "--name", "h.simg", "library://img"],  # not a docker:// image
    ],
)
def test_what_is_not_mapped_is_refused(fake: dict[str, str], tmp_path: Path, args: list[str]) -> None:
    (tmp_path / "img.sif").write_bytes(b"\x7fELF\x00\x01 not json")
    proc = apptainer(fake, *args, cwd=tmp_path)
    assert proc.returncode == 2 and "podman adapter" in proc.stderr, proc.stderr
    assert not Path(fake["FAKE_PODMAN_LOG"]).exists() or not [c for c in calls(fake) if c[0] == "run"]
