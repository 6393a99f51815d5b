"""Convert one patient's T1W or T2W DICOM series to NIfTI + sidecar."""

from spinefx import runlog
from spinefx.dicom.convert import convert_series
from spinefx.dicom.select import choose, scan_study
from spinefx.sheets import resolve_record

log = runlog.start(snakemake.log[0], "dicom_to_nifti")
patient, series = snakemake.wildcards.patient, snakemake.wildcards.series
record = resolve_record(snakemake.params.record, snakemake.input.get("sheet"), patient)
folder, uid = record[f"{series}_path"], record[f"{series}_series_uid"]
if not uid:  # no uid in the sheet: in a study folder (several series) the config's `series:` rule picks one
    found = scan_study(folder, patient=patient)
    if len(found) > 1:
        uid = choose(found, snakemake.params.series_rule, name=series, folder=folder, patient=patient).uid
        log.info("%s %s: series %s chosen by the `series: %s` rule", patient, series, uid, series)
sidecar = convert_series(
    folder,
    snakemake.output.nii,
    snakemake.output.json,
    series_uid=uid or None,
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
