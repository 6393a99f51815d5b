"""Operating characteristics a reader of a diagnostic study needs beyond sensitivity and specificity.

PPV and NPV (at the study's prevalence, which is stated in every row: they do not transfer to another
case mix), likelihood ratios with the log-method CI of Simel, Samsa & Matchar (1991), Cohen's kappa
between readers (statsmodels). All from counts, so a printed table is enough (the odds ratios of
Table 1 live with Table 1, in :func:`spinefx.evaluate.stats.table1_from_counts`).
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
from scipy.stats import norm
from statsmodels.stats.inter_rater import cohens_kappa

from spinefx.evaluate.stats import _calls, _truth, proportion_ci


def likelihood_ratio_ci(
    k_pos: int, n_pos: int, k_neg: int, n_neg: int, *, alpha: float = 0.05
) -> tuple[float, float, float]:
    """(k_pos/n_pos) / (k_neg/n_neg) with the log-method CI (Simel et al. 1991).

    LR+ = sens / (1 - spec): k_pos = TP of n_pos malignant, k_neg = FP of n_neg benign.
    LR- = (1 - sens) / spec: k_pos = FN, k_neg = TN. NaN bounds when a count is 0 (ratio 0 or inf).
    """
    if n_pos == 0 or n_neg == 0 or k_neg == 0:
        est = float("inf") if n_pos and n_neg and k_pos else float("nan")
        return est, float("nan"), float("nan")
    est = (k_pos / n_pos) / (k_neg / n_neg)
    if k_pos == 0:
        return 0.0, float("nan"), float("nan")
    se = np.sqrt(1 / k_pos - 1 / n_pos + 1 / k_neg - 1 / n_neg)
    z = norm.ppf(1 - alpha / 2)
    return float(est), float(est * np.exp(-z * se)), float(est * np.exp(z * se))


def operating_from_counts(
    reader: str,
    tp: int,
    tn: int,
    fn: int,
    fp: int,
    *,
    ci_method: str = "clopper-pearson",
    alpha: float = 0.05,
) -> dict:
    """PPV, NPV, LR+ and LR- of one reader with CIs; the prevalence they hold at is in the row."""
    n_pos, n_neg = tp + fn, tn + fp
    row: dict = {"reader": reader, "n": n_pos + n_neg, "prevalence": n_pos / max(n_pos + n_neg, 1)}
    for name, k, n in (("ppv", tp, tp + fp), ("npv", tn, tn + fn)):
        est, lo, hi = proportion_ci(k, n, ci_method=ci_method, alpha=alpha)
        row.update({name: est, f"{name}_lo": lo, f"{name}_hi": hi})
    for name, kp, kn in (("lr_positive", tp, fp), ("lr_negative", fn, tn)):
        est, lo, hi = likelihood_ratio_ci(kp, n_pos, kn, n_neg, alpha=alpha)
        row.update({name: est, f"{name}_lo": lo, f"{name}_hi": hi})
    row["ci_method"] = f"PPV/NPV {ci_method} at the study prevalence; LR log method (Simel 1991)"
    return row


def operating_table(
    diagnostic: pd.DataFrame, *, ci_method: str = "clopper-pearson", alpha: float = 0.05
) -> pd.DataFrame:
    """One row per reader of a diagnostic table (reader, tp, tn, fn, fp), e.g. Table 2."""
    return pd.DataFrame(
        [
            operating_from_counts(
                str(r.reader), int(r.tp), int(r.tn), int(r.fn), int(r.fp), ci_method=ci_method, alpha=alpha
            )
            for r in diagnostic.itertuples(index=False)
        ]
    )


def kappa_from_table(table: np.ndarray, *, alpha: float = 0.05) -> dict:
    """Cohen's kappa of a 2x2 agreement table with its asymptotic CI (statsmodels)."""
    res = cohens_kappa(np.asarray(table, dtype=float))
    z = norm.ppf(1 - alpha / 2)  # statsmodels' own bounds are fixed at 95%; its standard error is not
    k, se = float(res.kappa), float(res.std_kappa)
    return {"kappa": k, "kappa_lo": k - z * se, "kappa_hi": k + z * se}


def reader_agreement(
    calls: pd.DataFrame, truth: pd.Series | pd.DataFrame, *, alpha: float = 0.05
) -> pd.DataFrame:
    """Cohen's kappa between every two readers on the patients both read (calls, not correctness)."""
    c = _calls(calls, _truth(truth))
    said = c.pivot(index="patient_id", columns="reader", values="call")
    readers = list(dict.fromkeys(c["reader"]))
    rows = []
    for a, b in itertools.combinations(readers, 2):
        both = said[[a, b]].dropna()
        ma, mb = (both[a] == "malignant").to_numpy(), (both[b] == "malignant").to_numpy()
        table = np.array([[(ma & mb).sum(), (ma & ~mb).sum()], [(~ma & mb).sum(), (~ma & ~mb).sum()]])
        row = {"reader_a": a, "reader_b": b, "n": len(both), "observed_agreement": float((ma == mb).mean())}
        if len(both) and (table.sum(axis=0) > 0).sum() + (table.sum(axis=1) > 0).sum() > 2:
            row.update(kappa_from_table(table, alpha=alpha))
        else:  # one reader (or both) called every patient alike: kappa is 0/0
            row.update(kappa=float("nan"), kappa_lo=float("nan"), kappa_hi=float("nan"))
        row["method"] = "Cohen's kappa, asymptotic CI (statsmodels)"
        rows.append(row)
    return pd.DataFrame(rows)
