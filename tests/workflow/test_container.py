"""Build the software image from envs/Containerfile with podman and run the workflow inside it.

Marked `container` (not in the default suite): `make test-container`, or
`pytest -m container tests/workflow/test_container.py -s` to see the build seconds and image size.
Needs podman, runc and debootstrap (Debian: `apt-get install podman runc debootstrap`). The image is the
full one (every rule's software, torch included) on a debootstrapped Debian bookworm base, installed
offline from a wheelhouse this machine's pip fills, so the build needs neither a container registry nor
PyPI from inside the build. Its tag carries a hash of the recipe, the pins, the lock, spinefx's sources
and the base image, so an image built from the same inputs is reused. The tiny demo then runs with every
job in the image, Snakemake's `--sdm apptainer` driving podman through scripts/podman_apptainer/.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest

from workflow_run import REPO, SNAKEMAKE, TINY

pytestmark = pytest.mark.container

BASE = "localhost/spinefx-bookworm-min"
LOCK = REPO / "envs" / "image.lock.txt"
DPKG = REPO / "envs" / "image.dpkg.txt"
ADAPTER = REPO / "scripts" / "podman_apptainer"
IMAGE_PYTHON = "/opt/spinefx/bin/python"
IMAGE_SPINEFX = "/opt/spinefx/lib/python3.11/site-packages/spinefx"
# crun and podman's default ulimits fail in this project's sandboxes; runc with these limits works.
RUN_ARGS = ["--runtime", "runc", "--ulimit", "nofile=4096:4096", "--ulimit", "nproc=4096:4096"]


def _need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        message = f"{tool} is not installed (Debian: apt-get install podman runc debootstrap)"
        if os.environ.get("CI") == "true":  # CI's container stage fails, never skips
            pytest.fail(message)
        pytest.skip(message)
    return path


def _podman(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    proc = subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout)
    output = f"{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    assert proc.returncode == 0, f"podman {' '.join(args)} failed:\n{output}"
    return proc


def _base_image(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A Debian bookworm minbase imported into podman (no registry is reachable); its image ID."""
    if subprocess.run(["podman", "image", "exists", BASE]).returncode != 0:
        _need("debootstrap")
        rootfs = tmp_path_factory.mktemp("rootfs")
        subprocess.run(["debootstrap", "--variant=minbase", "bookworm", str(rootfs)], check=True, timeout=900)
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        subprocess.run(["podman", "import", "-", BASE], stdin=tar.stdout, check=True, timeout=600)
        assert tar.wait() == 0
        shutil.rmtree(rootfs, ignore_errors=True)
    return _podman("image", "inspect", "--format", "{{.Id}}", BASE).stdout.strip()


def recipe_hash(base_id: str) -> str:
    """What the image is made of: the recipe, the pins, the lock, spinefx's sources and the base."""
    digest = hashlib.sha256(base_id.encode())
    files = [REPO / "envs" / "Containerfile", REPO / "pyproject.toml", LOCK]
    files += sorted(p for p in (REPO / "spinefx").rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    for path in files:
        digest.update(str(path.relative_to(REPO)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The full image, built (or reused: same recipe hash) on the bookworm base; prints time and size."""
    for tool in ("podman", "runc"):
        _need(tool)
    base_id = _base_image(tmp_path_factory)
    tag = f"localhost/spinefx:0.1.0-test-{recipe_hash(base_id)}"
    if subprocess.run(["podman", "image", "exists", tag]).returncode == 0:
        print(f"\ncontainer image {tag} reused (same recipe hash)")
        return tag
    start = time.perf_counter()
    proc = subprocess.run(
        ["bash", str(REPO / "scripts" / "container_build.sh"), "--tag", tag, "--base", BASE, "--wheelhouse"]
        + ["--", "--label", f"spinefx.base={base_id}"],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    seconds = time.perf_counter() - start
    assert proc.returncode == 0, f"image build failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}"
    size_mb = int(_podman("image", "inspect", "--format", "{{.Size}}", tag).stdout) / 1e6
    print(f"\ncontainer build: {seconds:.0f} s (wheelhouse + podman build), image {size_mb:.0f} MB")
    return tag


def test_image_is_built_on_the_recorded_base_and_lock(image: str) -> None:
    """The image records the base it was built on (that base's ID, checked against podman's), every
    Python package at the version envs/image.lock.txt pins, and the Debian packages of
    envs/image.dpkg.txt (same set; Python's own version exactly, other Debian updates are printed)."""
    base_id = _podman("image", "inspect", "--format", "{{.Id}}", BASE).stdout.strip()
    label = _podman("image", "inspect", "--format", '{{index .Labels "spinefx.base"}}', image).stdout.strip()
    assert label == base_id
    base_layer = _podman("image", "inspect", "--format", "{{index .RootFS.Layers 0}}", BASE).stdout.strip()
    assert _podman("image", "inspect", "--format", "{{index .RootFS.Layers 0}}", image).stdout.strip() == (
        base_layer
    )
    freeze = _podman(
        "run", "--rm", *RUN_ARGS, "--network", "none", image, "pip", "freeze", "--exclude", "spinefx"
    )
    locked = [ln for ln in LOCK.read_text().splitlines() if ln and not ln.startswith("#")]
    assert sorted(freeze.stdout.splitlines()) == sorted(locked), (
        "the image's packages differ from envs/image.lock.txt. Fix: rebuild with "
        "`bash scripts/container_build.sh --freeze envs/image.lock.txt` after changing pyproject.toml"
    )
    dpkg = _podman(
        "run", "--rm", *RUN_ARGS, "--network", "none", image,
        "dpkg-query", "-W", "-f", "${Package}=${Version}\\n",
    ).stdout.split()  # fmt: skip
    recorded = [ln for ln in DPKG.read_text().splitlines() if ln and not ln.startswith("#")]
    assert {p.split("=")[0] for p in dpkg} == {p.split("=")[0] for p in recorded}
    python = [p for p in dpkg if p.startswith(("python3.11=", "libpython3.11-stdlib="))]
    assert python and set(python) <= set(recorded), f"Debian's Python moved: {python}"
    moved = sorted(set(dpkg) - set(recorded))
    if moved:
        print(f"\nDebian packages updated since envs/image.dpkg.txt: {moved}")


def test_image_holds_the_pinned_software(image: str) -> None:
    """The image's own spinefx (not the checkout's) and every stage's stack import, at the versions
    pyproject.toml pins, torch included (it builds a ResNet on the CPU)."""
    code = (
        "import importlib.metadata as m, spinefx, spinefx.evaluate.stats, spinefx.dicom.convert;"
        "import spinefx.imaging.register, torch, torchvision;"
        "print(spinefx.__file__);"
        "print(*(f'{p}=={m.version(p)}' for p in "
        "('snakemake', 'numpy', 'pandas', 'scipy', 'statsmodels', 'SimpleITK', 'pydicom', 'h5py',"
        " 'torch', 'torchvision')));"
        "net = torchvision.models.resnet18(num_classes=2); print(tuple(net(torch.zeros(1, 3, 64, 64)).shape))"
    )
    proc = _podman("run", "--rm", *RUN_ARGS, "--network", "none", image, "python", "-c", code)
    out = proc.stdout.split("\n")
    assert out[0].startswith(IMAGE_SPINEFX + "/")
    pyproject = (REPO / "pyproject.toml").read_text()
    for pin in out[1].split():
        assert f'"{pin}"' in pyproject, f"image has {pin}, pyproject.toml pins another version"
    assert out[2] == "(1, 2)"


def test_tiny_demo_runs_every_job_in_the_image(image: str, tmp_path: Path) -> None:
    """The whole tiny demo with `--sdm apptainer` through the podman adapter: every job runs in the
    image, and every job's log shows the image's Python and the image's spinefx, although the
    checkout is on PYTHONPATH and bound into every container (common.smk takes it off)."""
    env = {
        **os.environ,
        "PATH": f"{ADAPTER}{os.pathsep}{os.environ['PATH']}",
        "SPINEFX_IMAGE": f"docker://{image}",
        "PODMAN_APPTAINER_RUN_ARGS": " ".join(RUN_ARGS),
        "PYTHONPATH": str(REPO),
    }
    cmd = [SNAKEMAKE, "-s", str(REPO / "Snakefile"), "-d", str(tmp_path), "--configfile", str(TINY)]
    cmd += ["--cores", "2", "--sdm", "apptainer", "--apptainer-args", f"--bind {REPO}:{REPO}:ro"]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, env=env, timeout=3600)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"containerised tiny demo failed:\n{out[-8000:]}"
    print(f"\ntiny demo in the image: {time.perf_counter() - start:.0f} s")
    table = out.split("Job stats:")[1].split("total")[0]
    jobs = {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.M)}
    script_jobs = sum(n for rule, n in jobs.items() if rule not in ("all", "total"))
    assert out.count("Activating singularity image") == script_jobs, "a job ran outside the image"
    logs = sorted((tmp_path / "logs").rglob("*.log"))
    assert len(logs) == script_jobs, [str(p.relative_to(tmp_path)) for p in logs]  # one log per job
    for log in logs:
        lines = [ln for ln in log.read_text().splitlines() if "software: python=" in ln]
        assert lines, f"{log}: no software line"
        assert all(f"python={IMAGE_PYTHON} (3.11." in ln for ln in lines), f"{log}: {lines}"
        assert all(ln.endswith(f"spinefx=0.1.0 from {IMAGE_SPINEFX}") for ln in lines), f"{log}: {lines}"
    r = tmp_path / "results"
    per_patient = pd.read_csv(r / "predictions" / "per_patient.tsv", sep="\t")
    assert len(per_patient) == 8 and per_patient["prob"].between(0, 1).all()
    for table in ("table2_diagnostic", "mcnemar", "model_auc"):
        assert len(pd.read_csv(r / "tables" / f"{table}.tsv", sep="\t")) > 0, table
    assert (r / "train" / "fold_1" / "model.pt").stat().st_size > 1_000_000


def test_assign_folds_rule_runs_inside_the_image(image: str, tmp_path: Path) -> None:
    """The workflow's assign_folds rule, run by the image's snakemake and python with no network, on
    the tiny demo config's patient sheet: stratified folds come out."""
    sheet = tmp_path / "results" / "demo" / "patients.tsv"
    sheet.parent.mkdir(parents=True)
    rows = [
        {
            "patient_id": f"demo_{i:03d}",
            "label": "malignant" if i % 2 else "benign",
            "t1_dicom": f"dicom/demo_{i:03d}/t1",
            "t2_dicom": f"dicom/demo_{i:03d}/t2",
            "lesion_instance": 5,
            "box_x0": 10,
            "box_y0": 12,
            "box_x1": 30,
            "box_y1": 34,
        }
        for i in range(1, 9)
    ]
    pd.DataFrame(rows).to_csv(sheet, sep="\t", index=False)
    proc = _podman(
        "run",
        "--rm",
        *RUN_ARGS,
        "--network",
        "none",
        "-v",
        f"{REPO}:/repo:ro",
        "-v",
        f"{tmp_path}:/work",
        image,
        "snakemake",
        "results/folds.tsv",
        "-s",
        "/repo/Snakefile",
        "-d",
        "/work",
        "--configfile",
        f"/repo/{TINY.relative_to(REPO)}",
        "--cores",
        "1",
        "--allowed-rules",
        "assign_folds",
    )
    assert "Finished jobid: 0 (Rule: assign_folds)" in proc.stdout + proc.stderr
    folds = pd.read_csv(tmp_path / "results" / "folds.tsv", sep="\t")
    assert list(folds.columns) == ["patient_id", "label", "fold"]
    assert sorted(folds["patient_id"]) == [r["patient_id"] for r in rows]
    counts = folds.groupby(["fold", "label"]).size().unstack()
    assert counts.shape == (2, 2) and (counts == 2).all().all(), counts
    assert "assign_folds" in (tmp_path / "logs" / "assign_folds.log").read_text()
