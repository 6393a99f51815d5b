"""Train every cross-validation fold in one job, as one stacked model (train.folds_per_job: all)."""

from pathlib import Path

import pandas as pd

from spinefx import runlog
from spinefx.learn.stacked import train_folds_stacked
from spinefx.learn.train import FoldOutputs, TrainConfig

log = runlog.start(snakemake.log[0], "train_folds_stacked")
fold_ids = list(snakemake.params.folds)
settings = dict(snakemake.params.settings, threads=snakemake.threads)
patch_files = {Path(p).stem: Path(p) for p in snakemake.input.patches}
folds = pd.read_csv(snakemake.input.folds, sep="\t", dtype={"patient_id": str})
out = snakemake.output
state = snakemake.params.state
paths = zip(fold_ids, out.models, out.histories, out.predictions, out.curves, strict=True)
outputs = {fold: FoldOutputs(m, h, p, c, state) for fold, m, h, p, c in paths}
summaries = train_folds_stacked(patch_files, folds, fold_ids, outputs, state, TrainConfig.from_dict(settings))
for summary in summaries:
    log.info("fold %d done: %s", summary["fold"], summary)
