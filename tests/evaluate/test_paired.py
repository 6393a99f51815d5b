"""Paired comparisons against published worked examples and independent computations."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import optimize
from scipy.stats import norm
from statsmodels.stats.contingency_tables import mcnemar

from spinefx.evaluate import paired, stats


def test_newcombe_method_10_matches_newcombe_1998_example() -> None:
    # Newcombe 1998 (Stat Med 17:2635), Table II example (a, b, c, d) = (36, 12, 2, 0):
    # difference 0.2, method 10 interval 0.0569 to 0.3404.
    r = paired.paired_difference_ci([[36, 12], [2, 0]], method="newcombe")
    assert r["difference"] == pytest.approx(0.2)
    assert (round(r["lo"], 4), round(r["hi"], 4)) == (0.0569, 0.3404)
    assert "Newcombe" in r["method"]


def _tango_by_brute_force(n12: int, n21: int, n: int, alpha: float = 0.05) -> tuple[float, float]:
    """Invert the score test with the restricted MLE found numerically (no closed form)."""
    n11_plus_n22 = n - n12 - n21

    def stat(delta: float) -> float:
        # maximise the multinomial likelihood over p21 with p12 = p21 + delta
        def nll(q: float) -> float:
            p12, p21 = q + delta, q
            rest = 1 - p12 - p21
            return -(n12 * np.log(p12) + n21 * np.log(p21) + n11_plus_n22 * np.log(rest))

        lo, hi = max(0.0, -delta) + 1e-12, (1 - delta) / 2 - 1e-12
        q = optimize.minimize_scalar(nll, bounds=(lo, hi), method="bounded", options={"xatol": 1e-12}).x
        return (n12 - n21 - n * delta) / np.sqrt(n * (2 * q + delta * (1 - delta)))

    z = norm.ppf(1 - alpha / 2)
    d = (n12 - n21) / n
    return (
        optimize.brentq(lambda t: stat(t) - z, -0.999, d),
        optimize.brentq(lambda t: stat(t) + z, d, 0.999),
    )


@pytest.mark.parametrize("table", [[[36, 12], [2, 0]], [[100, 40], [20, 0]], [[1, 1], [7, 12]]])
def test_tango_interval_inverts_the_score_test(table: list[list[int]]) -> None:
    r = paired.paired_difference_ci(table, method="tango")
    n = int(np.sum(table))
    lo, hi = _tango_by_brute_force(table[0][1], table[1][0], n)
    assert r["lo"] == pytest.approx(lo, abs=1e-5) and r["hi"] == pytest.approx(hi, abs=1e-5)
    assert r["lo"] < r["difference"] < r["hi"]


def test_mcnemar_exact_and_midp_match_fagerland_2013() -> None:
    # Fagerland, Lydersen & Laake 2013 (BMC Med Res Methodol 13:91), Bentur et al. data: b=1, c=7:
    # exact conditional p = 0.070, mid-p = 0.039.
    r = paired.mcnemar_counts(1, 7)
    assert round(r["p_exact"], 3) == 0.070 and round(r["p_midp"], 3) == 0.039
    for b, c in [(3, 9), (0, 5), (12, 12)]:
        assert paired.mcnemar_counts(b, c)["p_exact"] == pytest.approx(
            mcnemar([[10, b], [c, 10]], exact=True).pvalue
        )
    assert paired.mcnemar_counts(0, 0) == {"p_exact": 1.0, "p_midp": 1.0}


def test_mcnemar_bounds_of_the_paper_margins() -> None:
    # R1 vs the model, sensitivity: 39 vs 47 of 50 right; at best 8 discordant patients, all one way.
    b = paired.mcnemar_bounds(39, 47, 50)
    assert b["p_min"] == pytest.approx(2 * 0.5**8) and b["min_discordant"] == 8
    # model vs R4, specificity: 128 vs 135 of 140
    assert paired.mcnemar_bounds(128, 135, 140)["p_min"] == pytest.approx(2 * 0.5**7)
    # brute force over every feasible paired table
    n, ka, kb = 20, 12, 15
    ps = []
    for both in range(n + 1):
        a_only, b_only = ka - both, kb - both
        if min(a_only, b_only) >= 0 and both + a_only + b_only <= n:
            ps.append(mcnemar([[both, a_only], [b_only, n - both - a_only - b_only]], exact=True).pvalue)
    got = paired.mcnemar_bounds(ka, kb, n)
    assert got["p_min"] == pytest.approx(min(ps)) and got["p_max"] == pytest.approx(max(ps))


def test_paired_comparisons_family_and_holm() -> None:
    truth = pd.DataFrame(
        {"patient_id": [f"p{i}" for i in range(40)], "label": ["malignant"] * 20 + ["benign"] * 20}
    )
    rng = np.random.default_rng(0)
    calls = []
    for reader, acc in (("a", 0.9), ("b", 0.7), ("c", 0.5)):
        right = rng.random(40) < acc
        lab = truth["label"].to_numpy()
        call = np.where(right, lab, np.where(lab == "malignant", "benign", "malignant"))
        calls.append(pd.DataFrame({"patient_id": truth["patient_id"], "reader": reader, "call": call}))
    t = paired.paired_comparisons(pd.concat(calls), truth)
    assert len(t) == 6 and set(t["measure"]) == {"sensitivity", "specificity"}
    old = stats.mcnemar_pairs(pd.concat(calls), truth)
    assert np.allclose(t["p_exact"], old["p_value"])
    assert np.allclose(t["a_right_b_wrong"], old["b"])
    p = t["p_exact"].to_numpy()
    order = np.argsort(p)
    holm = np.minimum(1, np.maximum.accumulate(p[order] * (len(p) - np.arange(len(p)))))
    assert np.allclose(t["p_exact_holm"].to_numpy()[order], holm)
    assert (t["p_midp"] <= t["p_exact"]).all()
    assert np.allclose(t["difference"], t["value_a"] - t["value_b"])


def _delong_by_loops(y: np.ndarray, s1: np.ndarray, s2: np.ndarray) -> tuple[float, float]:
    """DeLong et al. 1988, eq. for the variance of AUC1 - AUC2 written with explicit loops."""

    def psi(x: float, z: float) -> float:
        return 1.0 if x > z else 0.5 if x == z else 0.0

    pos, neg = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    m, n = len(pos), len(neg)
    v10 = np.array([[np.mean([psi(s[i], s[j]) for j in neg]) for i in pos] for s in (s1, s2)])
    v01 = np.array([[np.mean([psi(s[i], s[j]) for i in pos]) for j in neg] for s in (s1, s2)])
    s10 = np.cov(v10)
    s01 = np.cov(v01)
    c = s10 / m + s01 / n
    return v10[0].mean() - v10[1].mean(), np.sqrt(c[0, 0] + c[1, 1] - 2 * c[0, 1])


def test_delong_paired_against_explicit_structural_components() -> None:
    rng = np.random.default_rng(3)
    y = np.r_[np.ones(15), np.zeros(25)].astype(int)
    s1 = np.round(y + rng.normal(size=40), 1)  # ties
    s2 = np.round(0.5 * y + rng.normal(size=40), 1)
    r = paired.delong_paired(y, s1, s2)
    diff, se = _delong_by_loops(y, s1, s2)
    assert r["difference"] == pytest.approx(diff, abs=1e-12)
    assert r["se"] == pytest.approx(se, rel=1e-10)
    assert r["p_value"] == pytest.approx(2 * norm.sf(abs(diff / se)))
    assert r["auc_a"] == pytest.approx(stats.auc_ci(y, s1)["auc"])
    same = paired.delong_paired(y, s1, s1)
    assert same["difference"] == 0 and same["p_value"] == 1.0
    t = paired.compare_models(y, {"a": s1, "b": s2, "c": -s2})
    assert len(t) == 3 and (t["p_holm"] >= t["p_value"]).all()
