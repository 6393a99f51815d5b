"""Per-slice -> per-patient merge: the three rules, the threshold edge, and the leak checks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from spinefx.errors import SpinefxError
from spinefx.evaluate.merge import merge_predictions


def folds() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "patient_id": ["p1", "p2", "p3", "p4"],
            "label": ["malignant", "benign", "benign", "malignant"],
            "fold": [1, 1, 2, 2],
        }
    )


def predictions() -> dict[int, pd.DataFrame]:
    return {
        1: pd.DataFrame({"patient_id": ["p1"] * 3 + ["p2"] * 3, "slice": [4, 5, 6, 7, 8, 9],
                         "prob": [0.2, 0.9, 0.4, 0.1, 0.3, 0.5]}),
        2: pd.DataFrame({"patient_id": ["p4", "p4", "p3"], "slice": [2, 1, 3], "prob": [0.6, 0.2, 0.5]}),
    }  # fmt: skip


def test_max_is_default_and_tables_have_the_contract_columns() -> None:
    per_slice, per_patient = merge_predictions(predictions(), folds())
    assert list(per_slice.columns) == ["patient_id", "label", "fold", "slice", "prob"]
    assert list(per_patient.columns) == ["patient_id", "label", "fold", "prob", "call"]
    assert per_patient["patient_id"].tolist() == ["p1", "p2", "p3", "p4"]  # folds order
    assert per_patient["prob"].tolist() == [0.9, 0.5, 0.5, 0.6]
    assert per_patient["fold"].tolist() == [1, 1, 2, 2]
    assert per_patient["label"].tolist() == folds()["label"].tolist()
    # per-slice rows follow the folds order, slices ascending within a patient
    assert per_slice["patient_id"].tolist() == ["p1"] * 3 + ["p2"] * 3 + ["p3"] + ["p4"] * 2
    assert per_slice.loc[per_slice.patient_id == "p4", "slice"].tolist() == [1, 2]
    assert per_slice.loc[per_slice.patient_id == "p4", "prob"].tolist() == [0.2, 0.6]
    assert (per_slice.loc[per_slice.patient_id == "p3", "fold"] == 2).all()


def test_threshold_edge_is_malignant() -> None:
    _, pp = merge_predictions(predictions(), folds(), threshold=0.5)
    # p2 and p3 sit exactly on 0.5: ">= threshold" calls them malignant
    assert pp["call"].tolist() == ["malignant", "malignant", "malignant", "malignant"]
    _, pp = merge_predictions(predictions(), folds(), threshold=0.6)
    assert pp["call"].tolist() == ["malignant", "benign", "benign", "malignant"]
    _, pp = merge_predictions(predictions(), folds(), threshold=0.6000001)
    assert pp["call"].tolist() == ["malignant", "benign", "benign", "benign"]


def test_mean_and_noisy_or() -> None:
    _, mean = merge_predictions(predictions(), folds(), method="mean")
    assert np.allclose(mean["prob"], [0.5, 0.3, 0.5, 0.4])
    assert mean["call"].tolist() == ["malignant", "benign", "malignant", "benign"]
    _, nor = merge_predictions(predictions(), folds(), method="noisy_or")
    expected = [1 - 0.8 * 0.1 * 0.6, 1 - 0.9 * 0.7 * 0.5, 0.5, 1 - 0.4 * 0.8]
    assert np.allclose(nor["prob"], expected)
    # noisy-or is never below max, max never below mean
    _, mx = merge_predictions(predictions(), folds(), method="max")
    assert (nor["prob"] >= mx["prob"] - 1e-12).all() and (mx["prob"] >= mean["prob"]).all()
    with pytest.raises(SpinefxError, match="median"):
        merge_predictions(predictions(), folds(), method="median")


def test_reads_prediction_files(tmp_path: Path) -> None:
    paths = {}
    for k, df in predictions().items():
        paths[k] = tmp_path / f"fold_{k}" / "predictions.tsv"
        paths[k].parent.mkdir()
        df.to_csv(paths[k], sep="\t", index=False)
    _, from_files = merge_predictions(paths, folds())
    _, from_frames = merge_predictions(predictions(), folds())
    pd.testing.assert_frame_equal(from_files, from_frames)


def test_leak_names_patient_and_folds() -> None:
    preds = predictions()
    preds[2] = pd.concat([preds[2], pd.DataFrame({"patient_id": ["p1"], "slice": [5], "prob": [0.7]})])
    with pytest.raises(SpinefxError, match=r"leak.*fold 2.*p1 \(held out in fold 1\)"):
        merge_predictions(preds, folds())


def test_missing_patient_and_missing_fold_are_errors(tmp_path: Path) -> None:
    preds = predictions()
    preds[2] = preds[2][preds[2].patient_id != "p3"]
    with pytest.raises(SpinefxError, match="no prediction: p3"):
        merge_predictions(preds, folds())
    with pytest.raises(SpinefxError, match=r"no predictions for folds \[2\]"):
        merge_predictions({1: predictions()[1]}, folds())
    with pytest.raises(SpinefxError, match="not in folds.tsv: zz"):
        p = predictions()
        p[1] = pd.concat([p[1], pd.DataFrame({"patient_id": ["zz"], "slice": [1], "prob": [0.1]})])
        merge_predictions(p, folds())
    with pytest.raises(SpinefxError, match="no predictions file"):
        merge_predictions({1: predictions()[1], 2: tmp_path / "absent.tsv"}, folds())


def test_bad_probabilities_and_duplicates() -> None:
    p = predictions()
    p[1].loc[0, "prob"] = 1.5
    with pytest.raises(SpinefxError, match="p1"):
        merge_predictions(p, folds())
    p = predictions()
    p[2].loc[1, "slice"] = 2  # p4 slice 2 twice
    with pytest.raises(SpinefxError, match="twice"):
        merge_predictions(p, folds())
