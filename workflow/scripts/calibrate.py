"""Fit the calibrator and threshold on the out-of-fold calls; cross-fitted calibrated table, figure."""

import pandas as pd

from spinefx import runlog
from spinefx.evaluate.calibrate import (
    calibration_summary,
    calibrator_from_config,
    cross_fitted,
    reliability_figure,
)
from spinefx.evaluate.tables import write_table

log = runlog.start(snakemake.log[0], "calibrate")
s = snakemake.params.settings
per_patient = pd.read_csv(snakemake.input.per_patient, sep="\t", dtype={"patient_id": str})
final = calibrator_from_config(per_patient, s)
final.save(snakemake.output.calibrator)
calibrated = cross_fitted(
    per_patient,
    method=s["method"],
    threshold_rule=s["threshold_rule"],
    threshold=s["threshold"],
    target_sensitivity=s["target_sensitivity"],
)
write_table(calibrated, snakemake.output.calibrated, markdown=False)
summary = calibration_summary(calibrated, final)
write_table(summary, snakemake.output.table, title="Calibration (out-of-fold patients)")
reliability_figure(calibrated, snakemake.output.figure, n_bins=s["n_bins"])
log.info("%s", summary.to_dict("records")[0])
