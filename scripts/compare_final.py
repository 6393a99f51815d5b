"""Measure the two candidate final models on the demo's held-aside patients of a finished run.

    PYTHONPATH=$PWD .venv/bin/python scripts/compare_final.py RUN_DIR

(a) the ensemble of the k fold models (what the workflow writes: results/predict/per_patient.tsv);
(b) one model trained on all cohort patients with the same train settings (early stopping on an
inner split, as in the folds), trained here. Both are scored against results/demo/new/patients.tsv,
the truth the workflow never reads. Prints AUC, Brier score, accuracy at 0.5 and training seconds.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path

import h5py
import pandas as pd
import torch
from sklearn.metrics import brier_score_loss, roc_auc_score

from spinefx.learn.train import TrainConfig, train_fold


def scores(truth: pd.Series, prob: pd.Series) -> dict[str, float]:
    y = (truth == "malignant").astype(int)
    return {
        "auc": float(roc_auc_score(y, prob)),
        "brier": float(brier_score_loss(y, prob)),
        "accuracy@0.5": float(((prob >= 0.5).astype(int) == y).mean()),
    }


def main(run: Path) -> None:
    r = run / "results"
    truth = pd.read_csv(r / "demo" / "new" / "patients.tsv", sep="\t", dtype=str).set_index("patient_id")[
        "label"
    ]
    ens = pd.read_csv(r / "predict" / "per_patient.tsv", sep="\t", dtype={"patient_id": str}).set_index(
        "patient_id"
    )
    folds = pd.read_csv(r / "folds.tsv", sep="\t", dtype={"patient_id": str})
    cfg = TrainConfig.from_dict(torch.load(r / "train" / "fold_1" / "model.pt", weights_only=False)["config"])
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        files = {pid: r / "patches" / f"{pid}.h5" for pid in folds["patient_id"]}
        for pid, label in truth.items():  # held-aside patches with their truth, for scoring only
            files[pid] = tmp / f"{pid}.h5"
            shutil.copy(r / "patches" / "original" / f"{pid}.h5", files[pid])
            with h5py.File(files[pid], "r+") as f:
                f.attrs["label"] = label
        table = pd.concat(
            [
                folds.assign(fold=1),
                pd.DataFrame({"patient_id": truth.index, "label": truth.values, "fold": 0}),
            ]
        )
        t0 = time.perf_counter()
        train_fold(files, table, 0, tmp / "all", cfg)
        seconds = time.perf_counter() - t0
        pred = pd.read_csv(tmp / "all" / "predictions.tsv", sep="\t", dtype={"patient_id": str})
    all_prob = pred.groupby("patient_id")["prob"].max().reindex(truth.index)
    bench = sorted((r.parent / "benchmarks" / "train_fold").glob("*.tsv"))
    fold_s = [float(pd.read_csv(b, sep="\t")["s"].iloc[0]) for b in bench]
    print(f"held-aside patients: {len(truth)} ({int((truth == 'malignant').sum())} malignant)")
    print(
        "ensemble of fold models:",
        scores(truth, ens.loc[truth.index, "prob"]),
        f"extra training: 0 s (folds took {sum(fold_s):.0f} s)",
    )
    print("model on all patients:  ", scores(truth, all_prob), f"extra training: {seconds:.0f} s")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
