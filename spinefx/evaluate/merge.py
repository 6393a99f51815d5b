"""Per-slice probabilities of the held-out folds -> one probability and one call per patient.

The paper assigns each patient the highest malignancy probability among its slices and calls it
malignant at 0.5 or above. The merge is also where a fold leak would become invisible, so it checks
that every prediction comes from the fold that held its patient out, and that no patient is missing.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd
from pandas.api.typing import SeriesGroupBy

from spinefx.errors import SpinefxError
from spinefx.features import LABELS

METHODS: tuple[str, ...] = ("max", "mean", "noisy_or")


def _read_predictions(pred: pd.DataFrame | str | Path, fold: int) -> tuple[pd.DataFrame, str | None]:
    path = None
    if isinstance(pred, (str, Path)):
        path = str(pred)
        try:
            pred = pd.read_csv(pred, sep="\t", dtype={"patient_id": str})
        except FileNotFoundError as err:
            raise SpinefxError(f"no predictions file for fold {fold}", path=path) from err
    missing = {"patient_id", "slice", "prob"} - set(pred.columns)
    if missing:
        raise SpinefxError(
            f"predictions of fold {fold} lack columns {sorted(missing)}",
            path=path,
            fix="predictions.tsv needs patient_id, slice, prob",
        )
    pred = pred[["patient_id", "slice", "prob"]].copy()
    pred["patient_id"] = pred["patient_id"].astype(str)
    prob = pd.to_numeric(pred["prob"], errors="coerce").to_numpy(dtype=float)
    bad = ~np.isfinite(prob) | (prob < 0.0) | (prob > 1.0)
    if bad.any():
        first = pred.loc[bad, "patient_id"].iloc[0]
        raise SpinefxError(
            f"fold {fold}: {int(bad.sum())} probabilities are not numbers in [0, 1]", patient=first, path=path
        )
    pred["prob"] = prob
    dup = pred.duplicated(["patient_id", "slice"], keep=False)
    if dup.any():
        first = pred.loc[dup, "patient_id"].iloc[0]
        raise SpinefxError(f"fold {fold}: the same slice is predicted twice", patient=first, path=path)
    return pred, path


def _aggregate(probs: SeriesGroupBy, method: str) -> pd.Series:
    if method == "max":
        return probs.max()
    if method == "mean":
        return probs.mean()
    # noisy-or: the patient is malignant unless every slice independently says benign.
    return probs.apply(lambda p: 1.0 - float(np.prod(1.0 - p.to_numpy(dtype=float))))


def merge_predictions(
    fold_predictions: Mapping[int, pd.DataFrame | str | Path],
    folds: pd.DataFrame,
    *,
    method: str = "max",
    threshold: float = 0.5,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Combine the held-out predictions of every fold into per-slice and per-patient tables.

    ``fold_predictions`` maps fold number -> predictions.tsv (path or frame with patient_id, slice,
    prob); ``folds`` is folds.tsv (patient_id, label, fold). ``method``: ``max`` (the paper),
    ``mean`` or ``noisy_or`` (1 - prod(1 - p)). A patient is called malignant when its probability
    is >= ``threshold``. Returns (per_slice[patient_id, label, fold, slice, prob],
    per_patient[patient_id, label, fold, prob, call]), both in the order of ``folds``.
    Raises SpinefxError when a patient of the evaluated folds has no prediction, or a prediction
    comes from a fold other than the one that held the patient out.
    """
    if method not in METHODS:
        raise SpinefxError(f"unknown merge method {method!r}", fix=f"use one of {', '.join(METHODS)}")
    if not 0.0 <= float(threshold) <= 1.0:
        raise SpinefxError(f"threshold {threshold} is outside [0, 1]")
    missing = {"patient_id", "label", "fold"} - set(folds.columns)
    if missing:
        raise SpinefxError(f"folds table lacks columns {sorted(missing)}")
    folds = folds[["patient_id", "label", "fold"]].copy()
    folds["patient_id"] = folds["patient_id"].astype(str)
    folds["fold"] = folds["fold"].astype(int)
    bad_labels = sorted(set(folds["label"]) - set(LABELS))
    if bad_labels:
        raise SpinefxError(f"folds table has labels {bad_labels}", fix="labels must be benign or malignant")
    fold_of = dict(zip(folds["patient_id"], folds["fold"], strict=True))

    known_folds = set(folds["fold"])
    extra = sorted(set(int(k) for k in fold_predictions) - known_folds)
    if extra:
        raise SpinefxError(f"predictions for folds {extra} that folds.tsv does not define")
    absent = sorted(known_folds - set(int(k) for k in fold_predictions))
    if absent:
        raise SpinefxError(f"no predictions for folds {absent}", fix="train and predict every fold first")

    parts = []
    for fold in sorted(fold_predictions, key=int):
        pred, path = _read_predictions(fold_predictions[fold], int(fold))
        unknown = sorted(set(pred["patient_id"]) - set(fold_of))
        if unknown:
            raise SpinefxError(
                f"fold {fold} predicts patients not in folds.tsv: {', '.join(unknown)}",
                path=path,
                fix="rerun training after assigning folds",
            )
        wrong = sorted(p for p in set(pred["patient_id"]) if fold_of[p] != int(fold))
        if wrong:
            detail = ", ".join(f"{p} (held out in fold {fold_of[p]})" for p in wrong)
            raise SpinefxError(
                f"fold leak: fold {fold} predicts patients it trained on: {detail}",
                path=path,
                fix="retrain; a model may only predict its own held-out fold",
            )
        pred["fold"] = int(fold)
        parts.append(pred)
    pred = pd.concat(parts, ignore_index=True)

    without = [p for p in folds["patient_id"] if p not in set(pred["patient_id"])]
    if without:
        raise SpinefxError(
            f"{len(without)} patients have no prediction: {', '.join(without)}",
            fix="check that every patient of the fold has patches and the fold was predicted",
        )

    order = {p: i for i, p in enumerate(folds["patient_id"])}
    per_slice = pred.merge(folds[["patient_id", "label"]], on="patient_id", how="left")
    per_slice["_order"] = per_slice["patient_id"].map(order)
    per_slice = per_slice.sort_values(["_order", "slice"], kind="stable")
    per_slice = per_slice[["patient_id", "label", "fold", "slice", "prob"]].reset_index(drop=True)

    agg = _aggregate(per_slice.groupby("patient_id", sort=False)["prob"], method).rename("prob")
    per_patient = folds.merge(agg.reset_index(), on="patient_id", how="left")
    per_patient["prob"] = per_patient["prob"].astype(float)
    per_patient["call"] = np.where(per_patient["prob"] >= float(threshold), "malignant", "benign")
    return per_slice, per_patient[["patient_id", "label", "fold", "prob", "call"]].reset_index(drop=True)
