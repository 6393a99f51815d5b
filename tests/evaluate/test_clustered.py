"""Clustered per-slice AUC: DeLong with one slice per patient, the cluster bootstrap with several."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from spinefx.errors import SpinefxError
from spinefx.evaluate import clustered, stats


def test_one_slice_per_patient_is_delong() -> None:
    rng = np.random.default_rng(0)
    y = np.r_[np.ones(20), np.zeros(30)].astype(int)
    s = np.round(y + rng.normal(size=50), 1)
    r = clustered.clustered_auc(np.arange(50), y, s)
    d = stats.auc_ci(y, s)
    assert r["auc"] == pytest.approx(d["auc"]) and r["se"] == pytest.approx(d["se"], rel=1e-12)


def test_three_slices_per_patient_against_a_cluster_bootstrap() -> None:
    rng = np.random.default_rng(1)
    patients = 60
    y_p = (np.arange(patients) < 20).astype(int)
    level = y_p * 1.0 + rng.normal(size=patients)  # a patient effect shared by its slices
    g = np.repeat(np.arange(patients), 3)
    y = np.repeat(y_p, 3)
    s = np.repeat(level, 3) + 0.3 * rng.normal(size=3 * patients)
    r = clustered.clustered_auc(g, y, s)
    boots = []
    for _ in range(400):
        pick = np.r_[rng.choice(20, 20), 20 + rng.choice(40, 40)]
        idx = np.concatenate([np.flatnonzero(g == p) for p in pick])
        boots.append(stats.auc_ci(y[idx], s[idx])["auc"])
    assert r["se"] == pytest.approx(np.std(boots, ddof=1), rel=0.2)
    # ignoring the clusters understates the uncertainty
    assert stats.auc_ci(y, s)["se"] < r["se"]


def test_per_slice_table_and_mixed_labels() -> None:
    ps = pd.DataFrame(
        {
            "patient_id": ["a", "a", "b", "b", "c", "d"],
            "label": ["malignant"] * 4 + ["benign"] * 2,
            "fold": [1, 1, 2, 2, 1, 2],
            "prob": [0.9, 0.8, 0.4, 0.7, 0.3, 0.5],
        }
    )
    t = clustered.per_slice_auc(ps)
    assert list(t["fold"]) == ["all", "1", "2"]
    assert t.loc[0, "auc"] == pytest.approx(stats.auc_ci(ps["label"], ps["prob"])["auc"])
    bad = ps.assign(label=["malignant", "benign"] + ["malignant"] * 2 + ["benign"] * 2)
    with pytest.raises(SpinefxError, match="a"):
        clustered.per_slice_auc(bad)
