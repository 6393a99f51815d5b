"""Cut the lesion patches (centre slices x 6 channels) of one patient into an HDF5 file."""

from spinefx import runlog
from spinefx.imaging.patches import extract_patches
from spinefx.imaging.patchfile import write_patch_file
from spinefx.sheets import resolve_record

log = runlog.start(snakemake.log[0], "extract_patches")
patient = snakemake.wildcards.patient
record = resolve_record(snakemake.params.record, snakemake.input.get("sheet"), patient)
s = snakemake.params.settings
patches, slices = extract_patches(
    snakemake.input.t1,
    snakemake.input.t2,
    snakemake.input.t2_json,
    snakemake.input.tfm,
    lesion_instance=record["lesion_instance"],
    box=tuple(record["box"]),
    centre_offsets=tuple(s["centre_offsets"]),
    neighbours=s["neighbours"],
    size=s["size"],
    box_scale=s["box_scale"],
    patient=patient,
)
write_patch_file(
    snakemake.output[0],
    original=patches,
    augmented=None,
    label=record["label"],
    slices=slices,
    box=record["box"],
    patient_id=patient,
)
log.info("%s: %d samples of shape %s at T2 slices %s", patient, len(patches), patches.shape[1:], slices)
