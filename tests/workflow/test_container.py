"""Build the software image from envs/Containerfile with podman and run a real rule inside it.

Marked `container` (not in the default suite): `make test-container`, or
`pytest -m container tests/workflow/test_container.py -s` to see the build seconds and image size.
Needs podman, runc and debootstrap (Debian: `apt-get install podman runc debootstrap`). The image is
the small one (no torch/torchvision: every rule but augment_patches, train_fold and figures) on a
debootstrapped Debian bookworm base, installed offline from a wheelhouse this machine's pip fills, so
the build needs neither a container registry nor PyPI from inside the build.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest

from workflow_run import REPO, TINY

pytestmark = pytest.mark.container

BASE = "localhost/spinefx-bookworm-min"
TAG = "localhost/spinefx:0.1.0-slim-test"
# crun and podman's default ulimits fail in this project's sandboxes; runc with these limits works.
RUN_ARGS = ["--runtime", "runc", "--ulimit", "nofile=4096:4096", "--ulimit", "nproc=4096:4096"]


def _need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.skip(f"{tool} is not installed (Debian: apt-get install podman runc debootstrap)")
    return path


def _podman(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    proc = subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout)
    output = f"{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    assert proc.returncode == 0, f"podman {' '.join(args)} failed:\n{output}"
    return proc


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The slim image, built from the recipe on a debootstrapped bookworm base; prints time and size."""
    for tool in ("podman", "runc"):
        _need(tool)
    if subprocess.run(["podman", "image", "exists", BASE]).returncode != 0:
        _need("debootstrap")
        rootfs = tmp_path_factory.mktemp("rootfs")
        subprocess.run(["debootstrap", "--variant=minbase", "bookworm", str(rootfs)], check=True, timeout=900)
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        subprocess.run(["podman", "import", "-", BASE], stdin=tar.stdout, check=True, timeout=600)
        assert tar.wait() == 0
        shutil.rmtree(rootfs, ignore_errors=True)
    start = time.perf_counter()
    proc = subprocess.run(
        ["bash", str(REPO / "scripts" / "container_build.sh"), "--tag", TAG, "--base", BASE]
        + ["--without", "torch torchvision", "--wheelhouse"],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    seconds = time.perf_counter() - start
    assert proc.returncode == 0, f"image build failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}"
    size_mb = int(_podman("image", "inspect", "--format", "{{.Size}}", TAG).stdout) / 1e6
    print(f"\ncontainer build: {seconds:.0f} s (wheelhouse + podman build), image {size_mb:.0f} MB")
    return TAG


def test_image_holds_the_pinned_software(image: str) -> None:
    """The image's own spinefx (not the checkout's) and the imaging/statistics stack import, at the
    versions pyproject.toml pins, and the versions that were left out are absent."""
    code = (
        "import importlib.metadata as m, spinefx, spinefx.evaluate.stats, spinefx.dicom.convert;"
        "import spinefx.imaging.register;"
        "print(spinefx.__file__);"
        "print(*(f'{p}=={m.version(p)}' for p in "
        "('snakemake', 'numpy', 'pandas', 'scipy', 'statsmodels', 'SimpleITK', 'pydicom', 'h5py')));"
        "import importlib.util as u; print('torch' if u.find_spec('torch') else 'no-torch')"
    )
    proc = _podman("run", "--rm", *RUN_ARGS, "--network", "none", image, "python", "-c", code)
    out = proc.stdout.split("\n")
    assert out[0].startswith("/opt/spinefx/lib/python3.11/site-packages/spinefx/")
    pyproject = (REPO / "pyproject.toml").read_text()
    for pin in out[1].split():
        assert f'"{pin}"' in pyproject, f"image has {pin}, pyproject.toml pins another version"
    assert out[2] == "no-torch"


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
