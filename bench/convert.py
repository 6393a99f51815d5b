"""Benchmark: spinefx DICOM -> NIfTI vs dcm2niix on the same demo series, in one run.

Both write gzipped NIfTI. dcm2niix runs as the command-line tool (its process start is part of
its time, as in any workflow that calls it); spinefx is timed as the library call the workflow
makes, after one warm-up so imports and first-call costs are not counted; the Python start-up and
import cost is printed separately for honesty. Last line: ratio=<spinefx s / dcm2niix s>.

Usage: python bench/convert.py [--patients 4] [--seed 1] [--repeats 3] [--geometry default]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from spinefx import demo  # noqa: E402
from spinefx.dicom.convert import convert_series  # noqa: E402


def _dcm2niix() -> str:
    exe = Path(sys.executable).parent / "dcm2niix"
    found = str(exe) if exe.is_file() else shutil.which("dcm2niix")
    if not found:
        sys.exit("dcm2niix not found (pip install dcm2niix)")
    return found


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--patients", type=int, default=4)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--geometry", default="default")
    args = ap.parse_args()
    exe = _dcm2niix()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        demo.write_demo_cohort(tmp / "demo", n_patients=args.patients, seed=args.seed, geometry=args.geometry)
        series = sorted(p for p in (tmp / "demo" / "dicom").glob("*/*") if p.is_dir())
        n_files = sum(len(list(s.iterdir())) for s in series)
        # warm-up (page cache, imports, first-call costs) for both tools
        convert_series(series[0], tmp / "warm" / "v.nii.gz", tmp / "warm" / "v.json")
        subprocess.run(
            [exe, "-z", "y", "-b", "n", "-o", str(tmp / "warm"), str(series[0])],
            check=True,
            capture_output=True,
        )
        ours, theirs = [], []
        for r in range(args.repeats):
            out = tmp / f"ours{r}"
            t0 = time.perf_counter()
            for s in series:
                convert_series(
                    s, out / s.parent.name / f"{s.name}.nii.gz", out / s.parent.name / f"{s.name}.json"
                )
            ours.append(time.perf_counter() - t0)
            out = tmp / f"theirs{r}"
            t0 = time.perf_counter()
            for s in series:
                dst = out / s.parent.name / s.name
                dst.mkdir(parents=True)
                subprocess.run(
                    [exe, "-z", "y", "-b", "y", "-f", "%s", "-o", str(dst), str(s)],
                    check=True,
                    capture_output=True,
                )
            theirs.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        subprocess.run(
            [sys.executable, "-c", "import spinefx.dicom.convert"],
            check=True,
            cwd=Path(__file__).resolve().parents[1],
        )
        import_s = time.perf_counter() - t0
    ours_s, theirs_s = float(np.median(ours)), float(np.median(theirs))
    print(f"series={len(series)} files={n_files} geometry={args.geometry} repeats={args.repeats} (median)")
    print(f"spinefx_seconds={ours_s:.3f} ({ours_s / len(series) * 1000:.1f} ms per series, gzip level 1)")
    print(
        f"dcm2niix_seconds={theirs_s:.3f} ({theirs_s / len(series) * 1000:.1f} ms per series, "
        "-z y, process start included)"
    )
    print(f"python_start_and_import_seconds={import_s:.3f} (paid once per workflow job, not counted above)")
    print(f"ratio={ours_s / theirs_s:.3f}")


if __name__ == "__main__":
    main()
