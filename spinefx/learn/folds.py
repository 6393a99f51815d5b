"""Patient-level, label-stratified cross-validation folds and the inner early-stopping split.

Folds are assigned to patients, never to slices or augmented copies, so all of a patient's
patches live in exactly one fold. Assignment depends only on the set of (patient_id, label) pairs
and the seed, not on the sheet's row order, so reordering the sheet changes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from spinefx.atomic import atomic_path
from spinefx.errors import SpinefxError
from spinefx.seeding import stable_seed

COLUMNS = ["patient_id", "label", "fold"]


def _check_patients(patients: pd.DataFrame) -> None:
    missing = [c for c in ("patient_id", "label") if c not in patients.columns]
    if missing:
        raise SpinefxError(f"patient table lacks column(s) {missing}.", fix="add them to the sheet.")
    dup = patients["patient_id"][patients["patient_id"].duplicated()].unique().tolist()
    if dup:
        raise SpinefxError(
            f"patient_id(s) {dup} appear more than once.", fix="make patient_id unique in the sheet."
        )
    if patients["label"].isna().any():
        bad = patients.loc[patients["label"].isna(), "patient_id"].tolist()
        raise SpinefxError(f"patients {bad} have no label.", fix="fill in label (benign/malignant).")


def _shuffled(ids: Sequence[str], seed: int, *parts: object) -> list[str]:
    """``ids`` sorted then permuted by a seed derived from ``seed`` and ``parts`` (order-free)."""
    rng = np.random.default_rng(stable_seed(seed, *parts))
    ordered = sorted(ids)
    return [ordered[i] for i in rng.permutation(len(ordered))]


def assign_folds(patients: pd.DataFrame, k: int, seed: int) -> pd.DataFrame:
    """Columns patient_id, label, fold (1..k) in the input's row order, stratified by label.

    Each class is shuffled and dealt round-robin, the next class starting where the previous one
    stopped, so per class and in total the fold sizes differ by at most one.
    """
    _check_patients(patients)
    counts = patients["label"].value_counts().sort_index()
    if k < 2:
        raise SpinefxError(f"cross-validation needs k >= 2 folds, got k={k}.", fix="set folds: 2 or more.")
    small = counts[counts < k]
    if len(small):
        have = ", ".join(f"{n} {lab}" for lab, n in counts.items())
        best = int(counts.min())
        fix = (
            f"use k <= {best} folds (e.g. folds: {best})"
            if best >= 2
            else "add patients: every class needs at least 2 for cross-validation"
        )
        raise SpinefxError(
            f"cannot stratify {k} folds: the cohort has {have}, and every fold needs at least one "
            f"patient of each class.",
            fix=fix + ".",
        )
    fold_of: dict[str, int] = {}
    start = 0
    for label in counts.index:  # sorted labels: order-free
        ids = patients.loc[patients["label"] == label, "patient_id"].astype(str).tolist()
        for i, pid in enumerate(_shuffled(ids, seed, "folds", label)):
            fold_of[pid] = (start + i) % k + 1
        start = (start + len(ids)) % k
    out = pd.DataFrame(
        {
            "patient_id": patients["patient_id"].astype(str).to_numpy(),
            "label": patients["label"].astype(str).to_numpy(),
        }
    )
    out["fold"] = out["patient_id"].map(fold_of).astype("int64")
    return out


def inner_split(
    patient_ids: Sequence[str], labels: Sequence[str], val_fraction: float, seed: int
) -> tuple[list[str], list[str]]:
    """Stratified (train, validation) split of the training patients for early stopping.

    Per class, round(n * val_fraction) patients go to validation, at least one when the class has
    two or more (so validation loss sees both classes), and at least one always stays in training.
    Both lists keep the input order.
    """
    ids = [str(p) for p in patient_ids]
    labels = [str(lab) for lab in labels]
    if len(ids) != len(labels):
        raise ValueError(f"{len(ids)} patient ids but {len(labels)} labels")
    if len(set(ids)) != len(ids):
        raise ValueError("patient ids repeat")
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be between 0 and 1 (exclusive), got {val_fraction}")
    val: set[str] = set()
    for label in sorted(set(labels)):
        members = [p for p, lab in zip(ids, labels, strict=True) if lab == label]
        n = len(members)
        n_val = min(max(round(n * val_fraction), 1), n - 1) if n >= 2 else 0
        val.update(_shuffled(members, seed, "inner", label)[:n_val])
    return [p for p in ids if p not in val], [p for p in ids if p in val]


@dataclass(frozen=True)
class FoldSplit:
    """Patient ids of one fold: train (gets augmented copies), val (early stopping), test (held out)."""

    train: list[str]
    val: list[str]
    test: list[str]


def fold_split(folds: pd.DataFrame, fold: int, *, val_fraction: float, seed: int) -> FoldSplit:
    """Held-out fold ``fold`` as test; the rest split by :func:`inner_split` into train and val.

    The inner split's seed also depends on the fold, so each fold draws its own validation set.
    """
    if fold not in set(folds["fold"].tolist()):
        raise SpinefxError(f"fold {fold} is not in the folds table (folds {sorted(set(folds['fold']))}).")
    test_mask = folds["fold"] == fold
    rest = folds.loc[~test_mask]
    train, val = inner_split(
        rest["patient_id"].tolist(), rest["label"].tolist(), val_fraction, stable_seed(seed, "fold", fold)
    )
    split = FoldSplit(train=train, val=val, test=folds.loc[test_mask, "patient_id"].astype(str).tolist())
    assert not (set(split.train) & set(split.val) or set(split.train) & set(split.test))
    assert not set(split.val) & set(split.test)
    return split


def write_folds(df: pd.DataFrame, path: Path) -> None:
    """Write the folds table as TSV (patient_id, label, fold) atomically."""
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"folds table lacks columns {missing}")
    with atomic_path(path) as tmp:
        df[COLUMNS].to_csv(tmp, sep="\t", index=False, lineterminator="\n")


def read_folds(path: Path) -> pd.DataFrame:
    """Read a folds TSV written by :func:`write_folds` (patient_id and label as strings)."""
    df = pd.read_csv(path, sep="\t", dtype={"patient_id": str, "label": str, "fold": "int64"})
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise SpinefxError(f"folds table lacks columns {missing}.", path=path, fix="rerun assign_folds.")
    return df[COLUMNS]
