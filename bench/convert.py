"""Benchmark: spinefx DICOM -> NIfTI against dcm2niix, whole process against whole process.

Fair by construction: each tool runs as a fresh process (Python start-up and imports count for
spinefx exactly as dcm2niix's process start counts for it), both write gzip at level 1 (dcm2niix
`-z i -1`, spinefx `compression_level=1`), no sidecar work is skipped on either side (dcm2niix
writes its BIDS JSON), the median of ``--repeats`` runs after one warm-up of the page cache.

Cases: the demo patients' series (one process per series, as the workflow runs them), a 512x512x20
sagittal T2 like the paper's reconstruction, a 3-D 256x256x130 series, and one demo patient's two
series converted in ONE spinefx process against two dcm2niix processes. It then prints the per-job
cost of `dicom_to_nifti` inside the workflow from `benchmarks/dicom_to_nifti/*.tsv` when a run left
them. Last line: ratio=<spinefx s / dcm2niix s> for one demo patient's two series.

Usage: python bench/convert.py [--patients 2] [--repeats 3] [--benchmarks benchmarks/dicom_to_nifti]
"""

from __future__ import annotations

import argparse
import csv
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from spinefx.demo.cohort import write_demo_cohort  # noqa: E402
from spinefx.dicom.write import SeriesGeometry, SeriesInfo, make_uid, write_series  # noqa: E402

_CONVERT = (
    "import sys\n"
    "from spinefx.dicom.convert import convert_series\n"
    "args = sys.argv[1:]\n"
    "for i in range(0, len(args), 2):\n"
    "    convert_series(args[i], args[i + 1] + '.nii.gz', args[i + 1] + '.json', compression_level=1)\n"
)


def _dcm2niix() -> str:
    exe = Path(sys.executable).parent / "dcm2niix"
    found = str(exe) if exe.is_file() else shutil.which("dcm2niix")
    if not found:
        sys.exit("dcm2niix not found (pip install dcm2niix)")
    return found


def _timed(cmds: list[list[str]]) -> float:
    t0 = time.perf_counter()
    for cmd in cmds:
        subprocess.run(cmd, check=True, capture_output=True, cwd=ROOT)
    return time.perf_counter() - t0


def _spinefx_cmd(pairs: list[tuple[Path, Path]]) -> list[str]:
    return [sys.executable, "-c", _CONVERT, *[str(a) for pair in pairs for a in pair]]


def _dcm2niix_cmd(exe: str, series: Path, out: Path) -> list[str]:
    out.mkdir(parents=True, exist_ok=True)
    return [exe, "-z", "i", "-1", "-b", "y", "-f", "%s", "-o", str(out), str(series)]


def _compare(name: str, tmp: Path, exe: str, series: list[Path], one_process: bool, repeats: int) -> float:
    """Median whole-process seconds of both tools over ``series``; prints one line; returns the ratio."""
    ours, theirs = [], []
    for r in range(repeats + 1):  # run 0 warms the page cache and is dropped
        out = tmp / f"{name}_ours{r}"
        out.mkdir(parents=True)
        pairs = [(s, out / f"{i}") for i, s in enumerate(series)]
        cmds = [_spinefx_cmd(pairs)] if one_process else [_spinefx_cmd([p]) for p in pairs]
        t_ours = _timed(cmds)
        t_theirs = _timed(
            [_dcm2niix_cmd(exe, s, tmp / f"{name}_theirs{r}" / str(i)) for i, s in enumerate(series)]
        )
        if r:
            ours.append(t_ours)
            theirs.append(t_theirs)
    o, t = float(np.median(ours)), float(np.median(theirs))
    n_files = sum(len(list(s.iterdir())) for s in series)
    print(
        f"case={name} series={len(series)} files={n_files} spinefx_s={o:.3f} dcm2niix_s={t:.3f} "
        f"ratio={o / t:.2f}" + (" (spinefx: one process for all series)" if one_process else "")
    )
    return o / t


def _synthetic(
    folder: Path, shape: tuple[int, int, int], spacing: tuple[float, float, float], what: str
) -> Path:
    """A sagittal series of ``shape`` [slices, rows, cols] with smooth content (compresses like MR)."""
    rng = np.random.default_rng(0)
    k, r, c = np.meshgrid(*(np.linspace(0, 1, n, dtype=np.float32) for n in shape), indexing="ij")
    vol = 1000 * (0.5 + 0.3 * np.sin(9 * r) * np.cos(7 * c) + 0.1 * k) + rng.normal(0, 20, shape).astype(
        np.float32
    )
    geometry = SeriesGeometry(
        origin=(0.0, -shape[2] * spacing[2] / 2, shape[1] * spacing[1] / 2),
        row_dir=(0.0, 1.0, 0.0),
        col_dir=(0.0, 0.0, -1.0),
        pixel_spacing=(spacing[1], spacing[2]),
        slice_spacing=spacing[0],
    )
    info = SeriesInfo(
        what,
        3,
        make_uid("bench", what),
        make_uid("bench", what, "frame"),
        repetition_time=3000.0,
        echo_time=100.0,
    )
    write_series(np.clip(vol, 0, None), folder, geometry, info)
    return folder


def _workflow_jobs(folder: Path) -> None:
    files = sorted(folder.glob("*.tsv"))
    if not files:
        print(f"workflow_job_s=n/a (no benchmark files under {folder}; run the workflow first)")
        return
    seconds = []
    for f in files:
        with open(f) as fh:
            rows = list(csv.DictReader(fh, delimiter="\t"))
        seconds += [float(row["s"]) for row in rows]
    print(
        f"workflow_job_s median={np.median(seconds):.3f} mean={np.mean(seconds):.3f} jobs={len(files)} "
        f"(dicom_to_nifti benchmark files under {folder})"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--patients", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--benchmarks", type=Path, default=ROOT / "benchmarks" / "dicom_to_nifti")
    args = ap.parse_args()
    exe = _dcm2niix()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        write_demo_cohort(tmp / "demo", n_patients=max(args.patients, 4), seed=args.seed, geometry="default")
        patients = sorted(p for p in (tmp / "demo" / "dicom").iterdir() if p.is_dir())[: args.patients]
        series = [s for p in patients for s in sorted(p.iterdir()) if s.is_dir()]
        _compare("demo_series", tmp, exe, series, False, args.repeats)
        sag = _synthetic(tmp / "sag_t2", (20, 512, 512), (4.0, 0.47, 0.47), "T2 SAG 512")
        _compare("sagittal_512x512x20", tmp, exe, [sag], False, args.repeats)
        vol3d = _synthetic(tmp / "t1_3d", (130, 256, 256), (1.2, 1.0, 1.0), "T1 3D 256")
        _compare("3d_256x256x130", tmp, exe, [vol3d], False, args.repeats)
        _workflow_jobs(args.benchmarks)
        one = [s for s in sorted(patients[0].iterdir()) if s.is_dir()]
        ratio = _compare("demo_patient_two_series", tmp, exe, one, True, args.repeats)
    print(f"ratio={ratio:.3f}")


if __name__ == "__main__":
    main()
