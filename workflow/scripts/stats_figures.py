"""Figures from the predictions alone: the decision curve; in a stats-only run also ROC and confusion."""

from pathlib import Path

import pandas as pd

from spinefx import runlog, sheets
from spinefx.evaluate import calibration_stats, figures, report_tables, stats

log = runlog.start(snakemake.log[0], "stats_figures")
s = snakemake.params.settings
model = snakemake.params.model_reader
out = {Path(p).stem: p for p in snakemake.params.figures}
per_patient = report_tables.read_per_patient(
    snakemake.input.per_patient, threshold=snakemake.params.threshold
)
calls = stats.calls_from_per_patient(per_patient, reader=model)
if snakemake.input.get("readers"):
    calls = pd.concat([sheets.load_readers(snakemake.input.readers, per_patient["patient_id"]), calls])
table2 = stats.diagnostic_table(calls, per_patient[["patient_id", "label"]], ci_method=s["ci_method"])
if "decision_curve" in out:
    curve = calibration_stats.net_benefit(
        per_patient["label"], per_patient["prob"], s["net_benefit_thresholds"]
    )
    figures.decision_curve_figure(curve, out["decision_curve"], model_name=model)
if "roc" in out:
    auc = stats.auc_ci(per_patient["label"], per_patient["prob"], method=s["auc_ci"], seed=s["seed"])
    figures.roc_figure(per_patient, table2, out["roc"], auc=auc, model_name=model)
if "confusion" in out:
    figures.confusion_figure(table2, out["confusion"])
log.info("figures written: %s", ", ".join(out))
