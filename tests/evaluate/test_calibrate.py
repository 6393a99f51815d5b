"""Calibration: scikit-learn as the oracle, the threshold rules by hand, and no patient ever
calibrated by a calibrator that saw it."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.isotonic import IsotonicRegression

from spinefx.errors import SpinefxError
from spinefx.evaluate import calibrate as cal_mod
from spinefx.evaluate.calibrate import (
    Calibrator,
    calibration_summary,
    choose_threshold,
    cross_fitted,
    fit_calibrator,
    reliability_figure,
)


def oof(n: int = 60, k: int = 3, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.3).astype(int)
    prob = np.clip(0.35 + 0.4 * y + rng.normal(0, 0.2, n), 0.01, 0.99)  # over-confident model
    return pd.DataFrame(
        {
            "patient_id": [f"p{i:02d}" for i in range(n)],
            "label": np.where(y, "malignant", "benign"),
            "fold": 1 + np.arange(n) % k,
            "prob": prob,
        }
    )


def test_platt_matches_a_direct_fit_of_platts_objective():
    from scipy.optimize import minimize

    df = oof()
    y = (df["label"] == "malignant").to_numpy().astype(int)
    z = cal_mod._logit(df["prob"])
    t = np.where(y == 1, (y.sum() + 1) / (y.sum() + 2), 1 / (len(y) - y.sum() + 2))  # Platt's targets

    def loss(ab):
        q = 1 / (1 + np.exp(-(ab[0] * z + ab[1])))
        return -np.sum(t * np.log(q) + (1 - t) * np.log(1 - q))

    ref = minimize(loss, [1.0, 0.0], method="Nelder-Mead", options={"xatol": 1e-9, "fatol": 1e-12}).x
    platt = fit_calibrator(df["prob"], df["label"], method="platt")
    assert (platt.params["slope"], platt.params["intercept"]) == pytest.approx(tuple(ref), abs=1e-4)


def test_platt_stays_finite_on_a_perfectly_separated_fold():
    c = fit_calibrator([0.1, 0.2, 0.8, 0.9], ["benign", "benign", "malignant", "malignant"], method="platt")
    assert np.isfinite(c.params["slope"]) and 0.6 < c.apply([0.95])[0] < 1.0


def test_isotonic_matches_sklearn():
    df = oof()
    y = (df["label"] == "malignant").astype(int)
    new = np.linspace(0.0, 1.0, 23)
    iso = fit_calibrator(df["prob"], df["label"], method="isotonic")
    ref = IsotonicRegression(y_min=0, y_max=1, out_of_bounds="clip").fit(df["prob"], y)
    np.testing.assert_allclose(iso.apply(new), ref.predict(new), atol=1e-12)


def test_calibrator_round_trips_through_json(tmp_path):
    df = oof()
    c = fit_calibrator(df["prob"], df["label"], method="isotonic", threshold_rule="sensitivity")
    c.save(tmp_path / "c.json")
    d = Calibrator.load(tmp_path / "c.json")
    np.testing.assert_array_equal(d.apply(df["prob"]), c.apply(df["prob"]))
    assert d.threshold == c.threshold and d.threshold_rule == "sensitivity >= 0.94"


def test_threshold_rules_by_hand():
    prob = [0.9, 0.8, 0.7, 0.4, 0.3, 0.6, 0.2]
    labels = ["malignant"] * 5 + ["benign"] * 2
    assert choose_threshold(prob, labels, rule="fixed", threshold=0.5) == 0.5
    # 5 malignant: sensitivity >= 0.8 needs 4 of them -> the 4th highest malignant score, 0.4
    assert choose_threshold(prob, labels, rule="sensitivity", target_sensitivity=0.8) == 0.4
    assert choose_threshold(prob, labels, rule="sensitivity", target_sensitivity=1.0) == 0.3
    with pytest.raises(SpinefxError):
        choose_threshold(prob, labels, rule="youden")


def test_cross_fitted_never_sees_the_patients_it_calibrates(monkeypatch):
    df = oof()
    seen = []
    real = cal_mod.fit_calibrator

    def spy(prob, labels, **kw):
        seen.append(set(df.loc[prob.index, "patient_id"]))
        return real(prob, labels, **kw)

    monkeypatch.setattr(cal_mod, "fit_calibrator", spy)
    out = cross_fitted(df, method="platt")
    assert len(seen) == 3
    for fold, fitted_on in zip(sorted(df["fold"].unique()), seen, strict=True):
        assert fitted_on.isdisjoint(set(df.loc[df["fold"] == fold, "patient_id"]))
        assert fitted_on == set(df.loc[df["fold"] != fold, "patient_id"])
    # and each fold's values are what a calibrator fitted on the other folds gives
    f1 = df["fold"] == 1
    ref = real(df.loc[~f1, "prob"], df.loc[~f1, "label"], method="platt")
    np.testing.assert_allclose(out.loc[f1, "prob_calibrated"], ref.apply(df.loc[f1, "prob"]))


def test_calibration_lowers_the_brier_score_of_a_miscalibrated_model(tmp_path):
    df = oof(n=200)
    out = cross_fitted(df, method="platt")
    final = fit_calibrator(df["prob"], df["label"])
    summary = calibration_summary(out, final).iloc[0]
    assert summary["brier_calibrated"] < summary["brier_raw"]
    png = tmp_path / "calibration.png"
    reliability_figure(out, png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


def test_one_class_is_refused():
    with pytest.raises(SpinefxError, match="both malignant and benign"):
        fit_calibrator([0.1, 0.2], ["benign", "benign"])
