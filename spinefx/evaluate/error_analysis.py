"""Which imaging features a reader's errors share: the paper's error analysis of the R1 resident.

For one reader, among benign patients its false positives against its true negatives, and among
malignant patients its false negatives against its true positives, per feature: counts, Fisher's
exact p (two-sided) and Holm-adjusted p within each comparison. Also from counts, so the paper's
printed numbers (homogeneous marrow 6/54 vs 42/86, ...) go through the same code.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
from scipy.stats import fisher_exact
from statsmodels.stats.multitest import multipletests

from spinefx.errors import SpinefxError
from spinefx.evaluate.stats import _calls, _truth
from spinefx.features import FEATURES

COMPARISONS = {
    "benign": ("false_positive", "true_negative"),
    "malignant": ("false_negative", "true_positive"),
}
COUNT_COLUMNS = ("error_positive", "error_total", "correct_positive", "correct_total")


def error_analysis_from_counts(counts: pd.DataFrame) -> pd.DataFrame:
    """Fisher + Holm (within each reader and comparison) from rows of reader, comparison, feature
    and COUNT_COLUMNS (how many of the reader's errors / correct calls show the feature)."""
    missing = [c for c in ("reader", "comparison", "feature", *COUNT_COLUMNS) if c not in counts.columns]
    if missing:
        raise SpinefxError(f"error-analysis counts lack columns {missing}")
    out = counts.copy().reset_index(drop=True)
    p = []
    for r in out.itertuples(index=False):
        ep, et, cp, ct = (int(getattr(r, c)) for c in COUNT_COLUMNS)
        if not (0 <= ep <= et and 0 <= cp <= ct):
            raise SpinefxError(f"{r.reader}, {r.feature}: positives exceed totals ({ep}/{et}, {cp}/{ct})")
        p.append(float(fisher_exact([[ep, et - ep], [cp, ct - cp]]).pvalue) if et and ct else float("nan"))
    out["error_fraction"] = out["error_positive"] / out["error_total"].where(out["error_total"] > 0)
    out["correct_fraction"] = out["correct_positive"] / out["correct_total"].where(out["correct_total"] > 0)
    out["p_value"] = p
    out["p_holm"] = float("nan")
    for _, idx in out.groupby(["reader", "comparison"], sort=False).groups.items():
        sub = out.loc[idx, "p_value"].dropna()
        if len(sub):
            out.loc[sub.index, "p_holm"] = multipletests(sub.to_numpy(), method="holm")[1]
    out["method"] = "Fisher exact, two-sided; Holm within comparison"
    return out


def error_analysis(
    calls: pd.DataFrame,
    truth: pd.Series | pd.DataFrame,
    features: pd.DataFrame,
    *,
    readers: Sequence[str] | None = None,
    feature_names: Sequence[str] = FEATURES,
) -> pd.DataFrame:
    """The features of each reader's errors against its correct calls (default: every reader).

    Rows: reader, comparison (``false_positive vs true_negative`` among benign patients,
    ``false_negative vs true_positive`` among malignant ones), feature, counts, fractions, p, Holm.
    A patient without a value of a feature drops out of that feature only.
    """
    c = _calls(calls, _truth(truth))
    if "patient_id" not in features.columns:
        raise SpinefxError("features table lacks column patient_id")
    feats = features.assign(patient_id=features["patient_id"].astype(str)).drop_duplicates("patient_id")
    feats = feats.set_index("patient_id")
    absent = [f for f in feature_names if f not in feats.columns]
    if absent:
        raise SpinefxError(f"features table lacks columns {absent}")
    chosen = list(dict.fromkeys(c["reader"])) if readers is None else list(readers)
    rows = []
    for reader in chosen:
        g = c[c["reader"] == reader]
        if g.empty:
            raise SpinefxError(f"reader {reader!r} has no calls", fix="check stats.error_analysis_readers")
        for label, (wrong, right) in COMPARISONS.items():
            sub = g[g["label"] == label]
            values = feats.reindex(sub["patient_id"])
            err = ~sub["correct"].to_numpy()
            for f in feature_names:
                v = pd.to_numeric(values[f], errors="coerce").to_numpy()
                given = ~pd.isna(v)
                e, k = given & err, given & ~err
                rows.append(
                    {
                        "reader": reader,
                        "comparison": f"{wrong} vs {right}",
                        "feature": f,
                        "error_positive": int((v[e] == 1).sum()),
                        "error_total": int(e.sum()),
                        "correct_positive": int((v[k] == 1).sum()),
                        "correct_total": int(k.sum()),
                    }
                )
    return error_analysis_from_counts(pd.DataFrame(rows))
