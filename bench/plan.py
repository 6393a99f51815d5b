"""How long `snakemake -n` takes to plan a large cohort: 1,000 patients, 10 folds (sheet only).

Goal (DESIGN.md): under 15 s. A 10-patient plan in the same run is the reference, so the ratio shows
how planning scales with the cohort on a noisy machine. Last line: seconds=<1,000-patient plan>.
With --mixed, also a 1,000-patient sheet of half DICOM, half NIfTI rows (mixed_seconds=).
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))


def make_cohort(root: Path, n: int, k: int, mixed: bool = False) -> Path:
    """A sheet of ``n`` DICOM rows; ``mixed``: every other row gives NIfTI files instead (issue 14 item 4),
    so each conversion rule's patient constraint lists 500 of 1,000 ids."""
    header = "patient_id\tlabel\tt1_dicom\tt2_dicom\tlesion_instance\tbox_x0\tbox_y0\tbox_x1\tbox_y1"
    lines = [header + ("\tt1_nifti\tt2_nifti\tlesion_slice" if mixed else "")]
    for i in range(n):
        pid = f"P{i:05d}"
        label = "malignant" if i % 4 == 0 else "benign"
        if mixed and i % 2:
            (root / "nifti" / pid).mkdir(parents=True)
            for s in ("t1", "t2"):
                (root / "nifti" / pid / f"{s}.nii.gz").touch()  # the sheet checks presence only
            lines.append(
                f"{pid}\t{label}\t\t\t\t100\t100\t160\t160\tnifti/{pid}/t1.nii.gz\tnifti/{pid}/t2.nii.gz\t7"
            )
            continue
        for s in ("t1", "t2"):
            (root / "dicom" / pid / s).mkdir(parents=True)
        lines.append(
            f"{pid}\t{label}\tdicom/{pid}/t1\tdicom/{pid}/t2\t8\t100\t100\t160\t160"
            + ("\t\t\t" if mixed else "")
        )
    (root / "patients.tsv").write_text("\n".join(lines) + "\n")
    config = root / "config.yaml"
    config.write_text(f"cohort: {root / 'patients.tsv'}\nfolds: {{k: {k}}}\n")
    return config


def plan_seconds(n: int, k: int, mixed: bool = False) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        config = make_cohort(root, n, k, mixed)
        start = time.perf_counter()
        proc = subprocess.run(
            [
                SNAKEMAKE,
                "-s",
                str(REPO / "Snakefile"),
                "-d",
                str(root),
                "-n",
                "--quiet",
                "rules",
                "--configfile",
                str(config),
            ],
            capture_output=True,
            text=True,
        )
        seconds = time.perf_counter() - start
        if proc.returncode != 0:
            sys.exit(f"plan of {n} patients failed:\n{proc.stderr[-3000:]}")
        total = [line for line in proc.stdout.splitlines() if line.startswith("total")]
        kind = ", half of them NIfTI rows" if mixed else ""
        print(
            f"{n} patients{kind}, {k} folds: {total[0].split()[-1] if total else '?'} jobs in {seconds:.2f} s"
        )
        return seconds


if __name__ == "__main__":
    reference = plan_seconds(10, 2)
    big = plan_seconds(1000, 10)
    if "--mixed" in sys.argv:  # DICOM and NIfTI rows in one sheet: the per-rule patient constraints' cost
        print(f"mixed_seconds={plan_seconds(1000, 10, mixed=True):.2f}")
    print(f"ratio_vs_10_patients={big / reference:.2f}")
    print(f"seconds={big:.2f}")
