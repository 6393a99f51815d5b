"""Add the random-affine augmented copies of one patient's patches (x20 benign, x40 malignant by default)."""

from spinefx import runlog
from spinefx.learn.augment import augment_patch_file

log = runlog.start(snakemake.log[0], "augment_patches")
s = snakemake.params.settings
n = augment_patch_file(
    snakemake.input[0],
    snakemake.output[0],
    copies=s["copies"],
    seed=s["seed"],
    dtype=s["dtype"],
    rotation_deg=s["rotation_deg"],
    translation_px=s["translation_px"],
    scale_range=tuple(s["scale_range"]),
)
log.info("%s: %d augmented samples written", snakemake.wildcards.patient, n)
