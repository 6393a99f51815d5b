"""Describe the run (cohort size, protocol, versions) for the report's landing page."""

import pandas as pd

from spinefx import runlog
from spinefx.evaluate.runinfo import run_info
from spinefx.evaluate.tables import write_table

log = runlog.start(snakemake.log[0], "run_info")
folds = pd.read_csv(snakemake.input.folds, sep="\t", dtype={"patient_id": str})
write_table(
    run_info(snakemake.params.config, folds), snakemake.output.tsv, title="What was run", html_page=True
)
