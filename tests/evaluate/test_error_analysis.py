"""The error analysis from rows equals the one from counts, and reproduces the paper's R1 numbers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import fisher_exact

from spinefx.evaluate import error_analysis as ea

FEATS = ("homogeneous_marrow_signal", "diffuse_signal_change", "band_pattern_edema")
# The paper: R1's 54 false positives vs 86 true negatives among 140 benign patients.
PAPER = {
    "homogeneous_marrow_signal": (6, 42),
    "diffuse_signal_change": (20, 11),
    "band_pattern_edema": (24, 20),
}


def cohort() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    ids = [f"b{i:03d}" for i in range(140)] + [f"m{i:02d}" for i in range(50)]
    truth = pd.DataFrame({"patient_id": ids, "label": ["benign"] * 140 + ["malignant"] * 50})
    fp = np.r_[np.ones(54, bool), np.zeros(86, bool)]
    call = np.where(fp, "malignant", "benign").tolist() + ["malignant"] * 39 + ["benign"] * 11
    calls = pd.DataFrame({"patient_id": ids, "reader": "Resident R1", "call": call})
    feats = pd.DataFrame({"patient_id": ids})
    for f, (in_fp, in_tn) in PAPER.items():
        benign = np.r_[np.ones(in_fp), np.zeros(54 - in_fp), np.ones(in_tn), np.zeros(86 - in_tn)]
        feats[f] = np.r_[benign, np.zeros(50)].astype(int)
    return calls, truth, feats


def test_paper_r1_error_analysis_from_rows() -> None:
    calls, truth, feats = cohort()
    t = ea.error_analysis(calls, truth, feats, feature_names=FEATS)
    fp = t[t["comparison"] == "false_positive vs true_negative"].set_index("feature")
    for f, (in_fp, in_tn) in PAPER.items():
        assert tuple(fp.loc[f, list(ea.COUNT_COLUMNS)]) == (in_fp, 54, in_tn, 86)
        assert fp.loc[f, "p_value"] == pytest.approx(
            fisher_exact([[in_fp, 54 - in_fp], [in_tn, 86 - in_tn]]).pvalue
        )
    # the paper: homogeneous and diffuse p < 0.01, band p = 0.01 (0.0145)
    assert fp.loc["homogeneous_marrow_signal", "p_value"] < 0.01
    assert fp.loc["diffuse_signal_change", "p_value"] < 0.01
    assert round(fp.loc["band_pattern_edema", "p_value"], 2) == 0.01
    # Holm within the comparison, by hand
    p = fp["p_value"].to_numpy()
    order = np.argsort(p)
    holm = np.minimum(1, np.maximum.accumulate(p[order] * (3 - np.arange(3))))
    assert np.allclose(fp["p_holm"].to_numpy()[order], holm)
    fn = t[t["comparison"] == "false_negative vs true_positive"]
    assert (fn["error_total"] == 11).all() and (fn["correct_total"] == 39).all()
    # rows and counts give one answer
    again = ea.error_analysis_from_counts(t[["reader", "comparison", "feature", *ea.COUNT_COLUMNS]])
    pd.testing.assert_frame_equal(again, t)
