"""The paper's tables: Table 1 (Fisher), Table 2 (readers + model, with CIs), McNemar, AUC, feature model."""

from functools import partial
from pathlib import Path

import pandas as pd

from spinefx import runlog, sheets
from spinefx.evaluate import stats
from spinefx.evaluate.tables import write_table

log = runlog.start(snakemake.log[0], "stats_tables")
publish = partial(write_table, html_page=True)  # TSV + Markdown + HTML for the report
s = snakemake.params.settings
model = snakemake.params.model_reader
out = {Path(p).stem: Path(p) for p in snakemake.params.tables if p.endswith(".tsv")}
per_patient = pd.read_csv(snakemake.input.per_patient, sep="\t", dtype={"patient_id": str})
truth = per_patient[["patient_id", "label"]]
calls = stats.calls_from_per_patient(per_patient, reader=model)
if snakemake.input.get("readers"):
    readers = sheets.load_readers(snakemake.input.readers, truth["patient_id"])
    calls = pd.concat([readers, calls], ignore_index=True)

publish(
    stats.diagnostic_table(calls, truth, ci_method=s["ci_method"]),
    out["table2_diagnostic"],
    title=f"Table 2: diagnostic performance of the readers and the model (95% CI, {s['ci_method']})",
)
publish(
    stats.mcnemar_pairs(calls, truth, exact=s["mcnemar_exact"]),
    out["mcnemar"],
    title="McNemar tests between readers (malignant subset: sensitivity; benign subset: specificity)",
)
y = stats.binary_labels(per_patient["label"])
auc = stats.auc_ci(y, per_patient["prob"].to_numpy(), method=s["auc_ci"], seed=s["seed"])
per_fold = stats.per_fold_auc(per_patient, method=s["auc_ci"])
pooled = {
    "fold": "all",
    **{k: auc[k] for k in ("auc", "lo", "hi", "se", "method")},
    "n": auc["n_pos"] + auc["n_neg"],
    "n_malignant": auc["n_pos"],
    "n_benign": auc["n_neg"],
}
auc_rows = pd.concat(
    [pd.DataFrame([pooled]), per_fold.assign(fold=per_fold["fold"].astype(str))[list(pooled)]],
    ignore_index=True,
)
publish(auc_rows, out["model_auc"], title=f"{model}: per-patient ROC AUC with 95% CI")
log.info("model AUC %.3f (95%% CI %.3f-%.3f, %s)", auc["auc"], auc["lo"], auc["hi"], auc["method"])

if snakemake.input.get("features"):
    features = sheets.load_features(snakemake.input.features, truth["patient_id"])
    publish(
        stats.table1_features(features, truth),
        out["table1_features"],
        title="Table 1: imaging features by class (Fisher's exact test, two-sided; Holm-adjusted p)",
    )
    folds = pd.read_csv(snakemake.input.folds, sep="\t", dtype={"patient_id": str})
    summary, coefficients = stats.feature_model_cv(features, truth, folds=folds, ci_method=s["ci_method"])
    publish(
        summary,
        out["feature_model"],
        title="Logistic regression (Firth) on the 15 features, cross-validated on the network's folds",
    )
    publish(
        coefficients,
        out["feature_model_coefficients"],
        title="Feature model fitted on all patients: odds ratios with 95% profile-likelihood CI",
    )
