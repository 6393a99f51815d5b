"""The paper's statistics, each with the confidence interval the paper left out.

Table 1 (Fisher exact per feature), Table 2 (sensitivity/specificity/accuracy per reader), McNemar
between readers, the 15-feature logistic regression under cross-validation, and the model's ROC AUC.
Distributions come from scipy/statsmodels; what is written here is bookkeeping and estimators.

Malignant is the positive class throughout (label 1).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import linalg, optimize
from scipy.stats import chi2, fisher_exact, norm, rankdata
from scipy.stats.contingency import odds_ratio
from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.proportion import proportion_confint

from spinefx.errors import SpinefxError
from spinefx.features import FEATURES, LABELS
from spinefx.learn.folds import assign_folds

CI_METHODS: dict[str, str] = {"clopper-pearson": "beta", "wilson": "wilson"}
MODEL_READER = "ResNet50 Model"


# ----------------------------------------------------------------------------------------------
# inputs


def _truth(truth: pd.Series | pd.DataFrame) -> pd.Series:
    """patient_id -> label (benign/malignant) from a Series indexed by patient_id or a sheet."""
    if isinstance(truth, pd.DataFrame):
        missing = {"patient_id", "label"} - set(truth.columns)
        if missing:
            raise SpinefxError(f"truth table lacks columns {sorted(missing)}")
        s = pd.Series(truth["label"].to_numpy(), index=truth["patient_id"].astype(str), name="label")
    else:
        s = pd.Series(truth.to_numpy(), index=truth.index.astype(str), name="label")
    bad = sorted(set(s.astype(str)) - set(LABELS))
    if bad:
        raise SpinefxError(f"labels {bad} are not benign/malignant")
    if s.index.duplicated().any():
        raise SpinefxError("label given twice", patient=str(s.index[s.index.duplicated()][0]))
    return s.astype(str)


def _calls(calls: pd.DataFrame, truth: pd.Series) -> pd.DataFrame:
    missing = {"patient_id", "reader", "call"} - set(calls.columns)
    if missing:
        raise SpinefxError(
            f"reader calls lack columns {sorted(missing)}", fix="readers.tsv: patient_id, reader, call"
        )
    calls = calls[["patient_id", "reader", "call"]].copy()
    calls["patient_id"] = calls["patient_id"].astype(str)
    calls["reader"] = calls["reader"].astype(str)
    bad = calls[~calls["call"].isin(LABELS)]
    if len(bad):
        raise SpinefxError(
            f"reader {bad['reader'].iloc[0]} made call {bad['call'].iloc[0]!r}",
            patient=bad["patient_id"].iloc[0],
            fix="calls must be benign or malignant",
        )
    dup = calls.duplicated(["patient_id", "reader"], keep=False)
    if dup.any():
        raise SpinefxError(
            f"reader {calls.loc[dup, 'reader'].iloc[0]} called this patient twice",
            patient=calls.loc[dup, "patient_id"].iloc[0],
        )
    unknown = sorted(set(calls["patient_id"]) - set(truth.index))
    if unknown:
        raise SpinefxError(
            f"reader calls for patients without a label: {', '.join(unknown)}",
            fix="every patient in readers.tsv must be in patients.tsv",
        )
    calls["label"] = calls["patient_id"].map(truth)
    calls["correct"] = calls["call"] == calls["label"]
    return calls


def calls_from_per_patient(per_patient: pd.DataFrame, reader: str = MODEL_READER) -> pd.DataFrame:
    """The model's per-patient calls as reader rows, so it enters Table 2 and McNemar like a reader."""
    return pd.DataFrame(
        {"patient_id": per_patient["patient_id"].astype(str), "reader": reader, "call": per_patient["call"]}
    )


def proportion_ci(
    k: int, n: int, *, ci_method: str = "clopper-pearson", alpha: float = 0.05
) -> tuple[float, float, float]:
    """(k/n, lo, hi) with a Clopper-Pearson (exact) or Wilson interval; NaNs when n == 0."""
    if ci_method not in CI_METHODS:
        raise SpinefxError(f"unknown CI method {ci_method!r}", fix=f"use one of {', '.join(CI_METHODS)}")
    if n == 0:
        return float("nan"), float("nan"), float("nan")
    lo, hi = proportion_confint(int(k), int(n), alpha=alpha, method=CI_METHODS[ci_method])
    return k / n, float(lo), float(hi)


# ----------------------------------------------------------------------------------------------
# Table 1


def table1_features(
    features: pd.DataFrame, labels: pd.Series | pd.DataFrame, *, feature_names: Sequence[str] = FEATURES
) -> pd.DataFrame:
    """Per feature: positives and totals per class, Fisher's exact p (two-sided) and Holm-adjusted p.

    Only patients with both a features row and a label count; a missing (empty) value of one
    feature drops that patient from that feature's totals only.
    """
    truth = _truth(labels)
    if "patient_id" not in features.columns:
        raise SpinefxError("features table lacks column patient_id")
    absent = [f for f in feature_names if f not in features.columns]
    if absent:
        raise SpinefxError(f"features table lacks columns {absent}")
    feats = features.copy()
    feats["patient_id"] = feats["patient_id"].astype(str)
    feats = feats[feats["patient_id"].isin(truth.index)]
    lab = feats["patient_id"].map(truth)
    rows = []
    for f in feature_names:
        v = pd.to_numeric(feats[f], errors="coerce")
        given = feats[f].notna()
        bad = given & ~v.isin([0, 1])
        if bad.any():
            raise SpinefxError(
                f"feature {f} has value {feats.loc[bad, f].iloc[0]!r}",
                patient=feats.loc[bad, "patient_id"].iloc[0],
                fix="features are 0 (absent) or 1 (present)",
            )
        m = given & (lab == "malignant")
        b = given & (lab == "benign")
        rows.append((f, int(v[m].sum()), int(m.sum()), int(v[b].sum()), int(b.sum())))
    return table1_from_counts(pd.DataFrame(rows, columns=["feature", *TABLE1_COUNTS]))


TABLE1_COUNTS = ("malignant_positive", "malignant_total", "benign_positive", "benign_total")


def table1_from_counts(counts: pd.DataFrame, *, alpha: float = 0.05) -> pd.DataFrame:
    """Table 1 from its counts (feature + TABLE1_COUNTS per row, e.g. a paper's printed table):
    Fisher's exact p (two-sided), Holm-adjusted p, and the conditional-MLE odds ratio (malignant vs
    benign) with its exact CI (scipy.stats.contingency.odds_ratio)."""
    missing = [c for c in ("feature", *TABLE1_COUNTS) if c not in counts.columns]
    if missing:
        raise SpinefxError(f"Table 1 counts lack columns {missing}")
    out = counts[["feature", *TABLE1_COUNTS]].copy()
    p_values, ors = [], []
    for r in out.itertuples(index=False):
        mp, mt, bp, bt = (int(getattr(r, c)) for c in TABLE1_COUNTS)
        if not (0 <= mp <= mt and 0 <= bp <= bt):
            raise SpinefxError(f"feature {r.feature}: positives exceed totals ({mp}/{mt}, {bp}/{bt})")
        t = [[mp, mt - mp], [bp, bt - bp]]
        p_values.append(float(fisher_exact(t, alternative="two-sided").pvalue))
        if min(mt, bt) == 0 or mp + bp == 0 or mp + bp == mt + bt:
            ors.append((float("nan"),) * 3)
            continue
        res = odds_ratio(t, kind="conditional")
        ci = res.confidence_interval(confidence_level=1 - alpha)
        ors.append((float(res.statistic), float(ci.low), float(ci.high)))
    out["p_value"] = p_values
    out["p_holm"] = multipletests(out["p_value"].to_numpy(), method="holm")[1] if len(out) else []
    out[["odds_ratio", "or_lo", "or_hi"]] = ors if ors else np.empty((0, 3))
    out["or_method"] = "conditional MLE, exact CI (scipy)"
    return out


# ----------------------------------------------------------------------------------------------
# Table 2 and McNemar


def diagnostic_table(
    calls: pd.DataFrame,
    truth: pd.Series | pd.DataFrame,
    *,
    ci_method: str = "clopper-pearson",
    alpha: float = 0.05,
) -> pd.DataFrame:
    """TP/TN/FN/FP, sensitivity, specificity and accuracy with (1 - alpha) CIs, one row per reader.

    ``calls`` holds patient_id, reader, call (the model enters as one more reader, see
    :func:`calls_from_per_patient`); each reader is scored on the patients it read. Readers keep
    their order of first appearance.
    """
    c = _calls(calls, _truth(truth))
    rows = []
    for reader, g in c.groupby("reader", sort=False):
        pos = g["label"] == "malignant"
        said = g["call"] == "malignant"
        tp, fn = int((pos & said).sum()), int((pos & ~said).sum())
        tn, fp = int((~pos & ~said).sum()), int((~pos & said).sum())
        rows.append({"reader": reader, "tp": tp, "tn": tn, "fn": fn, "fp": fp})
    return diagnostic_from_counts(pd.DataFrame(rows), ci_method=ci_method, alpha=alpha)


def diagnostic_from_counts(
    counts: pd.DataFrame, *, ci_method: str = "clopper-pearson", alpha: float = 0.05
) -> pd.DataFrame:
    """Table 2 from its counts (reader, tp, tn, fn, fp per row, e.g. a paper's printed table)."""
    missing = [c for c in ("reader", "tp", "tn", "fn", "fp") if c not in counts.columns]
    if missing:
        raise SpinefxError(f"Table 2 counts lack columns {missing}")
    rows = []
    for r in counts.itertuples(index=False):
        tp, tn, fn, fp = int(r.tp), int(r.tn), int(r.fn), int(r.fp)
        row = {"reader": r.reader, "tp": tp, "tn": tn, "fn": fn, "fp": fp}
        for name, k, n in (
            ("sensitivity", tp, tp + fn),
            ("specificity", tn, tn + fp),
            ("accuracy", tp + tn, tp + tn + fn + fp),
        ):
            est, lo, hi = proportion_ci(k, n, ci_method=ci_method, alpha=alpha)
            row.update({name: est, f"{name}_lo": lo, f"{name}_hi": hi})
        row["n"] = tp + tn + fn + fp
        row["ci_method"] = ci_method
        rows.append(row)
    return pd.DataFrame(rows)


def mcnemar_pairs(
    calls: pd.DataFrame, truth: pd.Series | pd.DataFrame, *, exact: bool = True
) -> pd.DataFrame:
    """McNemar between every pair of readers, on malignant (sensitivity) and benign (specificity) patients.

    Only patients both readers read count. ``b`` = reader_a right and reader_b wrong, ``c`` = the
    reverse. ``exact``: binomial test on b of b + c (default), else chi-square with continuity
    correction.
    """
    c = _calls(calls, _truth(truth))
    correct = c.pivot(index="patient_id", columns="reader", values="correct")
    label = c.drop_duplicates("patient_id").set_index("patient_id")["label"]
    readers = list(dict.fromkeys(c["reader"]))
    method = "exact binomial" if exact else "chi-square, continuity corrected"
    rows = []
    for a, b in itertools.combinations(readers, 2):
        both = correct[[a, b]].dropna()
        for subset in ("malignant", "benign"):
            s = both[label.reindex(both.index) == subset]
            ra, rb = s[a].astype(bool).to_numpy(), s[b].astype(bool).to_numpy()
            n01, n10 = int((ra & ~rb).sum()), int((~ra & rb).sum())
            table = [[int((ra & rb).sum()), n01], [n10, int((~ra & ~rb).sum())]]
            if len(s) == 0:
                p = float("nan")
            elif n01 + n10 == 0:
                p = 1.0  # no discordant patient, no evidence of a difference (chi-square: 0/0)
            else:
                p = float(mcnemar(table, exact=exact, correction=True).pvalue)
            rows.append(
                {
                    "reader_a": a,
                    "reader_b": b,
                    "subset": subset,
                    "n": len(s),
                    "a_correct_b_wrong": n01,
                    "a_wrong_b_correct": n10,
                    "b": n01,
                    "c": n10,
                    "p_value": p,
                    "method": method,
                }
            )
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------------------------
# ROC AUC


def binary_labels(y_true: Sequence | np.ndarray | pd.Series) -> np.ndarray:
    """Labels as 0/1 (malignant = 1) from 0/1 or benign/malignant."""
    y = np.asarray(y_true)
    if y.dtype.kind in "OUS":
        bad = sorted(set(y.tolist()) - set(LABELS))
        if bad:
            raise SpinefxError(f"labels {bad} are not benign/malignant")
        return (y == "malignant").astype(int)
    y = y.astype(int)
    if not np.isin(y, [0, 1]).all():
        raise SpinefxError("labels must be 0/1 or benign/malignant")
    return y


def roc_points(y_true: Sequence, scores: Sequence) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ROC curve (fpr, tpr, thresholds), one point per distinct score, from (0, 0) to (1, 1)."""
    y = binary_labels(y_true)
    s = np.asarray(scores, dtype=float)
    order = np.argsort(-s, kind="stable")
    s, y = s[order], y[order]
    last = np.r_[np.nonzero(np.diff(s))[0], len(s) - 1]  # last index of each distinct score
    tps = np.cumsum(y)[last]
    fps = (last + 1) - tps
    p, n = max(int(y.sum()), 1), max(int(len(y) - y.sum()), 1)
    return np.r_[0.0, fps / n], np.r_[0.0, tps / p], np.r_[np.inf, s[last]]


def _auc_by_ranks(pos: np.ndarray, neg: np.ndarray, axis: int = -1) -> np.ndarray:
    """Mann-Whitney AUC (ties count one half) along ``axis`` of stacked [pos, neg]."""
    m, n = pos.shape[axis], neg.shape[axis]
    r = rankdata(np.concatenate([pos, neg], axis=axis), axis=axis)
    rank_pos = np.take(r, np.arange(m), axis=axis).sum(axis=axis)
    return (rank_pos - m * (m + 1) / 2) / (m * n)


def auc_ci(
    y_true: Sequence,
    scores: Sequence,
    *,
    method: str = "delong",
    alpha: float = 0.05,
    n_boot: int = 2000,
    seed: int = 0,
) -> dict:
    """ROC AUC with a (1 - alpha) CI: DeLong (normal on the AUC scale, clipped to [0, 1]) or a
    stratified percentile bootstrap (positives and negatives resampled separately).

    Returns dict(auc, lo, hi, se, method, n_pos, n_neg).
    """
    y = binary_labels(y_true)
    s = np.asarray(scores, dtype=float)
    if len(s) != len(y):
        raise SpinefxError(f"{len(y)} labels but {len(s)} scores")
    pos, neg = s[y == 1], s[y == 0]
    m, n = len(pos), len(neg)
    if m == 0 or n == 0:
        raise SpinefxError(
            "AUC needs both malignant and benign patients", fix="check the labels of the cohort"
        )
    auc = float(_auc_by_ranks(pos, neg))
    if method == "delong":
        # structural components (DeLong et al. 1988) via midranks (Sun & Xu 2014)
        tz = rankdata(np.r_[pos, neg])
        v10 = (tz[:m] - rankdata(pos)) / n  # per positive: fraction of negatives below it
        v01 = 1.0 - (tz[m:] - rankdata(neg)) / m  # per negative: fraction of positives above it
        var = (np.var(v10, ddof=1) / m if m > 1 else 0.0) + (np.var(v01, ddof=1) / n if n > 1 else 0.0)
        se = float(np.sqrt(var))
        z = norm.ppf(1 - alpha / 2)
        lo, hi = max(0.0, auc - z * se), min(1.0, auc + z * se)
        if se == 0.0:
            # Perfect (or perfectly reversed) separation: the normal interval collapses to a point,
            # which would claim certainty the sample cannot give. Report it as undefined.
            lo = hi = float("nan")
            method = "delong (CI undefined: perfect separation)"
    elif method == "bootstrap":
        rng = np.random.default_rng(seed)
        bp = pos[rng.integers(0, m, size=(n_boot, m))]
        bn = neg[rng.integers(0, n, size=(n_boot, n))]
        boots = _auc_by_ranks(bp, bn, axis=1)
        se = float(np.std(boots, ddof=1))
        lo, hi = (float(q) for q in np.quantile(boots, [alpha / 2, 1 - alpha / 2]))
    else:
        raise SpinefxError(f"unknown AUC CI method {method!r}", fix="use delong or bootstrap")
    return {"auc": auc, "lo": float(lo), "hi": float(hi), "se": se, "method": method, "n_pos": m, "n_neg": n}


def per_fold_auc(
    per_patient: pd.DataFrame, *, method: str = "delong", alpha: float = 0.05, seed: int = 0
) -> pd.DataFrame:
    """Per-patient AUC of each held-out fold with its CI; NaN where a fold lacks one class.
    ``seed`` seeds the bootstrap (stats.seed), so per-fold intervals are reproducible."""
    rows = []
    for fold, g in per_patient.groupby("fold", sort=True):
        y = binary_labels(g["label"].to_numpy())
        row = {"fold": int(fold), "n": len(g), "n_malignant": int(y.sum()), "n_benign": int(len(y) - y.sum())}
        if 0 < y.sum() < len(y):
            r = auc_ci(y, g["prob"].to_numpy(), method=method, alpha=alpha, seed=seed)
            row.update(auc=r["auc"], lo=r["lo"], hi=r["hi"], se=r["se"])
        else:
            row.update(auc=float("nan"), lo=float("nan"), hi=float("nan"), se=float("nan"))
            r = {"method": method}
        row["method"] = r["method"]
        rows.append(row)
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------------------------
# 15-feature logistic regression (Firth's penalised likelihood)
#
# The paper's features nearly separate the classes (intravertebral mass 11/50 vs 0/140, pedicle
# involvement 5/50 vs 0/140): the plain maximum-likelihood estimate runs off to infinity and
# statsmodels Logit raises PerfectSeparationError or returns meaningless SEs. Firth's penalty
# (0.5 log det of the Fisher information, Heinze & Schemper 2002) keeps every estimate finite,
# removes the small-sample bias instead of adding one (unlike a ridge penalty whose strength is
# arbitrary), and has a standard CI: the profile penalised likelihood, which stays sensible under
# separation where Wald intervals do not.


def _penalised_loglik(beta: np.ndarray, X: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Firth log-likelihood, its gradient (the modified score) and the Fisher information."""
    eta = X @ beta
    p = 1.0 / (1.0 + np.exp(-eta))
    w = p * (1.0 - p)
    info = X.T @ (X * w[:, None])
    sign, logdet = np.linalg.slogdet(info)
    if sign <= 0:
        return -np.inf, np.zeros_like(beta), info
    ll = float(-(y * np.logaddexp(0, -eta) + (1 - y) * np.logaddexp(0, eta)).sum())
    xw = X * np.sqrt(w)[:, None]
    h = np.einsum("ij,ij->i", xw @ np.linalg.inv(info), xw)  # hat diagonal
    score = X.T @ (y - p + h * (0.5 - p))
    return ll + 0.5 * logdet, score, info


def _firth_fit(
    X: np.ndarray,
    y: np.ndarray,
    *,
    start: np.ndarray | None = None,
    fixed: tuple[int, float] | None = None,
    max_iter: int = 200,
    tol: float = 1e-9,
) -> tuple[np.ndarray, float, bool]:
    """Maximise the Firth likelihood by Newton steps with step halving (optionally one coef fixed).

    Returns (beta, penalised log-likelihood, converged): converged is False when ``max_iter`` ran out
    with the last step or the modified score still above logistf's 1e-4."""
    beta = np.zeros(X.shape[1]) if start is None else start.astype(float).copy()
    free = np.ones(X.shape[1], dtype=bool)
    if fixed is not None:
        beta[fixed[0]] = fixed[1]
        free[fixed[0]] = False
    ll, score, info = _penalised_loglik(beta, X, y)
    converged = False
    for _ in range(max_iter):
        step = np.zeros_like(beta)
        step[free] = np.linalg.solve(info[np.ix_(free, free)], score[free])
        biggest = np.abs(step).max()
        if biggest > 5.0:  # as logistf's maxstep: keeps the first steps from overshooting
            step *= 5.0 / biggest
        for _half in range(30):
            new = beta + step
            ll_new, score_new, info_new = _penalised_loglik(new, X, y)
            if ll_new >= ll - 1e-12:
                break
            step /= 2
        beta, ll, score, info = new, ll_new, score_new, info_new
        if np.abs(step).max() < tol or np.abs(score[free]).max() < tol:
            converged = True
            break
    else:
        # out of iterations: converged by logistf's criteria (xconv = gconv = 1e-4) or not at all
        converged = bool(np.abs(step).max() < 1e-4 and np.abs(score[free]).max() < 1e-4)
    return beta, ll, converged and bool(np.isfinite(ll))


def firth_logit(
    X: np.ndarray,
    y: np.ndarray,
    *,
    names: Sequence[str] | None = None,
    alpha: float = 0.05,
    ci: str = "profile",
) -> pd.DataFrame:
    """Firth logistic regression with intercept; per term: coef, Wald se, odds ratio and CI, LR p.

    ``ci``: ``profile`` (penalised profile likelihood, default) or ``wald``. The p-value is the
    penalised likelihood-ratio test of coef = 0 (chi-square, 1 df). Columns that are constant in
    ``X`` cannot be estimated and get NaN.
    """
    X = np.asarray(X, dtype=float)
    y = np.asarray(y, dtype=float)
    names = list(names) if names is not None else [f"x{i}" for i in range(X.shape[1])]
    usable = _estimable_columns(X)
    Xd = np.column_stack([np.ones(len(X)), X[:, usable]])
    terms = ["intercept"] + [n for n, u in zip(names, usable, strict=True) if u]
    beta, ll_max, fit_converged = _firth_fit(Xd, y)
    _, _, info = _penalised_loglik(beta, Xd, y)
    se = np.sqrt(np.diag(np.linalg.inv(info)))
    crit = chi2.ppf(1 - alpha, 1)

    def deviance(j: int, value: float) -> float:
        _, ll, _ = _firth_fit(Xd, y, start=beta, fixed=(j, value))
        return 2.0 * (ll_max - ll)

    def converges_at(j: int, value: float) -> bool:
        return bool(np.isfinite(value)) and _firth_fit(Xd, y, start=beta, fixed=(j, value), max_iter=1000)[2]

    rows = {}
    for j, term in enumerate(terms):
        p = float(chi2.sf(max(deviance(j, 0.0), 0.0), 1))
        ci_ok = True
        if ci == "wald":
            z = norm.ppf(1 - alpha / 2)
            lo, hi = beta[j] - z * se[j], beta[j] + z * se[j]
        elif ci == "profile":
            bounds = []
            for direction in (-1.0, 1.0):
                f = lambda v, j=j: deviance(j, v) - crit  # noqa: E731
                step, far = max(se[j], 0.1), beta[j]
                for _ in range(60):
                    far = far + direction * step
                    if f(far) > 0:
                        break
                    step *= 1.5
                else:
                    # the profile never crossed the critical value: the bound is not estimable
                    bounds.append(np.nan)
                    continue
                bounds.append(
                    optimize.brentq(f, beta[j], far, xtol=1e-6)
                    if direction > 0
                    else optimize.brentq(f, far, beta[j], xtol=1e-6)
                )
            lo, hi = bounds
            ci_ok = converges_at(j, lo) and converges_at(j, hi)
        else:
            raise SpinefxError(f"unknown CI {ci!r}", fix="use profile or wald")
        if not ci_ok:
            lo = hi = np.nan  # a bound from a fit that did not converge is not a number to report
        rows[term] = (beta[j], se[j], lo, hi, p, ci_ok)
    out = []
    for term in ["intercept", *names]:
        b, s, lo, hi, p, ci_ok = rows.get(term, (np.nan,) * 5 + (False,))
        out.append(
            {
                "term": term,
                "coef": b,
                "se": s,
                "coef_lo": lo,
                "coef_hi": hi,
                "odds_ratio": np.exp(b),
                "or_lo": np.exp(lo),
                "or_hi": np.exp(hi),
                "p_value": p,
                "converged": bool(fit_converged),
                "ci_estimable": ci_ok,
                "ci_method": f"{ci} (Firth penalised likelihood)",
            }
        )
    return pd.DataFrame(out)


def _estimable_columns(X: np.ndarray) -> np.ndarray:
    """Columns that can be estimated next to an intercept: not constant, not a linear combination of
    others. Few patients (a small fold, a small cohort) make binary features collinear, and the
    Fisher information is then singular; the pivoted QR keeps a maximal independent set, in column
    order of importance."""
    varying = X.std(axis=0) > 0
    keep = np.zeros(X.shape[1], dtype=bool)
    if not varying.any():
        return keep
    idx = np.flatnonzero(varying)
    centred = X[:, idx] - X[:, idx].mean(axis=0)
    _, r, pivots = linalg.qr(centred, mode="economic", pivoting=True)
    diag = np.abs(np.diag(r))
    rank = int((diag > diag.max() * 1e-10).sum()) if diag.size else 0
    keep[idx[pivots[:rank]]] = True
    return keep


def _firth_predict(X_train: np.ndarray, y_train: np.ndarray, X_test: np.ndarray) -> np.ndarray:
    usable = _estimable_columns(X_train)
    beta, _, _ = _firth_fit(np.column_stack([np.ones(len(X_train)), X_train[:, usable]]), y_train)
    eta = np.column_stack([np.ones(len(X_test)), X_test[:, usable]]) @ beta
    return 1.0 / (1.0 + np.exp(-eta))


def feature_matrix(
    features: pd.DataFrame, truth: pd.Series | pd.DataFrame, feature_names: Sequence[str] = FEATURES
) -> tuple[pd.Index, np.ndarray, np.ndarray, pd.Series]:
    """The patients with a label and a complete features row: (ids, X, y = malignant, their labels)."""
    lab = _truth(truth)
    feats = features.assign(patient_id=features["patient_id"].astype(str))
    absent = [f for f in feature_names if f not in feats.columns]
    if absent:
        raise SpinefxError(f"features table lacks columns {absent}")
    feats = feats[feats["patient_id"].isin(lab.index)].dropna(subset=list(feature_names))
    feats = feats.drop_duplicates("patient_id").set_index("patient_id")
    if len(feats) == 0:
        raise SpinefxError("no patient has both a label and a complete features row")
    y = (lab.reindex(feats.index) == "malignant").to_numpy(dtype=float)
    return feats.index, feats[list(feature_names)].to_numpy(dtype=float), y, lab.reindex(feats.index)


def folds_of(folds: pd.DataFrame, ids: pd.Index) -> pd.Series:
    """Each patient's fold from a folds table (patient_id, fold); every patient must have one."""
    fmap = folds.assign(patient_id=folds["patient_id"].astype(str)).set_index("patient_id")["fold"]
    lost = [p for p in ids if p not in fmap.index]
    if lost:
        raise SpinefxError(f"patients with features but no fold: {', '.join(lost)}", fix="rerun assign_folds")
    return fmap.reindex(ids).astype(int)


def feature_model_cv(
    features: pd.DataFrame,
    truth: pd.Series | pd.DataFrame,
    *,
    k: int = 10,
    seed: int = 0,
    folds: pd.DataFrame | None = None,
    feature_names: Sequence[str] = FEATURES,
    threshold: float = 0.5,
    alpha: float = 0.05,
    ci_method: str = "clopper-pearson",
    coef_ci: str = "profile",
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Cross-validated 15-feature logistic regression (Firth) and its coefficients on all patients.

    ``folds`` (patient_id, fold) reuses the network's folds.tsv, so both models are scored on the
    same splits; without it the patients get :func:`spinefx.learn.folds.assign_folds` (``k``, ``seed``),
    which is the network's split too whenever the cohort, ``k`` and ``seed`` are the same. Patients need a
    label and a complete features row. Returns (summary[metric, value, lo, hi, n, k, ci_method],
    coefficients as :func:`firth_logit`). Accuracy/sensitivity/specificity use the pooled
    out-of-fold calls at ``threshold``; the AUC uses the pooled out-of-fold probabilities (DeLong).
    """
    ids, X, y, labels = feature_matrix(features, truth, feature_names)
    if folds is not None:
        fold = folds_of(folds, ids)
    else:
        sheet = pd.DataFrame({"patient_id": ids, "label": labels.to_numpy()})
        fold = assign_folds(sheet, k, seed).set_index("patient_id")["fold"].reindex(ids)
    prob = np.full(len(y), np.nan)
    for f in sorted(set(fold)):
        test = (fold == f).to_numpy()
        prob[test] = _firth_predict(X[~test], y[~test], X[test])
    said = prob >= threshold
    pos = y == 1
    tp, tn = int((said & pos).sum()), int((~said & ~pos).sum())
    rows = []
    for name, kk, n in (
        ("accuracy", tp + tn, len(y)),
        ("sensitivity", tp, int(pos.sum())),
        ("specificity", tn, int((~pos).sum())),
    ):
        est, lo, hi = proportion_ci(kk, n, ci_method=ci_method, alpha=alpha)
        rows.append({"metric": name, "value": est, "lo": lo, "hi": hi, "n": n, "ci_method": ci_method})
    if 0 < pos.sum() < len(y):
        a = auc_ci(y, prob, method="delong", alpha=alpha)
        rows.append(
            {
                "metric": "auc",
                "value": a["auc"],
                "lo": a["lo"],
                "hi": a["hi"],
                "n": len(y),
                "ci_method": "delong",
            }
        )
    summary = pd.DataFrame(rows)
    summary.insert(len(summary.columns) - 1, "k", len(set(fold)))
    coefs = firth_logit(X, y, names=feature_names, alpha=alpha, ci=coef_ci)
    return summary, coefs
