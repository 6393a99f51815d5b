"""Check one patient's T1W or T2W NIfTI from the sheet and write it as results/nifti/ + sidecar."""

from spinefx import runlog
from spinefx.dicom.nifti_input import import_nifti

log = runlog.start(snakemake.log[0], "nifti_input")
patient, series = snakemake.wildcards.patient, snakemake.wildcards.series
record = snakemake.params.record  # NIfTI rows come from a user's sheet, never the demo's
sidecar = import_nifti(
    snakemake.input.nifti,
    snakemake.output.nii,
    snakemake.output.json,
    patient=patient,
    expect_plane="sagittal",
    lesion_slice=record["lesion_slice"] if series == "t2" else None,
    bids_json=snakemake.input.get("bids_json"),
)
log.info(
    "%s %s: NIfTI, %d slices, size %s, spacing %s, lesion_slice %s, TR %s ms, TE %s ms",
    patient,
    series,
    sidecar["n_slices"],
    sidecar["size"],
    sidecar["spacing"],
    record["lesion_slice"],
    sidecar["repetition_time"],
    sidecar["echo_time"],
)
