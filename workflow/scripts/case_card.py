"""The case card (PNG + HTML) of one new patient."""

import pandas as pd

from spinefx import runlog
from spinefx.evaluate.calibrate import Calibrator
from spinefx.evaluate.cards import case_card
from spinefx.sheets import resolve_record

log = runlog.start(snakemake.log[0], "case_card")
patient = snakemake.wildcards.patient
record = resolve_record(snakemake.params.record, snakemake.input.get("sheet"), patient)
predictions = pd.read_csv(snakemake.input.per_patient, sep="\t", dtype={"patient_id": str})
oof = pd.read_csv(snakemake.input.calibrated, sep="\t", dtype={"patient_id": str})
case_card(
    patient,
    t2_nii=snakemake.input.t2,
    t1_in_t2_nii=snakemake.input.t1_in_t2,
    t2_sidecar=snakemake.input.t2_json,
    lesion_instance=record["lesion_instance"],
    box=record["box"],
    patch_file=snakemake.input.patches,
    model_path=snakemake.input.model,
    prediction=predictions.set_index("patient_id").loc[patient].to_dict(),
    oof=oof,
    threshold=Calibrator.load(snakemake.input.calibrator).threshold,
    out_png=snakemake.output.png,
    out_html=snakemake.output.html,
    saliency_steps=snakemake.params.settings["saliency_steps"],
)
log.info("%s: case card written", patient)
