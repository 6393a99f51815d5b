"""Apply the final model and the calibrator to the new patients' patches."""

from spinefx import runlog
from spinefx.evaluate.calibrate import Calibrator
from spinefx.evaluate.tables import write_table
from spinefx.learn.final import predict_patients

log = runlog.start(snakemake.log[0], "predict")
files = dict(zip(snakemake.params.patients, snakemake.input.patches, strict=True))
per_patient, per_slice = predict_patients(
    snakemake.input.model, files, calibrate=Calibrator.load(snakemake.input.calibrator)
)
write_table(per_patient, snakemake.output.per_patient, markdown=False)
write_table(per_slice, snakemake.output.per_slice, markdown=False)
log.info("%d patients, %d malignant calls", len(per_patient), int((per_patient["call"] == "malignant").sum()))
