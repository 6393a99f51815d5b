"""Write the built-in demo cohort (DICOM + sheets) under results/demo/."""

from pathlib import Path

from spinefx import runlog
from spinefx.demo.cohort import DemoCohortFiles, write_demo_cohort

log = runlog.start(snakemake.log[0], "demo_cohort")
demo = snakemake.params.demo
files = DemoCohortFiles(**{name: Path(getattr(snakemake.output, name)) for name in DemoCohortFiles.names()})
log.info("writing %d demo patients (seed %d)", demo["n_patients"], demo["seed"])
write_demo_cohort(
    files,
    n_patients=demo["n_patients"],
    seed=demo["seed"],
    malignant_fraction=demo["malignant_fraction"],
    geometry=demo["geometry"],
    misalignment_mm=demo["misalignment_mm"],
    misalignment_deg=demo["misalignment_deg"],
)
