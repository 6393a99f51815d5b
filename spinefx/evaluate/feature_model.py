"""The 15-feature logistic regression, honestly: apparent next to cross-validated, over many splits.

The paper's 0.94 for the feature model is most likely apparent accuracy (fitted and scored on the
same 190 patients). This module reports both side by side, repeats the cross-validation over fold
seeds (the spread one split hides), flags every Firth fit that did not converge, and gives the
FLIC-corrected probabilities of Puhr et al. 2017 (Firth's coefficients, the intercept refitted by
maximum likelihood so the mean probability equals the observed prevalence: Firth's own intercept
biases probabilities towards 1/2).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import statsmodels.api as sm

from spinefx.errors import SpinefxError
from spinefx.evaluate.stats import _estimable_columns, _firth_fit, auc_ci, feature_matrix, folds_of
from spinefx.features import FEATURES
from spinefx.learn.folds import assign_folds


def flic_fit(X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, bool]:
    """Firth fit with FLIC intercept. Returns (beta incl. intercept, usable columns, converged)."""
    usable = _estimable_columns(X)
    Xd = np.column_stack([np.ones(len(X)), X[:, usable]])
    beta, _, converged = _firth_fit(Xd, y)
    offset = Xd[:, 1:] @ beta[1:]
    if 0 < y.sum() < len(y):
        refit = sm.GLM(y, np.ones((len(y), 1)), family=sm.families.Binomial(), offset=offset).fit()
        beta = beta.copy()
        beta[0] = float(refit.params[0])
        converged = converged and bool(refit.converged)
    return beta, usable, converged


def _predict(beta: np.ndarray, usable: np.ndarray, X: np.ndarray) -> np.ndarray:
    eta = np.column_stack([np.ones(len(X)), X[:, usable]]) @ beta
    return 1.0 / (1.0 + np.exp(-eta))


def cross_validated_probabilities(X: np.ndarray, y: np.ndarray, fold: np.ndarray) -> tuple[np.ndarray, int]:
    """Out-of-fold FLIC probabilities and how many of the fold fits did not converge."""
    prob = np.full(len(y), np.nan)
    failed = 0
    for f in np.unique(fold):
        test = fold == f
        beta, usable, ok = flic_fit(X[~test], y[~test])
        failed += not ok
        prob[test] = _predict(beta, usable, X[test])
    return prob, failed


def _scores(y: np.ndarray, prob: np.ndarray, threshold: float) -> dict[str, float]:
    said = prob >= threshold
    pos = y == 1
    out = {
        "accuracy": float((said == pos).mean()),
        "sensitivity": float(said[pos].mean()) if pos.any() else float("nan"),
        "specificity": float((~said[~pos]).mean()) if (~pos).any() else float("nan"),
    }
    out["auc"] = auc_ci(y, prob)["auc"] if 0 < pos.sum() < len(y) else float("nan")
    return out


def feature_model_honest(
    features: pd.DataFrame,
    truth: pd.Series | pd.DataFrame,
    *,
    k: int,
    seeds: Sequence[int],
    folds: pd.DataFrame | None = None,
    feature_names: Sequence[str] = FEATURES,
    threshold: float = 0.5,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Apparent vs cross-validated accuracy, sensitivity, specificity and AUC of the FLIC model.

    Returns (summary, probabilities). summary: one row per metric with ``apparent``, ``cv`` (on
    ``folds`` when given, e.g. the network's, else on seeds[0]) and the mean, sd, min and max of
    repeated k-fold CV over ``seeds``, plus ``optimism`` = apparent - repeated mean and
    ``nonconverged_fits`` over all fits. probabilities: patient_id, label, prob_apparent, prob_cv
    (FLIC-corrected).
    """
    if not seeds:
        raise SpinefxError("repeated cross-validation needs at least one fold seed")
    ids, X, y, labels = feature_matrix(features, truth, feature_names)
    beta, usable, ok_all = flic_fit(X, y)
    apparent_prob = _predict(beta, usable, X)
    failed = int(not ok_all)
    sheet = pd.DataFrame({"patient_id": ids, "label": labels.to_numpy()})
    repeated = []
    for seed in seeds:
        fold = assign_folds(sheet, k, int(seed)).set_index("patient_id")["fold"].reindex(ids).to_numpy()
        prob, nf = cross_validated_probabilities(X, y, fold)
        failed += nf
        repeated.append(_scores(y, prob, threshold))
        if seed == seeds[0]:
            cv_prob = prob
    if folds is not None:
        cv_prob, nf = cross_validated_probabilities(X, y, folds_of(folds, ids).to_numpy())
        failed += nf
    apparent = _scores(y, apparent_prob, threshold)
    cv = _scores(y, cv_prob, threshold)
    rep = pd.DataFrame(repeated)
    summary = pd.DataFrame(
        {
            "metric": list(apparent),
            "apparent": list(apparent.values()),
            "cv": [cv[m] for m in apparent],
            "repeated_cv_mean": rep.mean().to_numpy(),
            "repeated_cv_sd": rep.std(ddof=1).to_numpy() if len(rep) > 1 else np.nan,
            "repeated_cv_min": rep.min().to_numpy(),
            "repeated_cv_max": rep.max().to_numpy(),
        }
    )
    summary["optimism"] = summary["apparent"] - summary["repeated_cv_mean"]
    summary["k"] = k
    summary["repeats"] = len(seeds)
    summary["n"] = len(y)
    summary["nonconverged_fits"] = failed
    summary["method"] = "Firth logistic regression with FLIC intercept (Puhr 2017)"
    probs = pd.DataFrame(
        {"patient_id": ids, "label": labels.to_numpy(), "prob_apparent": apparent_prob, "prob_cv": cv_prob}
    )
    return summary, probs
