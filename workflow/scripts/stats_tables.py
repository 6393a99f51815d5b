"""The paper's tables: Table 1 (Fisher), Table 2 (readers + model, with CIs), McNemar, AUC, feature model."""

from pathlib import Path

import pandas as pd

from spinefx import runlog, sheets, stats
from spinefx.tables import write_table

log = runlog.start(snakemake.log[0], "stats_tables")
s = snakemake.params.settings
out = {Path(p).stem: Path(p) for p in snakemake.params.tables if p.endswith(".tsv")}
per_patient = pd.read_csv(snakemake.input.per_patient, sep="\t", dtype={"patient_id": str})
truth = per_patient[["patient_id", "label"]]
calls = per_patient.assign(reader=snakemake.params.model_reader)[["patient_id", "reader", "call"]]
if "readers" in snakemake.input.keys():
    readers = sheets.load_readers(snakemake.input.readers, truth["patient_id"])
    calls = pd.concat([readers, calls], ignore_index=True)

table2 = stats.diagnostic_table(calls, truth, ci_method=s["ci_method"])
write_table(table2, out["table2_diagnostic"], title="Table 2: diagnostic performance of readers and model")
write_table(
    stats.mcnemar_pairs(calls, truth, exact=s["mcnemar_exact"]),
    out["mcnemar"],
    title="McNemar tests between readers (malignant subset: sensitivity; benign subset: specificity)",
)
y = (per_patient["label"] == "malignant").astype(int).to_numpy()
auc = stats.auc_ci(y, per_patient["prob"].to_numpy(), method=s["auc_ci"], seed=s["seed"])
per_fold = stats.per_fold_auc(per_patient)
auc_rows = pd.concat(
    [pd.DataFrame([{"fold": "all", **auc}]), per_fold.assign(fold=per_fold["fold"].astype(str))],
    ignore_index=True,
)
write_table(auc_rows, out["model_auc"], title=f"{snakemake.params.model_reader}: per-patient ROC AUC")
log.info("model AUC %.3f (%.3f-%.3f, %s)", auc["auc"], auc["lo"], auc["hi"], auc["method"])

if "features" in snakemake.input.keys():
    features = sheets.load_features(snakemake.input.features, truth["patient_id"])
    write_table(
        stats.table1_features(features, truth),
        out["table1_features"],
        title="Table 1: imaging features by class (Fisher's exact test, two-sided)",
    )
    summary, coefficients = stats.feature_model_cv(
        features, truth, k=s["feature_model_folds"], seed=s["seed"]
    )
    write_table(summary, out["feature_model"], title="Logistic regression on the 15 features, cross-validated")
    write_table(coefficients, out["feature_model_coefficients"], title="Feature model: odds ratios (all patients)")
