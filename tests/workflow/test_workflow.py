"""The workflow through Snakemake itself: planning, a tiny real run, reruns of one fold."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest

from workflow_run import REPO, SNAKEMAKE, TINY, snakemake


def planned_jobs(output: str) -> dict[str, int]:
    """The 'Job stats' table of a dry run as {rule: count}."""
    table = output.split("Job stats:")[1].split("total")[0]
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.M)}


def test_dry_run_default_config_plans_every_rule(tmp_path: Path) -> None:
    proc = snakemake(tmp_path, "-n", "--quiet", "rules")
    jobs = planned_jobs(proc.stdout + proc.stderr)
    assert jobs == {
        "demo_cohort": 1,
        "demo_held_aside": 1,  # + 8 held-aside patients, converted/registered/cut, never trained on
        "dicom_to_nifti": 176,
        "register_t1_to_t2": 88,
        "extract_patches": 88,
        "augment_patches": 80,
        "assign_folds": 1,
        "train_fold": 5,
        "merge_predictions": 1,
        "stats_tables": 1,
        "figures": 1,
        "stats_figures": 1,
        "run_info": 1,
        "calibrate": 1,
        "assisted_reading": 1,
        "final_model": 1,
        "predict": 1,
        "case_card": 8,
        "all": 1,
    }


def real_cohort(tmp_path: Path, rows: list[tuple[str, str]]) -> Path:
    lines = ["patient_id\tlabel\tt1_dicom\tt2_dicom\tlesion_instance\tbox_x0\tbox_y0\tbox_x1\tbox_y1"]
    for pid, label in rows:
        for s in ("t1", "t2"):
            (tmp_path / "cohort" / pid / s).mkdir(parents=True, exist_ok=True)
        lines.append(f"{pid}\t{label}\tcohort/{pid}/t1\tcohort/{pid}/t2\t7\t10\t10\t40\t40")
    sheet = tmp_path / "patients.tsv"
    sheet.write_text("\n".join(lines) + "\n")
    config = tmp_path / "cohort.yaml"
    config.write_text(f"cohort: {sheet}\nfolds: {{k: 2}}\n")
    return config


def test_dry_run_real_cohort_reads_the_sheet(tmp_path: Path) -> None:
    config = real_cohort(
        tmp_path, [("A1", "benign"), ("A2", "benign"), ("B1", "malignant"), ("B2", "malignant")]
    )
    proc = snakemake(tmp_path, "-n", "--quiet", "rules", "--configfile", str(config))
    jobs = planned_jobs(proc.stdout + proc.stderr)
    assert "demo_cohort" not in jobs
    assert jobs["dicom_to_nifti"] == 8 and jobs["register_t1_to_t2"] == 4 and jobs["train_fold"] == 2


def test_bad_sheet_fails_the_dry_run_with_patient_and_fix(tmp_path: Path) -> None:
    config = real_cohort(
        tmp_path, [("A1", "benign"), ("A1", "benign"), ("B1", "malignant"), ("B2", "malignant")]
    )
    proc = snakemake(tmp_path, "-n", "--configfile", str(config), check=False)
    assert proc.returncode != 0
    assert "duplicate patient_id(s): A1" in proc.stdout + proc.stderr


def test_too_few_patients_for_folds_fails_the_dry_run(tmp_path: Path) -> None:
    config = real_cohort(tmp_path, [("A1", "benign"), ("A2", "benign"), ("B1", "malignant")])
    proc = snakemake(tmp_path, "-n", "--configfile", str(config), check=False)
    assert proc.returncode != 0
    assert "set folds.k to at most 1" in proc.stdout + proc.stderr


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("train: {epochz: 3}", "epochz"),
        ("folds: {k: 1}", "1 is less than the minimum of 2"),
        ("merge: {threshold: 1.5}", "1.5 is greater than or equal to the maximum of 1"),
        ("merge: {threshold: 0}", "0 is less than or equal to the minimum of 0"),
        ("train: {epochs: many}", "'many' is not of type 'integer'"),
        ("merge: {method: median}", "'median' is not one of"),
    ],
)
def test_bad_config_fails_before_any_job(tmp_path: Path, text: str, needle: str) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(text + "\n")
    proc = snakemake(tmp_path, "-n", "--configfile", str(bad), check=False)
    assert proc.returncode != 0
    assert needle in proc.stdout + proc.stderr
    assert not (tmp_path / "results").exists()


def test_tiny_run_writes_every_output_of_the_design(tiny_run: Path) -> None:
    r = tiny_run / "results"
    patients = pd.read_csv(r / "demo" / "patients.tsv", sep="\t")
    assert len(patients) == 8
    for pid in patients["patient_id"]:
        for s in ("t1", "t2"):
            sidecar = json.loads((r / "nifti" / pid / f"{s}.json").read_text())
            assert len(sidecar["instance_numbers"]) == sidecar["size"][2]
            assert (r / "nifti" / pid / f"{s}.nii.gz").stat().st_size > 1000
        reg = r / "registration" / pid
        qc = json.loads((reg / "qc.json").read_text())
        assert qc["tre_mm"] < 2.0, f"{pid}: registration TRE {qc['tre_mm']} mm"
        for name in ("t1_to_t2.tfm", "t1_in_t2.nii.gz", "qc.png"):
            assert (reg / name).stat().st_size > 0
        with h5py.File(r / "patches" / f"{pid}.h5") as h5:
            assert h5["original"].shape[1:] == (6, 64, 64)
            assert h5["augmented"].shape[1:] == (6, 64, 64)
            assert h5.attrs["label"] in ("benign", "malignant")
    folds = pd.read_csv(r / "folds.tsv", sep="\t")
    assert sorted(folds["fold"].unique()) == [1, 2]
    for k in (1, 2):
        d = r / "train" / f"fold_{k}"
        history = pd.read_csv(d / "history.tsv", sep="\t")
        assert list(history.columns) == ["epoch", "train_loss", "val_loss", "lr", "seconds"]
        preds = pd.read_csv(d / "predictions.tsv", sep="\t")
        assert set(preds["patient_id"]) == set(folds.loc[folds["fold"] == k, "patient_id"])
        assert preds["prob"].between(0, 1).all()
        assert (d / "model.pt").stat().st_size > 1_000_000
    per_patient = pd.read_csv(r / "predictions" / "per_patient.tsv", sep="\t")
    assert list(per_patient.columns) == ["patient_id", "label", "fold", "prob", "call"]
    assert len(per_patient) == 8
    assert (r / "predictions" / "per_slice.tsv").exists()
    for table in ("table1_features", "table2_diagnostic", "mcnemar", "feature_model", "model_auc"):
        df = pd.read_csv(r / "tables" / f"{table}.tsv", sep="\t")
        assert len(df) > 0, table
        assert (r / "tables" / f"{table}.md").read_text().count("|") > 4
    table2 = pd.read_csv(r / "tables" / "table2_diagnostic.tsv", sep="\t")
    assert {"msk", "r4", "r1", "ResNet18 model"} <= set(table2["reader"])
    for fig in ("roc", "training_curves", "confusion", "saliency"):
        assert (r / "figures" / f"{fig}.png").read_bytes()[:4] == b"\x89PNG"
    for log in ("demo_cohort.log", "train_fold/fold_1.log", "stats_tables.log"):
        assert (tiny_run / "logs" / log).exists()


def test_rerun_one_fold_plans_only_that_fold_and_what_follows(tiny_run: Path) -> None:
    proc = snakemake(
        tiny_run,
        "-n",
        "--quiet",
        "rules",
        "--configfile",
        str(TINY),
        "--forcerun",
        "results/train/fold_2/model.pt",
    )
    jobs = planned_jobs(proc.stdout + proc.stderr)
    assert jobs == {
        "train_fold": 1,
        "merge_predictions": 1,
        "stats_tables": 1,
        "figures": 1,
        "stats_figures": 1,
        "calibrate": 1,
        "assisted_reading": 1,
        "final_model": 1,
        "predict": 1,
        "case_card": 4,
        "all": 1,
    }
    assert "fold=2" in proc.stdout + proc.stderr or "fold_2" in proc.stdout + proc.stderr


def test_complete_run_has_nothing_left_to_do(tiny_run: Path) -> None:
    proc = snakemake(tiny_run, "-n", "--configfile", str(TINY))
    assert "Nothing to be done" in proc.stdout + proc.stderr


def test_report_is_generated(tiny_run: Path) -> None:
    html = (tiny_run / "results" / "report.html").read_text(errors="replace")
    assert "table2_diagnostic.html" in html and "roc.png" in html and "run_info.html" in html


def test_no_phi_reaches_results_logs_or_report(tiny_run: Path) -> None:
    from spinefx.demo.cohort import demo_phi

    from privacy import phi_needles, scan

    patients = pd.read_csv(tiny_run / "results" / "demo" / "patients.tsv", sep="\t")
    needles: set[bytes] = set()
    for pid in patients["patient_id"]:
        needles |= phi_needles(demo_phi(3, pid))
    # the held-aside patients (seed + 1) and everything made from them, results/predict/ included
    for pid in pd.read_csv(tiny_run / "results" / "demo" / "new" / "predict.tsv", sep="\t")["patient_id"]:
        needles |= phi_needles(demo_phi(4, pid))
    assert (tiny_run / "results" / "predict" / "cards").is_dir()
    # The input DICOM does carry the PHI: prove the scan would find it there.
    dicom = tiny_run / "results" / "demo" / "dicom"
    assert scan([dicom], needles), "the demo DICOM should hold PHI; the scan or demo_phi is broken"
    hits = scan(
        [tiny_run / "results", tiny_run / "logs", tiny_run / "benchmarks", tiny_run / ".snakemake" / "log"],
        needles,
        exclude=[tiny_run / "results" / "demo" / "dicom", tiny_run / "results" / "demo" / "new" / "dicom"],
    )
    assert hits == []


def copy_run(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("locks"))
    return dst


def test_same_seed_same_patches_and_folds_bitwise(tiny_run: Path, tmp_path: Path) -> None:
    run = copy_run(tiny_run, tmp_path / "run")
    patch, folds = run / "results/patches/demo_002.h5", run / "results/folds.tsv"
    with h5py.File(patch) as h5:
        before = {name: h5[name][()] for name in ("original", "augmented")}
    folds_before = folds.read_bytes()
    patch.unlink()
    (run / "results/patches/original/demo_002.h5").unlink()
    folds.unlink()
    snakemake(
        run, str(patch.relative_to(run)), "results/folds.tsv", "--cores", "2", "--configfile", str(TINY)
    )
    with h5py.File(patch) as h5:
        for name, array in before.items():
            assert np.array_equal(h5[name][()], array), name
    assert folds.read_bytes() == folds_before


def test_killed_run_is_redone_and_ends_as_an_uninterrupted_one(tiny_run: Path, tmp_path: Path) -> None:
    """SIGKILL the whole Snakemake process group while fold 1 trains; after `--unlock` the rerun
    redoes the job and its predictions equal those of the uninterrupted run. The run targets the
    merged predictions (not the whole DAG) so the test pays for one fold and the merge only."""
    run = copy_run(tiny_run, tmp_path / "run")
    expected = (tiny_run / "results/train/fold_1/predictions.tsv").read_bytes()
    log = run / "logs/train_fold/fold_1.log"
    log.unlink()
    cmd = [SNAKEMAKE, "-s", str(REPO / "Snakefile"), "-d", str(run), "--cores", "2"]
    cmd += ["--configfile", str(TINY), "--forcerun", "results/train/fold_1/model.pt"]
    cmd += ["--", "results/predictions/per_patient.tsv"]
    proc = subprocess.Popen(
        cmd, cwd=run, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    deadline = time.monotonic() + 240
    while not (log.exists() and log.stat().st_size > 0) and time.monotonic() < deadline:
        assert proc.poll() is None, "the run ended before it could be interrupted"
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)  # mid-training, as a power loss or an OOM kill: nothing cleans up
    proc.wait()
    locked = snakemake(run, "--cores", "2", "--configfile", str(TINY), check=False)
    assert locked.returncode != 0 and "--unlock" in locked.stdout + locked.stderr  # the fix is named
    snakemake(run, "--unlock", "--configfile", str(TINY))
    # The user repeats the interrupted command: the killed job is planned again, and everything after it.
    again = cmd[5:]  # --cores 2 --configfile ... --forcerun ... -- target; snakemake() adds -s and -d
    plan = planned_jobs(snakemake(run, "-n", "--quiet", "rules", *again).stdout)
    assert plan.get("train_fold") == 1 and plan.get("merge_predictions") == 1, plan
    snakemake(run, *again)
    assert (run / "results/train/fold_1/predictions.tsv").read_bytes() == expected


def stacked_config(tmp_path: Path) -> Path:
    """The tiny config with every fold in one job (train.folds_per_job: all)."""
    path = tmp_path / "stacked.yaml"
    path.write_text("train: {folds_per_job: all}\n")
    return path


def test_dry_run_stacked_plans_one_training_job(tmp_path: Path) -> None:
    proc = snakemake(
        tmp_path, "-n", "--quiet", "rules", "--configfile", str(TINY), str(stacked_config(tmp_path))
    )
    jobs = planned_jobs(proc.stdout + proc.stderr)
    assert jobs["train_folds_stacked"] == 1 and "train_fold" not in jobs
    assert jobs["merge_predictions"] == 1 and jobs["figures"] == 1


def test_stacked_run_writes_the_files_of_one_job_per_fold(tiny_run: Path, tmp_path: Path) -> None:
    """folds_per_job: all retrains both folds in one job; merge, stats and figures read its files,
    and on the CPU (per-fold loop) each fold's predictions equal the per-fold jobs' bitwise."""
    run = copy_run(tiny_run, tmp_path / "run")
    config = stacked_config(tmp_path)
    args = ("--cores", "2", "--configfile", str(TINY), str(config))
    snakemake(run, *args, "--forcerun", "results/train/fold_1/model.pt")
    for k in (1, 2):
        name = f"results/train/fold_{k}/predictions.tsv"
        assert (run / name).read_bytes() == (tiny_run / name).read_bytes(), name
        assert (run / f"results/train/fold_{k}/curve.png").read_bytes()[:4] == b"\x89PNG"
    assert "stacked job of folds [1, 2]" in (run / "logs/train_folds_stacked.log").read_text()
    assert (run / "benchmarks/train_folds_stacked.tsv").exists()
    assert not (run / "results/train/stacked_state").exists()
    per_patient = pd.read_csv(run / "results/predictions/per_patient.tsv", sep="\t")
    assert per_patient.equals(pd.read_csv(tiny_run / "results/predictions/per_patient.tsv", sep="\t"))
    done = snakemake(run, "-n", "--configfile", str(TINY), str(config))
    assert "Nothing to be done" in done.stdout + done.stderr
