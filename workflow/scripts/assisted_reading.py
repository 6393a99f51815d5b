"""The simulated assisted-reading table: each reader's calls with the model's calibrated calls."""

import pandas as pd

from spinefx import runlog
from spinefx.atomic import atomic_path
from spinefx.evaluate.assisted import assisted_markdown, assisted_reading_table
from spinefx.evaluate.tables import write_table

log = runlog.start(snakemake.log[0], "assisted_reading")
readers = pd.read_csv(snakemake.input.readers, sep="\t", dtype=str)
calibrated = pd.read_csv(snakemake.input.calibrated, sep="\t", dtype={"patient_id": str})
table = assisted_reading_table(
    readers,
    calibrated,
    snakemake.params.settings["override_p"],
    ci_method=snakemake.params.stats["ci_method"],
    exact=snakemake.params.stats["mcnemar_exact"],
)
write_table(table, snakemake.output.tsv, markdown=False)
with atomic_path(snakemake.output.md) as tmp:
    tmp.write_text(assisted_markdown(table))
log.info("%d rows", len(table))
