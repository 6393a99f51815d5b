"""Assisted reading, simulated: what a reader's calls would become with the model beside them.

A simulation from recorded calls, not a reader study: the rule is applied mechanically. Rule
"override at p": where the model's calibrated out-of-fold probability is >= p the call becomes
malignant, where it is <= 1 - p benign, elsewhere the reader's own call stands. Each row gives the
combined sensitivity and specificity with CIs and the exact McNemar test against the same reader
unaided, on malignant (sensitivity) and benign (specificity) patients.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from statsmodels.stats.contingency_tables import mcnemar

from spinefx.errors import SpinefxError
from spinefx.evaluate.stats import proportion_ci


def override_calls(reader_calls: np.ndarray, prob_calibrated: np.ndarray, p: float) -> np.ndarray:
    """The combined calls: the model's where it is confident (>= p or <= 1 - p), else the reader's."""
    if not 0.5 < p < 1:
        raise SpinefxError(f"override p {p} must be in (0.5, 1)")
    prob = np.asarray(prob_calibrated, dtype=float)
    out = np.asarray(reader_calls, dtype=object).copy()
    out[prob >= p] = "malignant"
    out[prob <= 1 - p] = "benign"
    return out


def _mcnemar_p(correct_a: np.ndarray, correct_b: np.ndarray, exact: bool) -> tuple[int, int, float]:
    b = int((correct_a & ~correct_b).sum())
    c = int((~correct_a & correct_b).sum())
    if b + c == 0:
        return b, c, 1.0
    table = [[int((correct_a & correct_b).sum()), b], [c, int((~correct_a & ~correct_b).sum())]]
    return b, c, float(mcnemar(table, exact=exact, correction=True).pvalue)


def assisted_reading_table(
    readers: pd.DataFrame,
    model: pd.DataFrame,
    override_p: Sequence[float],
    *,
    ci_method: str = "clopper-pearson",
    exact: bool = True,
) -> pd.DataFrame:
    """One row per reader and rule (``unaided``, then ``override at p`` for each p).

    ``readers``: readers.tsv (patient_id, reader, call); ``model``: the cross-fitted calibrated
    out-of-fold table (patient_id, label, prob_calibrated). Only patients with both count."""
    m = model[["patient_id", "label", "prob_calibrated"]].copy()
    m["patient_id"] = m["patient_id"].astype(str)
    rows = []
    for reader, calls in readers.groupby("reader", sort=False):
        df = calls.assign(patient_id=calls["patient_id"].astype(str)).merge(m, on="patient_id", how="inner")
        if df.empty:
            raise SpinefxError(f"reader {reader} read none of the model's patients")
        truth = df["label"].to_numpy()
        unaided = df["call"].to_numpy(dtype=object)
        mal, ben = truth == "malignant", truth == "benign"
        for rule, p in [("unaided", None), *((f"override at {p:g}", float(p)) for p in override_p)]:
            calls_now = unaided if p is None else override_calls(unaided, df["prob_calibrated"].to_numpy(), p)
            correct = calls_now == truth
            correct_unaided = unaided == truth
            tp, fn = int((correct & mal).sum()), int((~correct & mal).sum())
            tn, fp = int((correct & ben).sum()), int((~correct & ben).sum())
            sens, sens_lo, sens_hi = proportion_ci(tp, tp + fn, ci_method=ci_method)
            spec, spec_lo, spec_hi = proportion_ci(tn, tn + fp, ci_method=ci_method)
            row = {
                "reader": reader,
                "rule": rule,
                "n": len(df),
                "changed": int((calls_now != unaided).sum()),
                "tp": tp,
                "fn": fn,
                "tn": tn,
                "fp": fp,
                "sensitivity": sens,
                "sensitivity_lo": sens_lo,
                "sensitivity_hi": sens_hi,
                "specificity": spec,
                "specificity_lo": spec_lo,
                "specificity_hi": spec_hi,
            }
            for subset, mask in (("sensitivity", mal), ("specificity", ben)):
                if p is None:
                    b, c, pv = 0, 0, float("nan")
                else:
                    b, c, pv = _mcnemar_p(correct[mask], correct_unaided[mask], exact)
                row[f"mcnemar_{subset}_b"] = b  # assisted right, unaided wrong
                row[f"mcnemar_{subset}_c"] = c  # assisted wrong, unaided right
                row[f"mcnemar_{subset}_p"] = pv
            rows.append(row)
    return pd.DataFrame(rows)


def assisted_markdown(table: pd.DataFrame) -> str:
    """The table as Markdown, headed by what it is: a simulation, not a reader study."""
    lines = [
        "# Assisted reading, simulated (not a reader study)",
        "",
        "Each reader's recorded calls combined with the model's cross-fitted calibrated out-of-fold "
        "probability: `override at p` takes the model's call where its probability is >= p (malignant) "
        "or <= 1 - p (benign), else the reader's. McNemar (exact) against the same reader unaided.",
        "",
        "| reader | rule | changed | sensitivity (95% CI) | McNemar p | specificity (95% CI) | McNemar p |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]

    def ci(r, m):
        return f"{r[m]:.3f} ({r[m + '_lo']:.3f}-{r[m + '_hi']:.3f})"

    def pv(v):
        return "" if np.isnan(v) else f"{v:.3g}"

    for _, r in table.iterrows():
        lines.append(
            f"| {r['reader']} | {r['rule']} | {r['changed']} | {ci(r, 'sensitivity')} | "
            f"{pv(r['mcnemar_sensitivity_p'])} | {ci(r, 'specificity')} | {pv(r['mcnemar_specificity_p'])} |"
        )
    return "\n".join(lines) + "\n"
