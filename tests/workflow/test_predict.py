"""Prediction on new patients through the workflow (issue 17), on the tiny run: the outputs exist,
the workflow's calls equal the library's and the exported model's, calibration never saw the new
patients, and no PHI of the held-aside patients reaches results/predict/."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from spinefx.evaluate.calibrate import Calibrator
from spinefx.imaging.patchfile import read_patch_file
from spinefx.learn.final import aggregate_slices, predict_patients


def test_tiny_run_writes_final_model_calibration_and_cards(tiny_run: Path) -> None:
    r = tiny_run / "results"
    for path in (
        "final/model.pt",
        "final/model.torchscript.pt",
        "final/model_card.md",
        "final/calibration.json",
        "figures/calibration.png",
        "tables/calibrator.tsv",
        "tables/assisted_reading.md",
    ):
        assert (r / path).stat().st_size > 0, path
    pred = pd.read_csv(r / "predict" / "per_patient.tsv", sep="\t")
    assert list(pred.columns[:5]) == ["patient_id", "prob", "prob_sd", "prob_calibrated", "call"]
    assert sorted(pred["patient_id"]) == [f"new_{i:03d}" for i in range(1, 5)]
    for pid in pred["patient_id"]:
        assert (r / "predict" / "cards" / f"{pid}.png").read_bytes()[:4] == b"\x89PNG"
        assert pid in (r / "predict" / "cards" / f"{pid}.html").read_text()
    assert "simulated" in (r / "tables" / "assisted_reading.md").read_text()
    assert "Intended use" in (r / "final" / "model_card.md").read_text()


def test_new_patients_were_never_trained_on_nor_calibrated_on(tiny_run: Path) -> None:
    r = tiny_run / "results"
    new = set(pd.read_csv(r / "predict" / "per_patient.tsv", sep="\t")["patient_id"])
    folds = set(pd.read_csv(r / "folds.tsv", sep="\t")["patient_id"])
    calibrated = set(pd.read_csv(r / "predictions" / "calibrated.tsv", sep="\t")["patient_id"])
    assert new and not new & folds and not new & calibrated
    assert Calibrator.load(r / "final" / "calibration.json").n_patients == len(folds)
    assert "label" not in pd.read_csv(r / "demo" / "new" / "predict.tsv", sep="\t").columns


def test_workflow_prediction_equals_library_and_exported_model(tiny_run: Path) -> None:
    r = tiny_run / "results"
    wf = pd.read_csv(r / "predict" / "per_patient.tsv", sep="\t").set_index("patient_id")
    files = {pid: r / "patches" / "original" / f"{pid}.h5" for pid in wf.index}
    cal = Calibrator.load(r / "final" / "calibration.json")
    lib, _ = predict_patients(r / "final" / "model.pt", files, calibrate=cal)
    lib = lib.set_index("patient_id")
    # float32 convolutions: the job ran with other threads than this test (last-bit differences)
    np.testing.assert_allclose(wf["prob"], lib.loc[wf.index, "prob"], atol=1e-5)
    np.testing.assert_allclose(wf["prob_calibrated"], lib.loc[wf.index, "prob_calibrated"], atol=1e-5)
    assert list(wf["call"]) == list(lib.loc[wf.index, "call"])
    scripted = torch.jit.load(str(r / "final" / "model.torchscript.pt"))
    for pid, path in files.items():
        with torch.no_grad():
            probs = (
                scripted(torch.from_numpy(read_patch_file(path, augmented=False).original)).double().numpy()
            )
        assert float(aggregate_slices(probs, "max").mean()) == pytest.approx(wf.loc[pid, "prob"], abs=1e-5)


def test_no_phi_of_new_patients_in_results_predict(tiny_run: Path) -> None:
    from spinefx.demo.cohort import demo_phi

    from privacy import phi_needles, scan

    new = pd.read_csv(tiny_run / "results" / "demo" / "new" / "predict.tsv", sep="\t")["patient_id"]
    needles: set[bytes] = set()
    for pid in new:
        needles |= phi_needles(demo_phi(4, pid))  # held-aside seed: demo.seed + 1
    assert scan([tiny_run / "results" / "demo" / "new" / "dicom"], needles), (
        "the held-aside DICOM should hold PHI"
    )
    roots = [tiny_run / "results", tiny_run / "logs", tiny_run / "benchmarks"]
    assert (tiny_run / "results" / "predict" / "cards").is_dir()
    # the input DICOM of both demo cohorts is excluded (fake names come from a small pool, so the
    # cohort's own DICOM may hold the same ones)
    dicom = [tiny_run / "results" / "demo" / "dicom", tiny_run / "results" / "demo" / "new" / "dicom"]
    assert scan(roots, needles, exclude=dicom) == []
