"""Every statistics table of the run (spinefx.evaluate.report_tables), as TSV + Markdown + HTML."""

from pathlib import Path

import pandas as pd

from spinefx import runlog, sheets
from spinefx.evaluate import report_tables
from spinefx.evaluate.tables import write_table

log = runlog.start(snakemake.log[0], "stats_tables")
inp = snakemake.input
per_patient = report_tables.read_per_patient(inp.per_patient, threshold=snakemake.params.threshold)
ids = per_patient["patient_id"]
tables = report_tables.build_tables(
    per_patient,
    settings=snakemake.params.settings,
    model=snakemake.params.model_reader,
    k=snakemake.params.k,
    readers=sheets.load_readers(inp.readers, ids) if inp.get("readers") else None,
    features=sheets.load_features(inp.features, ids) if inp.get("features") else None,
    folds=pd.read_csv(inp.folds, sep="\t", dtype={"patient_id": str}) if inp.get("folds") else None,
    per_slice=pd.read_csv(inp.per_slice, sep="\t", dtype={"patient_id": str})
    if inp.get("per_slice")
    else None,
)
report_tables.check_names(tables, snakemake.params.names)
out = {Path(p).stem: Path(p) for p in snakemake.params.tables if p.endswith(".tsv")}
for name, (table, title) in tables.items():
    write_table(table, out[name], title=title, html_page=True)
    log.info("%s: %d rows", name, len(table))
