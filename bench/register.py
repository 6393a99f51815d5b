"""Benchmark: T1 -> T2 registration seconds per demo patient (one ITK thread), with the TRE reached.

Converts each demo patient's two series once (not timed), then times register_t1_to_t2 including
its QC outputs (metric before/after, resampled T1, qc.png). Last line: seconds_per_patient=<x>.

Usage: python bench/register.py [--patients 6] [--seeds 1 2] [--geometry default]
       python bench/register.py --patients 80 --seeds 7   # the default demo cohort (config/config.yaml)
       python bench/register.py --patients 40 --seeds 8 --sampling random   # against the old default
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from spinefx.demo import cohort as demo  # noqa: E402
from spinefx.dicom.convert import convert_series  # noqa: E402
from spinefx.imaging.register import register_t1_to_t2  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--patients", type=int, default=6)
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--geometry", default="default")
    ap.add_argument(
        "--sampling", choices=("regular", "random", "none"), help="metric sampling (default: the schema's)"
    )
    args = ap.parse_args()
    sampling = {"sampling": args.sampling} if args.sampling else {}
    seconds, core, tres, worst = [], [], [], []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        for seed in args.seeds:
            root = tmp / f"seed{seed}"
            demo.write_demo_cohort(root / "demo", n_patients=args.patients, seed=seed, geometry=args.geometry)
            truth = demo.read_truth(root / "demo" / "truth.tsv")
            for _, row in truth.iterrows():
                pid = row["patient_id"]
                for s in ("t1", "t2"):
                    nii = root / "nifti" / pid / f"{s}.nii.gz"
                    convert_series(
                        root / "demo" / "dicom" / pid / s, nii, nii.parent / f"{s}.json", patient=pid
                    )
                t0 = time.perf_counter()
                qc = register_t1_to_t2(
                    root / "nifti" / pid / "t1.nii.gz",
                    root / "nifti" / pid / "t2.nii.gz",
                    **{
                        key: root / "reg" / pid / name
                        for key, name in (
                            ("tfm", "t1_to_t2.tfm"),
                            ("t1_in_t2", "t1_in_t2.nii.gz"),
                            ("qc_json", "qc.json"),
                            ("qc_png", "qc.png"),
                        )
                    },
                    truth=demo.truth_transform(row),
                    truth_points=demo.vertebra_centers(row),
                    patient=pid,
                    n_threads=1,
                    **sampling,
                )
                seconds.append(time.perf_counter() - t0)
                core.append(qc["seconds"])
                tres.append(qc["tre_mm"])
                worst.append(qc["tre_max_mm"])
                print(
                    f"seed {seed} {pid}: {seconds[-1]:.2f} s (optimisation {qc['seconds']:.2f} s), "
                    f"TRE {qc['tre_mm']:.3f} mm, worst point {qc['tre_max_mm']:.3f} mm "
                    f"(before {qc['tre_mm_before']:.2f} mm), "
                    f"iterations {qc['iterations_per_level']}",
                    flush=True,
                )
    tres_a = np.asarray(tres)
    print(f"patients={len(tres)} geometry={args.geometry} threads=1 sampling={args.sampling or 'default'}")
    print(f"tre_mm_mean={tres_a.mean():.3f} tre_mm_worst_patient={tres_a.max():.3f}")
    print(f"tre_mm_worst_point={max(worst):.3f} (largest error at any vertebral body centre, any patient)")
    print(f"optimisation_seconds_per_patient={np.mean(core):.3f}")
    print(f"seconds_per_patient={np.mean(seconds):.3f}")


if __name__ == "__main__":
    main()
