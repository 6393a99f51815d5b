"""Apparent vs cross-validated feature model, FLIC probabilities, convergence flags."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm

from spinefx.evaluate import feature_model, stats
from spinefx.features import FEATURES, PAPER_TABLE1
from spinefx.learn.folds import assign_folds


def paper_rate_cohort(seed: int = 1) -> tuple[pd.DataFrame, pd.DataFrame]:
    """190 patients (50 malignant) with features drawn at the paper's Table 1 rates."""
    rng = np.random.default_rng(seed)
    ids = [f"m{i:03d}" for i in range(50)] + [f"b{i:03d}" for i in range(140)]
    truth = pd.DataFrame({"patient_id": ids, "label": ["malignant"] * 50 + ["benign"] * 140})
    feats = {"patient_id": ids}
    for f in FEATURES:
        rate = {lab: PAPER_TABLE1[f][lab][0] / PAPER_TABLE1[f][lab][1] for lab in ("malignant", "benign")}
        feats[f] = (rng.random(190) < truth["label"].map(rate).to_numpy()).astype(int)
    return pd.DataFrame(feats), truth


def test_flic_intercept_is_the_ml_intercept_given_the_firth_slopes() -> None:
    rng = np.random.default_rng(5)
    X = rng.integers(0, 2, size=(120, 3)).astype(float)
    y = (rng.random(120) < 1 / (1 + np.exp(-(X @ [1.5, -1.0, 0.5] - 0.5)))).astype(float)
    beta, usable, ok = feature_model.flic_fit(X, y)
    firth, _, _ = stats._firth_fit(np.column_stack([np.ones(120), X]), y)
    assert ok and usable.all()
    assert np.allclose(beta[1:], firth[1:])  # slopes are Firth's
    glm = sm.GLM(y, np.ones((120, 1)), family=sm.families.Binomial(), offset=X @ firth[1:]).fit()
    assert beta[0] == pytest.approx(glm.params[0], abs=1e-8)
    p = 1 / (1 + np.exp(-(beta[0] + X @ beta[1:])))
    assert p.mean() == pytest.approx(y.mean(), abs=1e-8)  # FLIC: mean probability = prevalence


def test_apparent_beats_cross_validated_and_repeats_spread() -> None:
    feats, truth = paper_rate_cohort()
    summary, probs = feature_model.feature_model_honest(feats, truth, k=5, seeds=[0, 1, 2])
    s = summary.set_index("metric")
    assert list(s.index) == ["accuracy", "sensitivity", "specificity", "auc"]
    assert s.loc["auc", "apparent"] >= s.loc["auc", "repeated_cv_mean"]
    assert s.loc["accuracy", "optimism"] == pytest.approx(
        s.loc["accuracy", "apparent"] - s.loc["accuracy", "repeated_cv_mean"]
    )
    assert (s["repeated_cv_min"] <= s["repeated_cv_max"]).all() and (s["repeats"] == 3).all()
    assert (s["nonconverged_fits"] >= 0).all()
    assert len(probs) == 190 and probs["prob_cv"].notna().all()
    # given folds: the cv column is the CV on those folds
    folds = assign_folds(truth, 5, 7)
    s2, _ = feature_model.feature_model_honest(feats, truth, k=5, seeds=[0], folds=folds)
    assert s2.set_index("metric").loc["accuracy", "apparent"] == s.loc["accuracy", "apparent"]


def test_firth_flags_what_did_not_converge() -> None:
    feats, truth = paper_rate_cohort()
    X = feats[list(FEATURES)].to_numpy(float)
    y = (truth["label"] == "malignant").to_numpy(float)
    t = stats.firth_logit(X, y, names=FEATURES)
    assert t["converged"].all()
    # a bound not estimable is reported as missing, never as a number
    assert t.loc[~t["ci_estimable"], ["coef_lo", "coef_hi"]].isna().all().all()
    assert t.loc[t["ci_estimable"], ["coef_lo", "coef_hi"]].notna().all().all()
    _, _, ok = stats._firth_fit(np.column_stack([np.ones(190), X]), y, max_iter=1)
    assert not ok
