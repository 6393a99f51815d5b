"""Figures: ROC with readers, training curves per fold, confusion matrices, saliency on sample patches."""

from pathlib import Path

import pandas as pd

from spinefx import runlog, sheets
from spinefx.evaluate import figures, stats
from spinefx.learn.saliency import saliency_figure

log = runlog.start(snakemake.log[0], "figures")
s = snakemake.params.settings
per_patient = pd.read_csv(snakemake.input.per_patient, sep="\t", dtype={"patient_id": str})
truth = per_patient[["patient_id", "label"]]
model = snakemake.params.model_reader
calls = stats.calls_from_per_patient(per_patient, reader=model)
if snakemake.input.get("readers"):
    readers = sheets.load_readers(snakemake.input.readers, truth["patient_id"])
    calls = pd.concat([readers, calls], ignore_index=True)
table2 = stats.diagnostic_table(calls, truth, ci_method=s["ci_method"])
y = stats.binary_labels(per_patient["label"])
auc = stats.auc_ci(y, per_patient["prob"].to_numpy(), method=s["auc_ci"], seed=s["seed"])
figures.roc_figure(per_patient, table2, snakemake.output.roc, auc=auc, model_name=model)
figures.confusion_figure(table2, snakemake.output.confusion)
fold_numbers = snakemake.params.folds  # in the order of fold_outputs(), as the inputs are
histories = {
    fold: pd.read_csv(p, sep="\t") for fold, p in zip(fold_numbers, snakemake.input.histories, strict=True)
}
figures.training_curves_figure(histories, snakemake.output.curves)

# Saliency: the final model of each patient's held-out fold, on a few patients of each class.
folds = pd.read_csv(snakemake.input.folds, sep="\t", dtype={"patient_id": str})
models = {fold: Path(p) for fold, p in zip(fold_numbers, snakemake.input.models, strict=True)}
patch_files = {Path(p).stem: Path(p) for p in snakemake.input.patches}
saliency_figure(models, folds, patch_files, snakemake.output.saliency, per_class=2)
log.info("figures written")
