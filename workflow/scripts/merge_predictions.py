"""Merge the held-out per-slice probabilities of all folds into per-patient calls."""

import pandas as pd

from spinefx import runlog
from spinefx.evaluate.merge import merge_predictions
from spinefx.evaluate.tables import write_table

log = runlog.start(snakemake.log[0], "merge_predictions")
folds = pd.read_csv(snakemake.input.folds, sep="\t", dtype={"patient_id": str})
predictions = {
    fold: pd.read_csv(path, sep="\t", dtype={"patient_id": str})
    for fold, path in zip(snakemake.params.folds, snakemake.input.predictions, strict=True)
}
s = snakemake.params.settings
per_slice, per_patient = merge_predictions(predictions, folds, method=s["method"], threshold=s["threshold"])
write_table(per_slice, snakemake.output.per_slice, markdown=False)
write_table(per_patient, snakemake.output.per_patient, markdown=False)
log.info("%d patients, %d malignant calls", len(per_patient), int((per_patient["call"] == "malignant").sum()))
