"""How long `snakemake -n` takes to plan a large cohort: 1,000 patients, 10 folds (sheet only).

Goal (DESIGN.md): under 15 s. A 10-patient plan in the same run is the reference, so the ratio shows
how planning scales with the cohort on a noisy machine. Last line: seconds=<1,000-patient plan>.
The line before it, sbatch_jobs=<N>, is how many SLURM jobs the same plan makes through profiles/slurm:
per-patient steps run as group jobs of `group-components` patients, local rules need none (goal: < 50).
With --mixed, also a 1,000-patient sheet of half DICOM, half NIfTI rows (mixed_seconds=).
"""

from __future__ import annotations

import re
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


def local_rules() -> set[str]:
    """The Snakefile's `localrules:` (run by Snakemake itself on the submit host, no sbatch)."""
    block = (REPO / "Snakefile").read_text().split("\nlocalrules:\n")[1].split("\n\n")[0]
    return {name.strip(" ,") for name in block.split() if name.strip(" ,")}


def count_sbatch_jobs(log: str, local: set[str]) -> dict[str, int]:
    """SLURM jobs of a dry run through the SLURM profile: one per group job, one per other non-local job."""
    counts: dict[str, int] = {}
    for line in log.splitlines():
        group = re.search(r"\] Group job (\w+) \(jobs", line)
        rule = re.match(r"(?:\[[^]]*\] )?rule (\w+):$", line)  # top level; a group's own jobs are indented
        name = f"group {group.group(1)}" if group else rule.group(1) if rule else None
        if name and name not in local:
            counts[name] = counts.get(name, 0) + 1
    return counts


def plan_sbatch_jobs(n: int, k: int) -> int:
    """Plan n patients and k folds through profiles/slurm (a dry run submits nothing) and count its jobs."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        config = make_cohort(root, n, k)
        cmd = [SNAKEMAKE, "-s", str(REPO / "Snakefile"), "-d", str(root), "-n"]
        cmd += ["--profile", str(REPO / "profiles" / "slurm"), "--configfile", str(config)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            sys.exit(f"SLURM plan of {n} patients failed:\n{proc.stderr[-3000:]}")
        counts = count_sbatch_jobs(proc.stdout + proc.stderr, local_rules())
        print(
            f"{n} patients, {k} folds through profiles/slurm: "
            + ", ".join(f"{c} {r}" for r, c in counts.items())
        )
        return sum(counts.values())


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
    print(f"sbatch_jobs={plan_sbatch_jobs(1000, 10)}")
    print(f"seconds={big:.2f}")
