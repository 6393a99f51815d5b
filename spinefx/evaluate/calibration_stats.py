"""How far a model's probabilities can be taken at face value, and whether acting on them helps.

Brier score, calibration intercept ("calibration-in-the-large": logistic regression of the outcome on
an offset of logit p) and calibration slope (on logit p), fitted with statsmodels GLM, as in Van
Calster et al. 2019 ("Calibration: the Achilles heel of predictive analytics"); and the decision
curve of Vickers & Elkin 2006: net benefit = TP/n - FP/n * t / (1 - t) over thresholds t, next to
"treat all" and "treat none". The calibrator itself (issue 17) can call these on its output.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import statsmodels.api as sm
from scipy.stats import norm

from spinefx.errors import SpinefxError
from spinefx.evaluate.stats import binary_labels

EPS = 1e-6


def _inputs(y_true: Sequence, prob: Sequence) -> tuple[np.ndarray, np.ndarray]:
    y = binary_labels(y_true).astype(float)
    p = np.asarray(prob, dtype=float)
    if len(p) != len(y):
        raise SpinefxError(f"{len(y)} labels but {len(p)} probabilities")
    if len(p) == 0 or not np.isfinite(p).all() or (p < 0).any() or (p > 1).any():
        raise SpinefxError("probabilities must be finite and in [0, 1]", fix="check the prob column")
    return y, p


def brier_score(y_true: Sequence, prob: Sequence) -> float:
    """Mean squared difference between probability and outcome (0 is perfect, 0.25 a coin)."""
    y, p = _inputs(y_true, prob)
    return float(np.mean((p - y) ** 2))


def calibration_intercept_slope(y_true: Sequence, prob: Sequence, *, alpha: float = 0.05) -> dict:
    """Calibration intercept (slope fixed at 1 via an offset) and slope, each with a Wald CI.

    Ideal: intercept 0, slope 1; slope < 1 means probabilities too extreme (overfit). Probabilities
    are clipped to [1e-6, 1 - 1e-6] so that 0 and 1 stay usable. ``converged`` is False when either
    fit did not converge or the classes are separated by the probabilities.
    """
    y, p = _inputs(y_true, prob)
    lp = np.log(np.clip(p, EPS, 1 - EPS) / (1 - np.clip(p, EPS, 1 - EPS)))
    z = norm.ppf(1 - alpha / 2)
    out: dict = {"n": len(y), "brier": brier_score(y, p)}
    if y.min() == y.max():
        return (
            out
            | {k: float("nan") for k in ("intercept", "intercept_lo", "intercept_hi")}
            | {"slope": float("nan"), "slope_lo": float("nan"), "slope_hi": float("nan"), "converged": False}
        )
    ones = np.ones((len(y), 1))
    converged = True
    try:
        f0 = sm.GLM(y, ones, family=sm.families.Binomial(), offset=lp).fit()
        f1 = sm.GLM(y, np.column_stack([ones, lp]), family=sm.families.Binomial()).fit()
        converged = bool(f0.converged and f1.converged)
        a, sa = float(f0.params[0]), float(f0.bse[0])
        b, sb = float(f1.params[1]), float(f1.bse[1])
    except (np.linalg.LinAlgError, ValueError, sm.tools.sm_exceptions.PerfectSeparationError):
        a = sa = b = sb = float("nan")
        converged = False
    if not (np.isfinite(sb) and sb < 1e3):
        converged = False
    out.update(
        intercept=a,
        intercept_lo=a - z * sa,
        intercept_hi=a + z * sa,
        slope=b,
        slope_lo=b - z * sb,
        slope_hi=b + z * sb,
        converged=converged,
        method="logistic recalibration (statsmodels GLM), Wald CI",
    )
    return out


def net_benefit(y_true: Sequence, prob: Sequence, thresholds: Sequence[float]) -> pd.DataFrame:
    """Decision curve: net benefit of acting when prob >= t, of acting on all and on none, per t."""
    y, p = _inputs(y_true, prob)
    t = np.asarray(thresholds, dtype=float)
    if ((t <= 0) | (t >= 1)).any():
        raise SpinefxError("decision-curve thresholds must lie strictly between 0 and 1")
    n = len(y)
    prevalence = y.mean()
    act = p[None, :] >= t[:, None]
    tp = (act & (y[None, :] == 1)).sum(axis=1)
    fp = (act & (y[None, :] == 0)).sum(axis=1)
    w = t / (1 - t)
    return pd.DataFrame(
        {
            "threshold": t,
            "net_benefit_model": tp / n - fp / n * w,
            "net_benefit_all": prevalence - (1 - prevalence) * w,
            "net_benefit_none": 0.0,
            "tp": tp,
            "fp": fp,
            "n": n,
        }
    )


def calibration_table(y_true: Sequence, probs: dict[str, Sequence], *, alpha: float = 0.05) -> pd.DataFrame:
    """Brier score, calibration intercept and slope of each model (one row each)."""
    rows = [
        {"model": name, **calibration_intercept_slope(y_true, p, alpha=alpha)} for name, p in probs.items()
    ]
    return pd.DataFrame(rows)
