"""Write the demo's held-aside patients (never trained on) and their predict sheet without labels."""

from pathlib import Path

import pandas as pd

from spinefx import runlog
from spinefx.atomic import atomic_path
from spinefx.demo.cohort import DemoCohortFiles, write_demo_cohort

log = runlog.start(snakemake.log[0], "demo_held_aside")
demo = snakemake.params.demo
files = DemoCohortFiles(**{name: Path(getattr(snakemake.output, name)) for name in DemoCohortFiles.names()})
write_demo_cohort(
    files,
    n_patients=demo["n_held_aside"],
    seed=demo["seed"] + 1,
    malignant_fraction=demo["malignant_fraction"],
    geometry=demo["geometry"],
    misalignment_mm=demo["misalignment_mm"],
    misalignment_deg=demo["misalignment_deg"],
    id_prefix="new_",
)
sheet = pd.read_csv(snakemake.output.sheet, sep="\t", dtype=str)
with atomic_path(snakemake.output.predict) as tmp:
    sheet.drop(columns=["label"]).to_csv(tmp, sep="\t", index=False, lineterminator="\n")
log.info("%d held-aside patients; their truth stays in patients.tsv/truth.tsv", len(sheet))
