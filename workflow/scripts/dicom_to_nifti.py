"""Convert one patient's T1W or T2W DICOM series to NIfTI + sidecar."""

from spinefx import runlog
from spinefx.dicom.convert import convert_series
from spinefx.sheets import resolve_record

log = runlog.start(snakemake.log[0], "dicom_to_nifti")
patient, series = snakemake.wildcards.patient, snakemake.wildcards.series
record = resolve_record(snakemake.params.record, snakemake.input.get("sheet"), patient)
sidecar = convert_series(
    record[f"{series}_path"],
    snakemake.output.nii,
    snakemake.output.json,
    series_uid=record[f"{series}_series_uid"],
    patient=patient,
    expect_plane="sagittal",
    echo=snakemake.params.convert["echo"],
    allow_derived=snakemake.params.convert["allow_derived"],
)
log.info(
    "%s %s: %d slices, size %s, spacing %s",
    patient,
    series,
    len(sidecar["instance_numbers"]),
    sidecar["size"],
    sidecar["spacing"],
)
