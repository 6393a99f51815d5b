"""Train and evaluate one cross-validation fold (the GPU job)."""

from pathlib import Path

import pandas as pd

from spinefx import runlog
from spinefx.learn.train import FoldOutputs, TrainConfig, train_fold

log = runlog.start(snakemake.log[0], "train_fold")
fold = snakemake.params.fold
settings = dict(snakemake.params.settings, threads=snakemake.threads)
patch_files = {Path(p).stem: Path(p) for p in snakemake.input.patches}
folds = pd.read_csv(snakemake.input.folds, sep="\t", dtype={"patient_id": str})
out = snakemake.output
outputs = FoldOutputs(out.model, out.history, out.predictions, out.curve, snakemake.params.state)
summary = train_fold(patch_files, folds, fold, outputs, TrainConfig.from_dict(settings))
log.info("fold %d done: %s", fold, summary)
