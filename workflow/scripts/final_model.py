"""The final model: the fold models as one ensemble file, its TorchScript export and model card."""

import pandas as pd

from spinefx import runlog
from spinefx.atomic import atomic_path
from spinefx.evaluate.stats import auc_ci, proportion_ci
from spinefx.learn.final import export_torchscript, model_card, write_ensemble

log = runlog.start(snakemake.log[0], "final_model")
stats = snakemake.params.stats
models = dict(zip(snakemake.params.folds, snakemake.input.models, strict=True))
meta = write_ensemble(models, snakemake.output.model, aggregate=snakemake.params.aggregate)
export_torchscript(snakemake.output.model, snakemake.output.torchscript, size=snakemake.params.size)

per_patient = pd.read_csv(snakemake.input.per_patient, sep="\t", dtype={"patient_id": str})
calibrated = pd.read_csv(snakemake.input.calibrated, sep="\t", dtype={"patient_id": str})
calibration = pd.read_csv(snakemake.input.calibration, sep="\t").iloc[0].to_dict()
auc = auc_ci(per_patient["label"], per_patient["prob"], method=stats["auc_ci"], seed=stats["seed"])
mal, ben = calibrated["label"] == "malignant", calibrated["label"] == "benign"
perf = {"auc": auc["auc"], "auc_lo": auc["lo"], "auc_hi": auc["hi"], "auc_method": auc["method"]}
perf["ci_method"] = stats["ci_method"]
for name, mask, want in (("sensitivity", mal, "malignant"), ("specificity", ben, "benign")):
    k = int((calibrated.loc[mask, "call"] == want).sum())
    perf[name], perf[f"{name}_lo"], perf[f"{name}_hi"] = proportion_ci(
        k, int(mask.sum()), ci_method=stats["ci_method"]
    )
cohort = {"n_patients": len(per_patient), "n_malignant": int(mal.sum()), "source": snakemake.params.source}
with atomic_path(snakemake.output.card) as tmp:
    tmp.write_text(model_card(meta, cohort=cohort, performance=perf, calibration=calibration))
log.info("ensemble of folds %s written; AUC %.3f", meta["folds"], auc["auc"])
