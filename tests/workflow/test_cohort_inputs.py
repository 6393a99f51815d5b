"""A user's cohort as real exports come: study folders holding every series, picked by the `series:` rules."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pydicom
import pytest
from study_fixtures import write_study

from spinefx.demo.cohort import write_demo_cohort

from workflow_run import TINY, snakemake


def study_cohort(
    tmp_path: Path, n_patients: int = 6, series: tuple[str, ...] = ("loc", "stir", "ax")
) -> Path:
    """Demo patients whose T1W and T2W sit in one study folder with a localizer, a STIR and an axial T2."""
    demo = tmp_path / "demo"
    write_demo_cohort(demo, n_patients=n_patients, seed=3, geometry="default", malignant_fraction=0.5)
    sheet = pd.read_csv(demo / "patients.tsv", sep="\t", dtype=str, keep_default_na=False)
    for i, pid in enumerate(sheet["patient_id"]):
        study = tmp_path / "studies" / pid
        study.mkdir(parents=True)
        for s in ("t1", "t2"):
            for f in (demo / "dicom" / pid / s).iterdir():
                shutil.copy(f, study / f"{s}_{f.name}")
        others = tmp_path / "others" / pid
        uids = write_study(others, seed=100 + i)
        for f in others.iterdir():
            if f.name.split("_")[0] in series:  # the study's other series
                shutil.copy(f, study / f.name)
        assert len(uids) == 5
    sheet["t1_dicom"] = [f"studies/{p}" for p in sheet["patient_id"]]
    sheet["t2_dicom"] = sheet["t1_dicom"]
    sheet = sheet.drop(columns=[c for c in ("t1_series_uid", "t2_series_uid") if c in sheet])
    sheet.to_csv(tmp_path / "patients.tsv", sep="\t", index=False)
    config = tmp_path / "cohort.yaml"
    config.write_text(f"cohort: {tmp_path / 'patients.tsv'}\n")
    return config


@pytest.mark.slow
def test_study_folders_run_through_with_rules_and_no_uids(tmp_path: Path) -> None:
    config = study_cohort(tmp_path)
    snakemake(tmp_path, "--cores", "2", "--configfile", str(TINY), str(config))
    calls = pd.read_csv(tmp_path / "results" / "predictions" / "per_patient.tsv", sep="\t")
    assert len(calls) == 6
    for pid in calls["patient_id"]:
        for s in ("t1", "t2"):
            demo_file = next((tmp_path / "demo" / "dicom" / pid / s).iterdir())
            uid = str(pydicom.dcmread(demo_file, stop_before_pixels=True).SeriesInstanceUID)
            log = (tmp_path / "logs" / "dicom_to_nifti" / f"{pid}_{s}.log").read_text()
            assert f"series {uid} chosen by the `series: {s}` rule" in log
            assert (tmp_path / "results" / "nifti" / pid / f"{s}.nii.gz").is_file()


def test_study_folder_conversion_picks_by_rule_or_lists_candidates(tmp_path: Path) -> None:
    """Fast: one patient's two conversions; a second T2W-like series (rule widened) fails with both listed."""
    config = study_cohort(tmp_path, n_patients=4)
    targets = [f"results/nifti/demo_001/{s}.nii.gz" for s in ("t1", "t2")]
    snakemake(tmp_path, *targets, "--cores", "1", "--configfile", str(TINY), str(config))  # targets first
    log = (tmp_path / "logs" / "dicom_to_nifti" / "demo_001_t2.log").read_text()
    assert "chosen by the `series: t2` rule" in log
    wide = tmp_path / "wide.yaml"
    wide.write_text("series:\n  t2: {plane: sagittal, tr: [1500, null]}\n")  # STIR now matches too
    proc = snakemake(
        tmp_path,
        "results/nifti/demo_002/t2.nii.gz",
        "--cores",
        "1",
        "--configfile",
        str(TINY),
        str(config),
        str(wide),
        check=False,
    )
    assert proc.returncode != 0
    log = (tmp_path / "logs" / "dicom_to_nifti" / "demo_002_t2.log").read_text()
    assert "2 series match" in log and "SAG STIR" in log and "t2_series_uid" in log
    assert not (tmp_path / "results" / "nifti" / "demo_002" / "t2.nii.gz").exists()
