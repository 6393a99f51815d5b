"""A user's cohort as real exports come: study folders holding every series, picked by the `series:` rules;
or NIfTI files already converted (a BIDS tree made by dcm2niix)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pydicom
import pytest
import SimpleITK as sitk
from study_fixtures import write_study

from spinefx.demo.cohort import read_truth, truth_transform, vertebra_centers, write_demo_cohort
from spinefx.dicom.convert import convert_series
from spinefx.imaging.register import target_registration_error

from dicom_fixtures import dcm2niix_binary
from workflow_run import TINY, snakemake


def demo_cohort(tmp_path: Path, n_patients: int) -> Path:
    """The tiny demo cohort every cohort here is made from: DICOM and sheets under tmp_path/demo."""
    demo = tmp_path / "demo"
    write_demo_cohort(demo, n_patients=n_patients, seed=3, geometry="default", malignant_fraction=0.5)
    return demo


def study_cohort(
    tmp_path: Path, n_patients: int = 6, series: tuple[str, ...] = ("loc", "stir", "ax")
) -> Path:
    """Demo patients whose T1W and T2W sit in one study folder with a localizer, a STIR and an axial T2."""
    demo = demo_cohort(tmp_path, n_patients)
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


def _box_in_file_grid(ref: dict, nifti: Path, k: int, box: list[int]) -> tuple[int, list[int]]:
    """The DICOM-route lesion slice ``k`` and box (pixel areas, x1/y1 exclusive) in ``nifti``'s own voxels,
    through physical space: what a user reads off a viewer showing the dcm2niix file."""
    to_file = np.linalg.inv(nib.load(str(nifti)).affine) @ np.asarray(ref["affine_ras"])
    x0, y0, x1, y1 = box
    corners = np.array([[x0 - 0.5, y0 - 0.5, k, 1.0], [x1 - 0.5, y1 - 0.5, k, 1.0]]) @ to_file.T
    lo, hi = corners.min(axis=0), corners.max(axis=0)
    assert np.isclose(lo[2], hi[2]) and np.isclose(lo[2], round(lo[2]), atol=1e-3)  # the same slice
    return int(round(lo[2])), [
        int(round(lo[0] + 0.5)),
        int(round(lo[1] + 0.5)),
        int(round(hi[0] + 0.5)),
        int(round(hi[1] + 0.5)),
    ]


def nifti_cohort(tmp_path: Path, n_patients: int = 6, keep_dicom: tuple[str, ...] = ()) -> Path:
    """Demo patients converted by dcm2niix into a BIDS tree (sub-*/anat/*_T1w.nii.gz, *_T2w.nii.gz); the
    sheet gives t1_nifti/t2_nifti and lesion_slice with the box in the files' voxels (dcm2niix flips the
    rows). Patients in ``keep_dicom`` stay DICOM rows of the same sheet."""
    demo = demo_cohort(tmp_path, n_patients)
    sheet = pd.read_csv(demo / "patients.tsv", sep="\t", dtype=str, keep_default_na=False)
    rows = []
    for rec in sheet.to_dict("records"):
        pid = rec["patient_id"]
        if pid in keep_dicom:
            rows.append(rec)
            continue
        anat = tmp_path / "bids" / f"sub-{pid.replace('_', '')}" / "anat"
        anat.mkdir(parents=True)
        files = {}
        for s, suffix in (("t1", "T1w"), ("t2", "T2w")):
            name = f"{anat.parent.name}_{suffix}"
            cmd = [dcm2niix_binary(), "-z", "y", "-b", "y", "-f", name, "-o", str(anat), rec[f"{s}_dicom"]]
            subprocess.run(cmd, check=True, capture_output=True, cwd=demo)
            files[s] = anat / f"{name}.nii.gz"
        ref = convert_series(demo / rec["t2_dicom"], tmp_path / "ref.nii.gz", tmp_path / "ref.json")
        k_dicom = ref["instance_numbers"].index(int(rec["lesion_instance"]))
        box = [int(rec[c]) for c in ("box_x0", "box_y0", "box_x1", "box_y1")]
        k, box = _box_in_file_grid(ref, files["t2"], k_dicom, box)
        rows.append(
            {
                "patient_id": pid,
                "label": rec["label"],
                "t1_nifti": str(files["t1"].relative_to(tmp_path)),
                "t2_nifti": str(files["t2"].relative_to(tmp_path)),
                "lesion_slice": str(k),
                **dict(zip(("box_x0", "box_y0", "box_x1", "box_y1"), map(str, box), strict=True)),
            }
        )
    out = pd.DataFrame(rows).fillna("")
    out["t1_dicom"] = [f"demo/{v}" if v else "" for v in out.get("t1_dicom", [""] * len(out))]
    out["t2_dicom"] = [f"demo/{v}" if v else "" for v in out.get("t2_dicom", [""] * len(out))]
    out.to_csv(tmp_path / "patients.tsv", sep="\t", index=False)
    config = tmp_path / "cohort.yaml"
    config.write_text(f"cohort: {tmp_path / 'patients.tsv'}\n")
    return config


def _planned(stdout: str) -> dict[tuple[str, str], str]:
    """(patient, series) -> the rule a dry run plans to write results/nifti/{patient}/{series}.nii.gz."""
    found = {}
    # a group's jobs (the per-patient group `patient`) are printed indented under their group job
    for block in re.split(r"\n(?=\s*rule \w+:)", stdout):
        rule = re.match(r"\s*rule (\w+):", block)
        wild = re.search(r"wildcards: patient=([\w-]+), series=(t[12])", block)
        if rule and wild and rule.group(1) in ("dicom_to_nifti", "nifti_input"):
            found[wild.groups()] = rule.group(1)
    return found


@pytest.mark.skipif(dcm2niix_binary() is None, reason="dcm2niix not installed")
def test_nifti_rows_plan_nifti_input_and_write_the_contract(tmp_path: Path) -> None:
    """Fast (issue 14 item 4): a sheet mixing NIfTI and DICOM rows plans `nifti_input` for the NIfTI
    patients and `dicom_to_nifti` for the others, in the dry run; one patient's files are written."""
    config = nifti_cohort(tmp_path, n_patients=4, keep_dicom=("demo_004",))
    proc = snakemake(tmp_path, "-n", "--configfile", str(TINY), str(config))
    planned = _planned(proc.stdout)
    expected = {(f"demo_00{i}", s): "nifti_input" for i in (1, 2, 3) for s in ("t1", "t2")}
    expected |= {("demo_004", s): "dicom_to_nifti" for s in ("t1", "t2")}
    assert planned == expected
    targets = [f"results/nifti/demo_001/{s}.{e}" for s in ("t1", "t2") for e in ("nii.gz", "json")]
    snakemake(tmp_path, *targets, "--cores", "2", "--configfile", str(TINY), str(config))
    sheet = pd.read_csv(tmp_path / "patients.tsv", sep="\t", dtype=str, keep_default_na=False)
    row = sheet.set_index("patient_id").loc["demo_001"]
    sidecar = json.loads((tmp_path / "results/nifti/demo_001/t2.json").read_text())
    assert sidecar["source"] == "nifti" and sidecar["instance_numbers"] == list(
        range(1, sidecar["n_slices"] + 1)
    )
    ours = nib.load(str(tmp_path / "results/nifti/demo_001/t2.nii.gz"))
    given = nib.load(str(tmp_path / row["t2_nifti"]))
    np.testing.assert_array_equal(ours.get_fdata(), given.get_fdata())
    np.testing.assert_allclose(ours.affine, given.affine, atol=1e-4)
    dicom = next((tmp_path / "demo" / "dicom" / "demo_001" / "t2").iterdir())
    header = pydicom.dcmread(dicom, stop_before_pixels=True)
    tr = float(header.RepetitionTime)
    demo_row = pd.read_csv(tmp_path / "demo" / "patients.tsv", sep="\t", dtype=str).set_index("patient_id")
    x0, y0, x1, y1 = (int(demo_row.loc["demo_001", c]) for c in ("box_x0", "box_y0", "box_x1", "box_y1"))
    rows = int(header.Rows)  # README: dcm2niix flips the rows, so y becomes rows - y, x stays
    assert [int(row[c]) for c in ("box_x0", "box_y0", "box_x1", "box_y1")] == [x0, rows - y1, x1, rows - y0]
    assert int(row["lesion_slice"]) == int(demo_row.loc["demo_001", "lesion_instance"]) - 1
    assert sidecar["repetition_time"] == pytest.approx(tr)  # from dcm2niix's BIDS JSON, in ms again
    log = (tmp_path / "logs/nifti_input/demo_001_t2.log").read_text()
    assert f"lesion_slice {row['lesion_slice']}" in log
    assert not (tmp_path / "logs" / "dicom_to_nifti").exists()


@pytest.mark.slow
@pytest.mark.skipif(dcm2niix_binary() is None, reason="dcm2niix not installed")
def test_nifti_cohort_runs_end_to_end(tmp_path: Path) -> None:
    """Done-when of issue 14 item 4: a cohort given as NIfTI (dcm2niix's BIDS files) runs to the calls."""
    config = nifti_cohort(tmp_path)
    snakemake(tmp_path, "--cores", "2", "--configfile", str(TINY), str(config))
    calls = pd.read_csv(tmp_path / "results" / "predictions" / "per_patient.tsv", sep="\t")
    assert sorted(calls["patient_id"]) == [f"demo_00{i}" for i in range(1, 7)]
    assert calls["prob"].between(0, 1).all()
    assert not (tmp_path / "logs" / "dicom_to_nifti").exists()
    truth = read_truth(tmp_path / "demo" / "truth.tsv").set_index("patient_id")
    for pid in calls["patient_id"]:
        assert (tmp_path / "logs" / "nifti_input" / f"{pid}_t2.log").is_file()
        qc = json.loads((tmp_path / "results" / "registration" / pid / "qc.json").read_text())
        assert qc["metric_after"] < qc["metric_before"]
        # The file grids differ from the DICOM route's (rows flipped), the physical space does not: the
        # registration still recovers the demo's known motion.
        estimate = sitk.ReadTransform(str(tmp_path / "results" / "registration" / pid / "t1_to_t2.tfm"))
        row = truth.loc[pid]
        tre, _ = target_registration_error(truth_transform(row), estimate, vertebra_centers(row))
        assert tre < 1.0, (pid, tre)
        assert (tmp_path / "results" / "patches" / f"{pid}.h5").is_file()
    assert (tmp_path / "results" / "tables" / "table2_diagnostic.tsv").is_file()
