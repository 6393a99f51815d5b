"""Assign patients to stratified, seeded, patient-level cross-validation folds."""

from spinefx import runlog, sheets
from spinefx.learn.folds import assign_folds, write_folds

log = runlog.start(snakemake.log[0], "assign_folds")
patients = sheets.load_patients(snakemake.input.sheet, check_files=False)
s = snakemake.params.settings
folds = assign_folds(patients[["patient_id", "label"]].reset_index(drop=True), s["k"], s["seed"])
write_folds(folds, snakemake.output[0])
log.info("folds:\n%s", folds.groupby(["fold", "label"]).size().unstack(fill_value=0).to_string())
