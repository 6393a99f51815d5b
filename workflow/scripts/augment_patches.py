"""Add the random-affine augmented copies of one patient's patches (x20 benign, x40 malignant by default)."""

from spinefx import runlog
from spinefx.augment import augment_patches, copies_for
from spinefx.dicomwrite import stable_seed
from spinefx.patchfile import read_patch_file, write_patch_file

log = runlog.start(snakemake.log[0], "augment_patches")
patient = snakemake.wildcards.patient
s = snakemake.params.settings
original = read_patch_file(snakemake.input[0])
copies = copies_for(original.label, s["copies"])
augmented = augment_patches(
    original.original,
    copies,
    seed=stable_seed(s["seed"], patient),
    rotation_deg=s["rotation_deg"],
    translation_px=s["translation_px"],
    scale_range=tuple(s["scale_range"]),
)
write_patch_file(
    snakemake.output[0],
    original=original.original,
    augmented=augmented,
    label=original.label,
    slices=original.slices,
    box=original.box,
    patient_id=patient,
    dtype=s["dtype"],
)
log.info("%s (%s): %d original, %d augmented samples", patient, original.label, len(original.original),
         len(augmented))
