"""Calibrated probabilities and the operating threshold, from the out-of-fold per-patient calls.

Why: training sees ~41% malignant samples (augmentation x1/x2 or x20/x40) while ~26% of patients are
malignant, and the max over slices inflates the patient's probability further, so the model's "0.5"
is not even odds. A calibrator (Platt: logistic regression on the logit; or isotonic regression,
scikit-learn's implementations) fitted on the out-of-fold probabilities maps it back to the observed
frequency. It never sees the patients it is applied to: the final calibrator is fitted on the
cross-validated patients and applied to new ones; the calibrated out-of-fold probabilities reported
for the cohort itself are cross-fitted (each fold's from a calibrator and threshold fitted on the
other folds).

The fitted calibrator is stored as JSON with its parameters (Platt: slope, intercept; isotonic: the
step function's knots), so applying it needs numpy only and a site can re-implement it in one line.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from spinefx.atomic import atomic_path
from spinefx.errors import SpinefxError
from spinefx.settings import section_defaults

METHODS = ("platt", "isotonic")
THRESHOLD_RULES = ("fixed", "sensitivity")
_EPS = 1e-6
_DEFAULTS = section_defaults("calibration")


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=float), _EPS, 1 - _EPS)
    return np.log(p / (1 - p))


def _labels01(labels: Sequence | np.ndarray | pd.Series) -> np.ndarray:
    y = np.asarray(labels)
    if y.dtype.kind in "OUS":
        bad = sorted(set(y.tolist()) - {"benign", "malignant"})
        if bad:
            raise SpinefxError(f"labels {bad} are not benign/malignant")
        return (y == "malignant").astype(int)
    return y.astype(int)


@dataclass
class Calibrator:
    """A fitted map from the model's probability to a calibrated one, plus the operating threshold
    (on the calibrated scale) and how both were chosen."""

    method: str
    params: dict[str, Any]
    threshold: float = 0.5
    threshold_rule: str = "fixed"
    n_patients: int = 0
    n_malignant: int = 0
    notes: dict[str, Any] = field(default_factory=dict)

    def apply(self, prob: Sequence[float] | np.ndarray) -> np.ndarray:
        """Calibrated probabilities for raw per-patient probabilities."""
        p = np.asarray(prob, dtype=float)
        if self.method == "platt":
            z = self.params["slope"] * _logit(p) + self.params["intercept"]
            return 1.0 / (1.0 + np.exp(-z))
        # isotonic: sklearn's IsotonicRegression.predict (linear between knots, clipped outside)
        return np.interp(p, self.params["x"], self.params["y"])

    def call(self, prob: Sequence[float] | np.ndarray) -> np.ndarray:
        """benign/malignant for raw probabilities: calibrated probability >= threshold."""
        return np.where(self.apply(prob) >= self.threshold, "malignant", "benign")

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "params": self.params,
            "threshold": self.threshold,
            "threshold_rule": self.threshold_rule,
            "n_patients": self.n_patients,
            "n_malignant": self.n_malignant,
            "notes": self.notes,
        }

    def save(self, path: str | Path) -> None:
        with atomic_path(Path(path)) as tmp:
            Path(tmp).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> Calibrator:
        try:
            d = json.loads(Path(path).read_text())
            return cls(**d)
        except (OSError, ValueError, TypeError) as err:
            raise SpinefxError(
                f"cannot read the calibrator ({err}).", path=path, fix="rerun the calibrate rule."
            ) from err


def fit_calibrator(
    prob: Sequence[float] | np.ndarray,
    labels: Sequence | np.ndarray,
    *,
    method: str = _DEFAULTS["method"],
    threshold_rule: str = _DEFAULTS["threshold_rule"],
    threshold: float = _DEFAULTS["threshold"],
    target_sensitivity: float = _DEFAULTS["target_sensitivity"],
) -> Calibrator:
    """Fit the calibrator on (probability, label) pairs of out-of-fold patients and choose the
    operating threshold on the same patients' calibrated probabilities (:func:`choose_threshold`)."""
    if method not in METHODS:
        raise SpinefxError(f"unknown calibration method {method!r}", fix=f"use one of {', '.join(METHODS)}")
    p = np.asarray(prob, dtype=float)
    y = _labels01(labels)
    if len(p) != len(y) or len(p) == 0:
        raise SpinefxError(f"{len(y)} labels for {len(p)} probabilities")
    if len(set(y.tolist())) < 2:
        raise SpinefxError(
            "calibration needs both malignant and benign patients",
            fix="use more patients per fold (folds.k lower or a larger cohort)",
        )
    if method == "platt":
        from sklearn.linear_model import LogisticRegression

        # Platt (1999): targets (N+ + 1)/(N+ + 2) and 1/(N- + 2) instead of 1/0, so a fold that the
        # model separates perfectly still gives a finite slope. Each patient enters twice, as a
        # positive with weight t and a negative with weight 1 - t.
        n_pos, n_neg = int(y.sum()), int(len(y) - y.sum())
        t = np.where(y == 1, (n_pos + 1) / (n_pos + 2), 1 / (n_neg + 2))
        z = _logit(p).reshape(-1, 1)
        lr = LogisticRegression(C=np.inf, solver="lbfgs", max_iter=1000, tol=1e-10)
        lr.fit(np.vstack([z, z]), np.r_[np.ones(len(y)), np.zeros(len(y))], sample_weight=np.r_[t, 1 - t])
        params = {"slope": float(lr.coef_[0, 0]), "intercept": float(lr.intercept_[0])}
    else:
        from sklearn.isotonic import IsotonicRegression

        iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(p, y)
        params = {"x": [float(v) for v in iso.X_thresholds_], "y": [float(v) for v in iso.y_thresholds_]}
    cal = Calibrator(method, params, n_patients=len(p), n_malignant=int(y.sum()))
    cal.threshold = choose_threshold(
        cal.apply(p), y, rule=threshold_rule, threshold=threshold, target_sensitivity=target_sensitivity
    )
    cal.threshold_rule = (
        f"fixed at {threshold:g}" if threshold_rule == "fixed" else f"sensitivity >= {target_sensitivity:g}"
    )
    return cal


def choose_threshold(
    prob: Sequence[float] | np.ndarray,
    labels: Sequence | np.ndarray,
    *,
    rule: str = _DEFAULTS["threshold_rule"],
    threshold: float = _DEFAULTS["threshold"],
    target_sensitivity: float = _DEFAULTS["target_sensitivity"],
) -> float:
    """The operating threshold: ``fixed`` returns ``threshold`` (0.5, as the paper); ``sensitivity``
    returns the highest threshold t at which calling ``prob >= t`` malignant reaches
    ``target_sensitivity`` on these patients (the most specific such cut)."""
    if rule not in THRESHOLD_RULES:
        raise SpinefxError(f"unknown threshold rule {rule!r}", fix=f"use one of {', '.join(THRESHOLD_RULES)}")
    if rule == "fixed":
        return float(threshold)
    p = np.asarray(prob, dtype=float)
    pos = np.sort(p[_labels01(labels) == 1])[::-1]
    if len(pos) == 0:
        raise SpinefxError("a target sensitivity needs malignant patients")
    need = int(np.ceil(target_sensitivity * len(pos) - 1e-9))
    return float(pos[max(need, 1) - 1])


def cross_fitted(
    per_patient: pd.DataFrame,
    *,
    method: str = _DEFAULTS["method"],
    threshold_rule: str = _DEFAULTS["threshold_rule"],
    threshold: float = _DEFAULTS["threshold"],
    target_sensitivity: float = _DEFAULTS["target_sensitivity"],
) -> pd.DataFrame:
    """Calibrated out-of-fold probabilities and calls for the cohort itself: the patients of fold f
    get a calibrator and threshold fitted on the other folds only. Input: per_patient.tsv
    (patient_id, label, fold, prob); output adds ``prob_calibrated``, ``threshold`` and replaces
    ``call``."""
    out = per_patient[["patient_id", "label", "fold", "prob"]].copy()
    out["prob_calibrated"] = np.nan
    out["threshold"] = np.nan
    folds = sorted(out["fold"].unique())
    if len(folds) < 2:
        raise SpinefxError("cross-fitted calibration needs at least 2 folds")
    for f in folds:
        test = out["fold"] == f
        cal = fit_calibrator(
            out.loc[~test, "prob"],
            out.loc[~test, "label"],
            method=method,
            threshold_rule=threshold_rule,
            threshold=threshold,
            target_sensitivity=target_sensitivity,
        )
        out.loc[test, "prob_calibrated"] = cal.apply(out.loc[test, "prob"])
        out.loc[test, "threshold"] = cal.threshold
    out["call"] = np.where(out["prob_calibrated"] >= out["threshold"], "malignant", "benign")
    return out


def brier_scores(per_patient_calibrated: pd.DataFrame) -> dict[str, float]:
    """Brier score (sklearn) of the raw and the cross-fitted calibrated out-of-fold probabilities."""
    from sklearn.metrics import brier_score_loss

    y = _labels01(per_patient_calibrated["label"])
    return {
        "brier_raw": float(brier_score_loss(y, per_patient_calibrated["prob"])),
        "brier_calibrated": float(brier_score_loss(y, per_patient_calibrated["prob_calibrated"])),
    }


def calibration_summary(per_patient_calibrated: pd.DataFrame, final: Calibrator) -> pd.DataFrame:
    """One-row table: method, Brier before/after, the final threshold and its rule."""
    row: dict[str, Any] = {"method": final.method, **brier_scores(per_patient_calibrated)}
    row |= {
        "threshold": final.threshold,
        "threshold_rule": final.threshold_rule,
        "n_patients": final.n_patients,
        "n_malignant": final.n_malignant,
    }
    return pd.DataFrame([row])


def reliability_figure(
    per_patient_calibrated: pd.DataFrame, out_png: str | Path, *, n_bins: int = _DEFAULTS["n_bins"]
) -> None:
    """Reliability diagram (sklearn's ``calibration_curve``, equal-width bins) of the raw and the
    cross-fitted calibrated out-of-fold probabilities, Brier scores in the legend, histogram below."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.calibration import calibration_curve

    y = _labels01(per_patient_calibrated["label"])
    scores = brier_scores(per_patient_calibrated)
    fig, (ax, hx) = plt.subplots(
        2, 1, figsize=(5.2, 6.0), dpi=110, gridspec_kw={"height_ratios": [3, 1]}, sharex=True
    )
    ax.plot([0, 1], [0, 1], color="grey", ls=":", lw=1, label="perfectly calibrated")
    for col, name, colour in (
        ("prob", f"model (Brier {scores['brier_raw']:.3f})", "tab:red"),
        ("prob_calibrated", f"calibrated, cross-fitted (Brier {scores['brier_calibrated']:.3f})", "tab:blue"),
    ):
        frac, mean = calibration_curve(y, per_patient_calibrated[col], n_bins=n_bins, strategy="uniform")
        ax.plot(mean, frac, marker="o", ms=4, color=colour, label=name)
        hx.hist(per_patient_calibrated[col], bins=n_bins, range=(0, 1), color=colour, alpha=0.45)
    ax.set_ylabel("observed fraction malignant")
    ax.set_xlim(0, 1)
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(f"Reliability, out-of-fold patients (n={len(y)}, {int(y.sum())} malignant)", fontsize=10)
    ax.legend(fontsize=8, loc="upper left")
    hx.set_xlabel("predicted probability of malignancy")
    hx.set_ylabel("patients")
    fig.tight_layout()
    with atomic_path(Path(out_png)) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def calibrator_from_config(per_patient: pd.DataFrame, settings: Mapping[str, Any]) -> Calibrator:
    """The final calibrator: fitted on every out-of-fold patient with the ``calibration:`` settings."""
    return fit_calibrator(
        per_patient["prob"],
        per_patient["label"],
        method=settings["method"],
        threshold_rule=settings["threshold_rule"],
        threshold=settings["threshold"],
        target_sensitivity=settings["target_sensitivity"],
    )
