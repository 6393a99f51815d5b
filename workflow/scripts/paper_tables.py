"""A paper's tables recomputed from its printed counts, and every printed value set against them."""

from pathlib import Path

from spinefx import runlog
from spinefx.evaluate import report_tables
from spinefx.evaluate.tables import write_table

log = runlog.start(snakemake.log[0], "paper_tables")
tables = report_tables.paper_tables(snakemake.params.folder)
out = {Path(p).stem: Path(p) for p in snakemake.params.tables if p.endswith(".tsv")}
for name, (table, title) in tables.items():
    write_table(table, out[name], title=title, html_page=True)
check = tables["printed_vs_recomputed"][0]
contradicted = int((check["consistent"] == False).sum())  # noqa: E712  (NaN: not recomputable)
log.info("%d printed values, %d contradicted by the counts", len(check), contradicted)
