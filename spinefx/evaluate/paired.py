"""Paired comparisons of two readers (or models) on the same patients.

The paper's central claim is a paired one ("R1 + model" against R1 on the same 190 patients), so a
difference in sensitivity or specificity needs a paired interval, not two separate ones: Newcombe's
hybrid score interval (method 10 of Newcombe 1998) or Tango's score interval (Tango 1998). McNemar
comes as the exact conditional test and its mid-p version (Fagerland et al. 2013), Holm-adjusted over
the whole family of comparisons; two AUCs on the same patients are compared with paired DeLong.

Every function takes counts as well as rows, so a paper's printed 2x2 tables can be fed through it.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import optimize
from scipy.stats import binom, norm, rankdata
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.proportion import proportion_confint

from spinefx.errors import SpinefxError
from spinefx.evaluate.stats import _calls, _truth, binary_labels

PAIRED_CI_METHODS: dict[str, str] = {
    "newcombe": "Newcombe hybrid score (method 10)",
    "tango": "Tango score",
}
MEASURE_OF_SUBSET = {"malignant": "sensitivity", "benign": "specificity"}


# ----------------------------------------------------------------------------------------------
# McNemar from counts


def mcnemar_counts(b: int, c: int) -> dict[str, float]:
    """Exact conditional McNemar p and its mid-p from the discordant counts ``b`` and ``c``.

    exact = 2 P(X <= min(b, c)), X ~ Bin(b + c, 1/2), capped at 1; mid-p subtracts the probability
    of the observed table once (Fagerland, Lydersen & Laake 2013, BMC Med Res Methodol 13:91).
    """
    b, c = int(b), int(c)
    if b < 0 or c < 0:
        raise SpinefxError(f"discordant counts must be >= 0, got b={b}, c={c}")
    n = b + c
    if n == 0:
        return {"p_exact": 1.0, "p_midp": 1.0}
    k = min(b, c)
    tail = float(binom.cdf(k, n, 0.5))
    point = float(binom.pmf(k, n, 0.5))
    return {"p_exact": min(1.0, 2.0 * tail), "p_midp": min(1.0, 2.0 * (tail - 0.5 * point))}


def mcnemar_bounds(correct_a: int, correct_b: int, n: int) -> dict[str, float]:
    """What the margins alone allow: the smallest and largest exact McNemar p of any paired table
    in which reader a is right on ``correct_a`` and reader b on ``correct_b`` of the same ``n``.

    b - c is fixed at correct_a - correct_b; b + c can range from |b - c| up to the most discordant
    table the margins permit. A printed "p < x" that is below the smallest possible p cannot hold.
    """
    if not (0 <= correct_a <= n and 0 <= correct_b <= n):
        raise SpinefxError(f"correct counts {correct_a}, {correct_b} out of range for n={n}")
    d = correct_a - correct_b
    c_max = min(correct_b, n - correct_a)  # c: a wrong, b right
    ps = [mcnemar_counts(c + d, c)["p_exact"] for c in range(max(0, -d), c_max + 1)]
    return {
        "difference": d,
        "min_discordant": abs(d),
        "max_discordant": 2 * c_max + d,
        "p_min": min(ps),
        "p_max": max(ps),
    }


# ----------------------------------------------------------------------------------------------
# CI of a paired difference p1 - p2


def _wilson(k: int, n: int, alpha: float) -> tuple[float, float]:
    lo, hi = proportion_confint(k, n, alpha=alpha, method="wilson")
    return float(lo), float(hi)


def _newcombe(n11: int, n12: int, n21: int, n22: int, alpha: float) -> tuple[float, float]:
    n = n11 + n12 + n21 + n22
    p1, p2 = (n11 + n12) / n, (n11 + n21) / n
    l1, u1 = _wilson(n11 + n12, n, alpha)
    l2, u2 = _wilson(n11 + n21, n, alpha)
    margins = (n11 + n12) * (n21 + n22) * (n11 + n21) * (n12 + n22)
    phi = 0.0
    if margins > 0:
        # Newcombe's correlation estimate, its numerator corrected towards 0 by n/2 when positive
        num = n11 * n22 - n12 * n21
        num = max(num - n / 2, 0.0) if num > 0 else num
        phi = num / np.sqrt(margins)
    d = p1 - p2
    dl1, du1, dl2, du2 = p1 - l1, u1 - p1, p2 - l2, u2 - p2
    lo = d - np.sqrt(max(dl1**2 - 2 * phi * dl1 * du2 + du2**2, 0.0))
    hi = d + np.sqrt(max(du1**2 - 2 * phi * du1 * dl2 + dl2**2, 0.0))
    return max(-1.0, float(lo)), min(1.0, float(hi))


def tango_statistic(n12: int, n21: int, n: int, delta: float) -> float:
    """Tango's score statistic for H0: p1 - p2 = ``delta`` (restricted MLE of p21 in closed form)."""
    a = 2.0 * n
    b = -n12 - n21 + (2.0 * n - n12 + n21) * delta
    c = -n21 * delta * (1.0 - delta)
    q = (np.sqrt(max(b * b - 4 * a * c, 0.0)) - b) / (2 * a)
    var = n * (2 * q + delta * (1 - delta))  # Var(n12 - n21) under H0
    diff = n12 - n21 - n * delta
    if var <= 0:
        return 0.0 if diff == 0 else np.sign(diff) * np.inf
    return float(diff / np.sqrt(var))


def _tango(n11: int, n12: int, n21: int, n22: int, alpha: float) -> tuple[float, float]:
    n = n11 + n12 + n21 + n22
    z = norm.ppf(1 - alpha / 2)
    d = (n12 - n21) / n
    eps = 1e-12

    def f(delta: float) -> float:
        return tango_statistic(n12, n21, n, delta)

    lo = -1.0 if f(-1 + eps) <= z else optimize.brentq(lambda t: f(t) - z, -1 + eps, d, xtol=1e-10)
    hi = 1.0 if f(1 - eps) >= -z else optimize.brentq(lambda t: f(t) + z, d, 1 - eps, xtol=1e-10)
    return float(lo), float(hi)


def paired_difference_ci(
    table: Sequence[Sequence[int]] | np.ndarray, *, method: str = "newcombe", alpha: float = 0.05
) -> dict:
    """p1 - p2 of a paired 2x2 table [[n11, n12], [n21, n22]] (rows: measure 1 yes/no, columns:
    measure 2 yes/no) with a (1 - alpha) CI by ``method`` (``newcombe`` or ``tango``)."""
    if method not in PAIRED_CI_METHODS:
        raise SpinefxError(
            f"unknown paired CI method {method!r}", fix=f"use one of {', '.join(PAIRED_CI_METHODS)}"
        )
    (n11, n12), (n21, n22) = (int(v) for v in table[0]), (int(v) for v in table[1])
    n = n11 + n12 + n21 + n22
    if n == 0:
        return {"difference": float("nan"), "lo": float("nan"), "hi": float("nan"), "method": method}
    lo, hi = (_newcombe if method == "newcombe" else _tango)(n11, n12, n21, n22, alpha)
    return {"difference": (n12 - n21) / n, "lo": lo, "hi": hi, "method": PAIRED_CI_METHODS[method]}


# ----------------------------------------------------------------------------------------------
# every pair of readers


def paired_comparisons(
    calls: pd.DataFrame,
    truth: pd.Series | pd.DataFrame,
    *,
    ci_method: str = "newcombe",
    alpha: float = 0.05,
) -> pd.DataFrame:
    """Difference in sensitivity (malignant patients) and specificity (benign) of every pair of
    readers on the patients both read, with a paired CI, exact and mid-p McNemar, and both
    Holm-adjusted across the whole family (every pair, both measures)."""
    c = _calls(calls, _truth(truth))
    correct = c.pivot(index="patient_id", columns="reader", values="correct")
    label = c.drop_duplicates("patient_id").set_index("patient_id")["label"]
    readers = list(dict.fromkeys(c["reader"]))
    rows = []
    for a, b in itertools.combinations(readers, 2):
        both = correct[[a, b]].dropna()
        for subset, measure in MEASURE_OF_SUBSET.items():
            s = both[label.reindex(both.index) == subset]
            ra, rb = s[a].astype(bool).to_numpy(), s[b].astype(bool).to_numpy()
            rows.append(
                paired_row(
                    a,
                    b,
                    measure,
                    int((ra & rb).sum()),
                    int((ra & ~rb).sum()),
                    int((~ra & rb).sum()),
                    int((~ra & ~rb).sum()),
                    ci_method=ci_method,
                    alpha=alpha,
                )
            )
    return holm_family(pd.DataFrame(rows))


def paired_row(
    reader_a: str,
    reader_b: str,
    measure: str,
    both_right: int,
    a_only: int,
    b_only: int,
    both_wrong: int,
    *,
    ci_method: str = "newcombe",
    alpha: float = 0.05,
) -> dict:
    """One comparison from its paired counts (the counts-only entry point)."""
    n = both_right + a_only + b_only + both_wrong
    ci = paired_difference_ci([[both_right, a_only], [b_only, both_wrong]], method=ci_method, alpha=alpha)
    p = mcnemar_counts(a_only, b_only)
    return {
        "reader_a": reader_a,
        "reader_b": reader_b,
        "measure": measure,
        "n": n,
        "value_a": (both_right + a_only) / n if n else float("nan"),
        "value_b": (both_right + b_only) / n if n else float("nan"),
        "difference": ci["difference"],
        "difference_lo": ci["lo"],
        "difference_hi": ci["hi"],
        "ci_method": ci["method"],
        "a_right_b_wrong": a_only,
        "a_wrong_b_right": b_only,
        "p_exact": p["p_exact"] if n else float("nan"),
        "p_midp": p["p_midp"] if n else float("nan"),
        "test_method": "McNemar exact conditional; mid-p",
    }


def holm_family(table: pd.DataFrame) -> pd.DataFrame:
    """Add Holm-adjusted p_exact_holm and p_midp_holm over all rows with a p-value (one family)."""
    out = table.copy()
    for col in ("p_exact", "p_midp"):
        adj = np.full(len(out), np.nan)
        ok = out[col].notna().to_numpy() if len(out) else np.zeros(0, dtype=bool)
        if ok.any():
            adj[ok] = multipletests(out.loc[ok, col].to_numpy(dtype=float), method="holm")[1]
        out[f"{col}_holm"] = adj
    return out


# ----------------------------------------------------------------------------------------------
# paired DeLong


def _placements(pos: np.ndarray, neg: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    m, n = len(pos), len(neg)
    tz = rankdata(np.r_[pos, neg])
    v10 = (tz[:m] - rankdata(pos)) / n
    v01 = 1.0 - (tz[m:] - rankdata(neg)) / m
    return float(v10.mean()), v10, v01


def delong_paired(
    y_true: Sequence, scores_a: Sequence, scores_b: Sequence, *, alpha: float = 0.05
) -> dict[str, float]:
    """DeLong, DeLong & Clarke-Pearson (1988) test of AUC_a = AUC_b on the same patients.

    Returns auc_a, auc_b, difference (a - b) with its normal CI, se, z and two-sided p.
    """
    y = binary_labels(y_true)
    sa, sb = np.asarray(scores_a, dtype=float), np.asarray(scores_b, dtype=float)
    if not (len(y) == len(sa) == len(sb)):
        raise SpinefxError(f"{len(y)} labels but {len(sa)} and {len(sb)} scores")
    m, n = int(y.sum()), int(len(y) - y.sum())
    if m < 2 or n < 2:
        raise SpinefxError("paired DeLong needs at least two patients of each class")
    auc_a, v10a, v01a = _placements(sa[y == 1], sa[y == 0])
    auc_b, v10b, v01b = _placements(sb[y == 1], sb[y == 0])
    s10 = np.cov(np.vstack([v10a, v10b]))
    s01 = np.cov(np.vstack([v01a, v01b]))
    cov = s10 / m + s01 / n
    var = float(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1])
    diff = auc_a - auc_b
    se = float(np.sqrt(max(var, 0.0)))
    zc = norm.ppf(1 - alpha / 2)
    if se == 0:
        z, p = (0.0, 1.0) if diff == 0 else (float("inf"), 0.0)
    else:
        z = diff / se
        p = float(2 * norm.sf(abs(z)))
    return {
        "auc_a": auc_a,
        "auc_b": auc_b,
        "difference": diff,
        "lo": diff - zc * se,
        "hi": diff + zc * se,
        "se": se,
        "z": float(z),
        "p_value": p,
        "method": "paired DeLong",
    }


def compare_models(y_true: Sequence, scores: dict[str, Sequence], *, alpha: float = 0.05) -> pd.DataFrame:
    """Paired DeLong between every two models scored on the same patients, Holm over the pairs."""
    rows = []
    for a, b in itertools.combinations(scores, 2):
        r = delong_paired(y_true, scores[a], scores[b], alpha=alpha)
        rows.append({"model_a": a, "model_b": b, "n": len(scores[a]), **r})
    out = pd.DataFrame(rows)
    if len(out):
        out["p_holm"] = multipletests(out["p_value"].to_numpy(), method="holm")[1]
    return out
