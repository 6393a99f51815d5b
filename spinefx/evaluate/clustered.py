"""Per-slice AUC with a patient-clustered CI (the paper's "AUC > 0.90 in all runs", per slice).

The slices of one patient are not independent, so the DeLong interval of a per-slice AUC would be too
narrow. Obuchowski's nonparametric clustered estimator (Biometrics 1997, 53:567) keeps the AUC over
all (malignant slice, benign slice) pairs and takes its variance over patients; with one slice per
patient it reduces to DeLong's.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import norm, rankdata

from spinefx.errors import SpinefxError
from spinefx.evaluate.stats import binary_labels


def clustered_auc(
    cluster: np.ndarray | pd.Series,
    y_true: np.ndarray | pd.Series,
    scores: np.ndarray | pd.Series,
    *,
    alpha: float = 0.05,
) -> dict:
    """AUC over units (slices) with Obuchowski's cluster (patient) variance and a normal CI.

    Every unit of a cluster must carry the cluster's label (one lesion per patient).
    """
    g = np.asarray(cluster).astype(str)
    y = binary_labels(np.asarray(y_true))
    s = np.asarray(scores, dtype=float)
    if not (len(g) == len(y) == len(s)):
        raise SpinefxError("clusters, labels and scores differ in length")
    mixed = pd.Series(y).groupby(g).nunique()
    if (mixed > 1).any():
        raise SpinefxError("slices of one patient carry both labels", patient=str(mixed.index[mixed > 1][0]))
    pos, neg = y == 1, y == 0
    m, n = int(pos.sum()), int(neg.sum())
    if m == 0 or n == 0:
        raise SpinefxError("per-slice AUC needs malignant and benign slices")
    r_all = rankdata(s)
    v10 = (r_all[pos] - rankdata(s[pos])) / n  # per positive slice: fraction of negative slices below
    v01 = 1.0 - (r_all[neg] - rankdata(s[neg])) / m
    auc = float(v10.mean())
    gp, gn = g[pos], g[neg]
    x = pd.Series(v10).groupby(gp).agg(["sum", "size"])
    z = pd.Series(v01).groupby(gn).agg(["sum", "size"])
    i1, i0 = len(x), len(z)
    s10 = i1 / ((i1 - 1) * m) * float(((x["sum"] - x["size"] * auc) ** 2).sum()) if i1 > 1 else 0.0
    s01 = i0 / ((i0 - 1) * n) * float(((z["sum"] - z["size"] * auc) ** 2).sum()) if i0 > 1 else 0.0
    se = float(np.sqrt(s10 / m + s01 / n))
    q = norm.ppf(1 - alpha / 2)
    lo, hi = max(0.0, auc - q * se), min(1.0, auc + q * se)
    return {
        "auc": auc,
        "lo": lo if se > 0 else float("nan"),
        "hi": hi if se > 0 else float("nan"),
        "se": se,
        "n_slices": len(s),
        "n_patients": i1 + i0,
        "method": "Obuchowski 1997 clustered (patients)",
    }


def per_slice_auc(per_slice: pd.DataFrame, *, alpha: float = 0.05) -> pd.DataFrame:
    """Per-slice AUC, all folds pooled ("all") and per held-out fold, each with its clustered CI."""
    missing = {"patient_id", "label", "fold", "prob"} - set(per_slice.columns)
    if missing:
        raise SpinefxError(f"per-slice predictions lack columns {sorted(missing)}")
    rows = []
    groups = [("all", per_slice)] + [(str(int(f)), d) for f, d in per_slice.groupby("fold", sort=True)]
    for fold, d in groups:
        y = binary_labels(d["label"].to_numpy())
        if 0 < y.sum() < len(y):
            r = clustered_auc(d["patient_id"], y, d["prob"], alpha=alpha)
        else:
            r = {
                "auc": float("nan"),
                "lo": float("nan"),
                "hi": float("nan"),
                "se": float("nan"),
                "n_slices": len(d),
                "n_patients": d["patient_id"].nunique(),
                "method": "NA (one class)",
            }
        rows.append({"fold": fold, **r})
    return pd.DataFrame(rows)
