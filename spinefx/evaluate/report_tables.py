"""Every table of a run, by name, from whatever inputs the run has: the one list the workflow plans from.

A full run has per-patient and per-slice predictions and the network's folds; a statistics-only run
(``cohort: null``) has a per-patient table from anywhere (probabilities, calls or both), and perhaps
readers and features; a paper has only its printed counts. :func:`table_names` says which tables
each combination yields (the workflow reads it when it plans the DAG) and :func:`build_tables` makes
them, each with its title, so the script that writes them stays a loop.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from spinefx.errors import SpinefxError
from spinefx.evaluate import (
    calibration_stats,
    clustered,
    error_analysis,
    feature_model,
    operating,
    paired,
    paper_counts,
    stats,
)
from spinefx.learn.folds import assign_folds

Tables = dict[str, tuple[pd.DataFrame, str]]

PAPER_TABLES = ("paper_table1", "paper_table2", "paper_mcnemar_bounds", "paper_error_analysis")


def table_names(
    *,
    per_patient: bool = True,
    has_prob: bool = True,
    readers: bool = False,
    features: bool = False,
    per_slice: bool = False,
    paper: bool = False,
) -> list[str]:
    """The tables a run writes, given what it has (in the order of the report)."""
    names: list[str] = []
    if per_patient:
        names += ["table2_diagnostic", "operating_characteristics", "mcnemar", "paired_differences"]
        if readers:
            names += ["reader_agreement"]
        if has_prob:
            names += ["model_auc", "calibration", "decision_curve"]
        if per_slice:
            names += ["per_slice_auc"]
        if features:
            names += [
                "table1_features",
                "error_analysis",
                "feature_model",
                "feature_model_honest",
                "feature_model_coefficients",
            ]
            if has_prob:
                names += ["model_comparison"]
    if paper:
        names += [*PAPER_TABLES, "printed_vs_recomputed"]
    return names


def read_per_patient(path: str | Path, *, threshold: float) -> pd.DataFrame:
    """A per-patient table from any model: patient_id, label and ``prob`` and/or ``call``; a missing
    call is ``prob >= threshold``."""
    path = Path(path)
    try:
        df = pd.read_csv(path, sep="\t", dtype={"patient_id": str}, comment="#")
    except FileNotFoundError as err:
        raise SpinefxError("per-patient table not found", path=path, fix="set stats.per_patient") from err
    missing = {"patient_id", "label"} - set(df.columns)
    if missing or not ({"prob", "call"} & set(df.columns)):
        raise SpinefxError(
            f"per-patient table lacks {sorted(missing) or ['prob or call']}",
            path=path,
            fix="columns: patient_id, label and prob (0-1) and/or call (benign/malignant)",
        )
    if "prob" in df.columns:
        bad = df[~df["prob"].between(0, 1)]
        if len(bad):
            raise SpinefxError(
                f"prob {bad['prob'].iloc[0]!r} is not in [0, 1]", patient=bad["patient_id"].iloc[0], path=path
            )
        if "call" not in df.columns:
            df["call"] = np.where(df["prob"] >= threshold, "malignant", "benign")
    return df


def has_prob_column(path: str | Path) -> bool:
    """Whether a per-patient table carries probabilities (read when the workflow plans)."""
    return "prob" in pd.read_csv(path, sep="\t", nrows=0, comment="#").columns


def build_tables(
    per_patient: pd.DataFrame,
    *,
    settings: Mapping,
    model: str,
    k: int,
    readers: pd.DataFrame | None = None,
    features: pd.DataFrame | None = None,
    folds: pd.DataFrame | None = None,
    per_slice: pd.DataFrame | None = None,
) -> Tables:
    """Every table :func:`table_names` promises for these inputs, as {name: (table, title)}.

    ``settings`` is the config's ``stats`` block. Without ``folds``, the per-patient ``fold`` column
    is used, else folds are assigned (``k``, ``stats.seed``) for the feature model.
    """
    s = settings
    out: Tables = {}
    truth = per_patient[["patient_id", "label"]]
    calls = stats.calls_from_per_patient(per_patient, reader=model)
    if readers is not None:
        calls = pd.concat([readers, calls], ignore_index=True)
    table2 = stats.diagnostic_table(calls, truth, ci_method=s["ci_method"])
    prev = f"{int(table2['tp'].iloc[-1] + table2['fn'].iloc[-1])}/{int(table2['n'].iloc[-1])}"
    out["table2_diagnostic"] = (
        table2,
        f"Table 2: diagnostic performance of the readers and the model (95% CI, {s['ci_method']})",
    )
    out["operating_characteristics"] = (
        operating.operating_table(table2, ci_method=s["ci_method"]),
        f"PPV, NPV (at the study prevalence, {prev} malignant) and likelihood ratios, 95% CI",
    )
    out["mcnemar"] = (
        stats.mcnemar_pairs(calls, truth, exact=s["mcnemar_exact"]),
        "McNemar tests between readers (malignant subset: sensitivity; benign subset: specificity)",
    )
    out["paired_differences"] = (
        paired.paired_comparisons(calls, truth, ci_method=s["paired_ci"]),
        "Paired differences in sensitivity and specificity "
        f"(95% CI, {paired.PAIRED_CI_METHODS[s['paired_ci']]}); McNemar exact and mid-p, Holm over all",
    )
    if readers is not None:
        out["reader_agreement"] = (
            operating.reader_agreement(calls, truth),
            "Agreement between readers and the model: Cohen's kappa (95% CI)",
        )
    has_prob = "prob" in per_patient.columns
    y = stats.binary_labels(per_patient["label"])
    if has_prob:
        prob = per_patient["prob"].to_numpy(dtype=float)
        auc = stats.auc_ci(y, prob, method=s["auc_ci"], seed=s["seed"])
        pooled = {
            "fold": "all",
            **{key: auc[key] for key in ("auc", "lo", "hi", "se", "method")},
            "n": auc["n_pos"] + auc["n_neg"],
            "n_malignant": auc["n_pos"],
            "n_benign": auc["n_neg"],
        }
        rows = [pd.DataFrame([pooled])]
        if "fold" in per_patient.columns:
            per_fold = stats.per_fold_auc(per_patient, method=s["auc_ci"], seed=s["seed"])
            rows.append(per_fold.assign(fold=per_fold["fold"].astype(str))[list(pooled)])
        out["model_auc"] = (pd.concat(rows, ignore_index=True), f"{model}: per-patient ROC AUC with 95% CI")
        out["calibration"] = (
            calibration_stats.calibration_table(y, {model: prob}),
            f"{model}: Brier score, calibration intercept and slope (95% CI)",
        )
        out["decision_curve"] = (
            calibration_stats.net_benefit(y, prob, s["net_benefit_thresholds"]),
            f"{model}: decision curve, net benefit against treating all and none",
        )
    if per_slice is not None:
        out["per_slice_auc"] = (
            clustered.per_slice_auc(per_slice),
            f"{model}: per-slice ROC AUC with a patient-clustered 95% CI (Obuchowski), pooled and per fold",
        )
    if features is not None:
        out["table1_features"] = (
            stats.table1_features(features, truth),
            "Table 1: imaging features by class (Fisher's exact test, two-sided; Holm-adjusted p; "
            "odds ratio with exact CI)",
        )
        out["error_analysis"] = (
            error_analysis.error_analysis(calls, truth, features, readers=s["error_analysis_readers"]),
            "Error analysis: features of each reader's false positives vs true negatives and false negatives "
            "vs true positives (Fisher, Holm within comparison)",
        )
        if folds is None:
            if "fold" in per_patient.columns:
                folds = per_patient[["patient_id", "fold"]]
            else:
                folds = assign_folds(truth, k, s["seed"])
        summary, coefficients = stats.feature_model_cv(features, truth, folds=folds, ci_method=s["ci_method"])
        out["feature_model"] = (
            summary,
            "Logistic regression (Firth) on the 15 features, cross-validated on the network's folds",
        )
        seeds = [s["seed"] + i for i in range(s["feature_model_repeats"])]
        honest, probs = feature_model.feature_model_honest(features, truth, k=k, seeds=seeds, folds=folds)
        out["feature_model_honest"] = (
            honest,
            f"Feature model (Firth + FLIC): apparent vs cross-validated, {len(seeds)} repeats of {k}-fold CV",
        )
        out["feature_model_coefficients"] = (
            coefficients,
            "Feature model fitted on all patients: odds ratios with 95% profile-likelihood CI "
            "(not estimable where the profile did not converge)",
        )
        if has_prob:
            both = per_patient.merge(probs[["patient_id", "prob_cv"]], on="patient_id")
            cmp = paired.compare_models(
                both["label"],
                {model: both["prob"].to_numpy(), "feature model (CV)": both["prob_cv"].to_numpy()},
            )
            out["model_comparison"] = (
                cmp,
                "Paired DeLong: the network against the feature model, same patients",
            )
    return out


def paper_tables(folder: str | Path) -> Tables:
    """A paper rebuilt from its printed counts, and the list of printed values set against them."""
    counts = paper_counts.load_paper_counts(folder)
    r = paper_counts.recompute_paper(counts)
    return {
        "paper_table1": (
            r["table1"],
            "The paper's Table 1 recomputed from its counts (Fisher, Holm, odds ratios)",
        ),
        "paper_table2": (r["table2"], "The paper's Table 2 recomputed from its counts (95% CI)"),
        "paper_mcnemar_bounds": (
            r["mcnemar_bounds"],
            "The paper's McNemar claims: the exact p-values the printed margins allow",
        ),
        "paper_error_analysis": (
            r["error_analysis"],
            "The paper's error analysis recomputed from its counts",
        ),
        "printed_vs_recomputed": (
            paper_counts.printed_vs_recomputed(counts),
            "Every printed value against what the printed counts give (consistent: NA = not recomputable)",
        ),
    }


def check_names(tables: Tables, expected: Sequence[str]) -> None:
    """The tables made are the tables planned (a mismatch is a bug, not a user error)."""
    if sorted(tables) != sorted(expected):
        raise SpinefxError(f"tables made {sorted(tables)} differ from those planned {sorted(expected)}")
