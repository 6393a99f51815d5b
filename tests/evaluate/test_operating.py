"""PPV/NPV/likelihood ratios, kappa and odds ratios against hand calculations and scipy/statsmodels."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import nchypergeom_fisher, norm
from statsmodels.stats.proportion import proportion_confint

from spinefx.evaluate import operating, stats


def test_operating_from_the_paper_model_row() -> None:
    # ResNet50 row of Table 2: TP 47, TN 128, FN 3, FP 12
    r = operating.operating_from_counts("model", 47, 128, 3, 12)
    assert r["prevalence"] == pytest.approx(50 / 190)
    assert r["ppv"] == pytest.approx(47 / 59) and r["npv"] == pytest.approx(128 / 131)
    lo, hi = proportion_confint(47, 59, method="beta")
    assert (r["ppv_lo"], r["ppv_hi"]) == pytest.approx((lo, hi))
    sens, spec = 47 / 50, 128 / 140
    assert r["lr_positive"] == pytest.approx(sens / (1 - spec))
    assert r["lr_negative"] == pytest.approx((1 - sens) / spec)
    # Simel et al. 1991 log method, by hand
    se = np.sqrt((1 - sens) / 47 + spec / 12)
    z = norm.ppf(0.975)
    assert r["lr_positive_lo"] == pytest.approx(r["lr_positive"] * np.exp(-z * se))
    assert r["lr_positive_hi"] == pytest.approx(r["lr_positive"] * np.exp(z * se))
    assert "prevalence" in r["ci_method"]
    # a reader with no false positive: LR+ is infinite, its bounds not estimable
    msk_like = operating.operating_from_counts("x", 47, 140, 3, 0)
    assert np.isinf(msk_like["lr_positive"]) and np.isnan(msk_like["lr_positive_lo"])


def test_operating_table_from_a_diagnostic_table() -> None:
    counts = pd.DataFrame({"reader": ["a", "b"], "tp": [10, 5], "tn": [20, 25], "fn": [2, 7], "fp": [8, 3]})
    t = operating.operating_table(stats.diagnostic_from_counts(counts))
    assert list(t["reader"]) == ["a", "b"] and t.loc[1, "ppv"] == pytest.approx(5 / 8)


def test_kappa_matches_the_hand_formula() -> None:
    truth = pd.DataFrame(
        {"patient_id": [f"p{i}" for i in range(10)], "label": ["malignant"] * 5 + ["benign"] * 5}
    )
    a = ["malignant"] * 6 + ["benign"] * 4
    b = ["malignant"] * 4 + ["benign"] * 5 + ["malignant"]
    calls = pd.concat(
        [
            pd.DataFrame({"patient_id": truth["patient_id"], "reader": r, "call": c})
            for r, c in (("a", a), ("b", b))
        ]
    )
    t = operating.reader_agreement(calls, truth)
    ma, mb = np.array(a) == "malignant", np.array(b) == "malignant"
    po = (ma == mb).mean()
    pe = ma.mean() * mb.mean() + (1 - ma.mean()) * (1 - mb.mean())
    assert t.loc[0, "kappa"] == pytest.approx((po - pe) / (1 - pe))
    assert t.loc[0, "observed_agreement"] == pytest.approx(po)
    assert t.loc[0, "kappa_lo"] < t.loc[0, "kappa"] < t.loc[0, "kappa_hi"]


def test_table1_odds_ratio_exact_interval_solves_the_noncentral_hypergeometric_tails() -> None:
    counts = pd.DataFrame(
        [("diffuse", 44, 50, 31, 140), ("mass", 11, 50, 0, 140), ("patch", 5, 50, 14, 140)],
        columns=["feature", *stats.TABLE1_COUNTS],
    )
    t = stats.table1_from_counts(counts).set_index("feature")
    # the exact (conditional) interval: each bound leaves alpha/2 in one tail of Fisher's
    # noncentral hypergeometric distribution of the malignant-positive count
    a, m1, bp, n1 = 44, 50, 31, 140
    total_pos, n = a + bp, m1 + n1
    lo, hi = t.loc["diffuse", "or_lo"], t.loc["diffuse", "or_hi"]
    assert nchypergeom_fisher.sf(a - 1, n, m1, total_pos, lo) == pytest.approx(0.025, rel=1e-4)
    assert nchypergeom_fisher.cdf(a, n, m1, total_pos, hi) == pytest.approx(0.025, rel=1e-4)
    assert lo < t.loc["diffuse", "odds_ratio"] < hi
    # an empty cell: the odds ratio is infinite, the lower bound still finite
    assert np.isinf(t.loc["mass", "odds_ratio"]) and t.loc["mass", "or_lo"] > 1
    assert t.loc["patch", "or_lo"] < 1 < t.loc["patch", "or_hi"]


def test_kappa_95_interval_is_statsmodels_own() -> None:
    from statsmodels.stats.inter_rater import cohens_kappa

    table = np.array([[30, 5], [8, 40]])
    r = operating.kappa_from_table(table)
    sm = cohens_kappa(table)
    assert (r["kappa_lo"], r["kappa_hi"]) == pytest.approx((sm.kappa_low, sm.kappa_upp))
    wider = operating.kappa_from_table(table, alpha=0.01)
    assert wider["kappa_lo"] < r["kappa_lo"]
