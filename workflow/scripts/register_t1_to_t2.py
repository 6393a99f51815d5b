"""Register T1W onto T2W and write the transform, the resampled T1W and QC."""

import json
import shutil
from pathlib import Path

from spinefx import runlog
from spinefx.atomic import atomic_path
from spinefx.imaging.patches import slice_index
from spinefx.imaging.register import register_t1_to_t2
from spinefx.sheets import resolve_record

log = runlog.start(snakemake.log[0], "register_t1_to_t2")
patient = snakemake.wildcards.patient
record = resolve_record(snakemake.params.record, snakemake.input.get("sheet"), patient)
sidecar = json.loads(Path(snakemake.input.t2_json).read_text())
truth = points = None
if snakemake.input.get("truth"):
    from spinefx.demo.cohort import read_truth, truth_transform, vertebra_centers

    row = read_truth(snakemake.input.truth).set_index("patient_id").loc[patient]
    truth, points = truth_transform(row), vertebra_centers(row)
s = snakemake.params.settings
qc = register_t1_to_t2(
    snakemake.input.t1,
    snakemake.input.t2,
    tfm=snakemake.output.tfm,
    t1_in_t2=snakemake.output.t1_in_t2,
    qc_json=snakemake.log.qc,  # logs survive a failed check (outputs of a failed job are deleted)
    qc_png=snakemake.log.qc_png,
    transform=s["transform"],
    initialisation=s["initialisation"],
    histogram_bins=s["histogram_bins"],
    shrink_factors=tuple(s["shrink_factors"]),
    smoothing_mm=tuple(s["smoothing_mm"]),
    iterations=s["iterations"],
    sampling=s["sampling"],
    sampling_fraction=s["sampling_fraction"],
    n_threads=snakemake.threads,
    seed=s["seed"],
    max_translation_mm=s["max_translation_mm"],
    max_rotation_deg=s["max_rotation_deg"],
    on_failure=s["on_failure"],
    mask_margin_mm=s["mask_margin_mm"],
    lesion_box=record["box"],
    qc_slice=slice_index(
        sidecar["instance_numbers"], record["lesion_instance"], patient=patient, path=snakemake.input.t2_json
    ),
    truth=truth,
    truth_points=points,
    patient=patient,
)
log.info(
    "%s: %s", patient, json.dumps({k: qc[k] for k in qc if k in ("metric_before", "metric_after", "tre_mm")})
)
for src, dst in ((snakemake.log.qc, snakemake.output.qc), (snakemake.log.qc_png, snakemake.output.qc_png)):
    with atomic_path(dst) as tmp:
        shutil.copyfile(src, tmp)
