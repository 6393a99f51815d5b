"""Folds: stratified, balanced, patient-level, seeded; inner validation split; TSV output."""

from __future__ import annotations

import pandas as pd
import pytest

from spinefx.errors import SpinefxError
from spinefx.learn.folds import assign_folds, fold_split, inner_split, read_folds, write_folds


def cohort(n_benign: int, n_malignant: int) -> pd.DataFrame:
    rows = [(f"b_{i:03d}", "benign") for i in range(n_benign)]
    rows += [(f"m_{i:03d}", "malignant") for i in range(n_malignant)]
    return pd.DataFrame(rows, columns=["patient_id", "label"])


@pytest.mark.parametrize("n_b, n_m, k", [(140, 50, 10), (23, 11, 5), (7, 3, 3), (4, 2, 2)])
def test_stratified_balanced_every_patient_once(n_b, n_m, k):
    patients = cohort(n_b, n_m)
    folds = assign_folds(patients, k, seed=7)
    assert list(folds.columns) == ["patient_id", "label", "fold"]
    assert folds["patient_id"].tolist() == patients["patient_id"].tolist()  # input order, each once
    assert folds["label"].tolist() == patients["label"].tolist()
    assert sorted(folds["fold"].unique()) == list(range(1, k + 1))
    per_class = folds.groupby(["label", "fold"]).size().unstack(fill_value=0)
    assert (per_class.max(axis=1) - per_class.min(axis=1) <= 1).all()
    assert (per_class.min(axis=1) >= 1).all()
    sizes = folds["fold"].value_counts()
    assert sizes.max() - sizes.min() <= 1


def test_deterministic_and_order_free(tmp_path):
    patients = cohort(30, 12)
    a = assign_folds(patients, 5, seed=3)
    b = assign_folds(patients, 5, seed=3)
    write_folds(a, tmp_path / "a.tsv")
    write_folds(b, tmp_path / "b.tsv")
    assert (tmp_path / "a.tsv").read_bytes() == (tmp_path / "b.tsv").read_bytes()
    shuffled = patients.sample(frac=1.0, random_state=1).reset_index(drop=True)
    c = assign_folds(shuffled, 5, seed=3)
    assert dict(zip(c["patient_id"], c["fold"], strict=True)) == dict(
        zip(a["patient_id"], a["fold"], strict=True)
    )
    d = assign_folds(patients, 5, seed=4)
    assert not d["fold"].equals(a["fold"])


def test_tsv_roundtrip_and_atomic(tmp_path):
    folds = assign_folds(cohort(6, 4), 2, seed=0)
    path = tmp_path / "results" / "folds.tsv"
    write_folds(folds, path)
    assert path.read_text().splitlines()[0] == "patient_id\tlabel\tfold"
    back = read_folds(path)
    pd.testing.assert_frame_equal(back, folds, check_dtype=False)
    assert back["fold"].dtype == "int64"
    assert [p.name for p in path.parent.iterdir()] == ["folds.tsv"]


def test_errors_name_counts_and_suggest_k():
    with pytest.raises(SpinefxError, match="k >= 2"):
        assign_folds(cohort(10, 10), 1, seed=0)
    with pytest.raises(SpinefxError) as err:
        assign_folds(cohort(20, 4), 5, seed=0)
    msg = str(err.value)
    assert "20 benign" in msg and "4 malignant" in msg and "k <= 4" in msg
    with pytest.raises(SpinefxError, match="at least 2"):
        assign_folds(cohort(20, 1), 2, seed=0)
    dup = pd.concat([cohort(5, 5), cohort(1, 0)])
    with pytest.raises(SpinefxError, match="more than once"):
        assign_folds(dup, 2, seed=0)


def test_inner_split_disjoint_stratified_deterministic():
    patients = cohort(40, 15)
    ids, labels = patients["patient_id"].tolist(), patients["label"].tolist()
    train, val = inner_split(ids, labels, 0.2, seed=11)
    assert not set(train) & set(val)
    assert sorted(train + val) == sorted(ids)
    assert sum(p.startswith("b_") for p in val) == 8 and sum(p.startswith("m_") for p in val) == 3
    assert (train, val) == inner_split(ids, labels, 0.2, seed=11)
    assert val != inner_split(ids, labels, 0.2, seed=12)[1]
    assert train == [p for p in ids if p in set(train)]  # input order kept


def test_inner_split_small_classes():
    # a tiny fraction still puts one of each class into validation; a class of one stays in training
    train, val = inner_split(["b1", "b2", "b3", "m1", "m2"], ["benign"] * 3 + ["malignant"] * 2, 0.01, 0)
    assert sum(p.startswith("b") for p in val) == 1 and sum(p.startswith("m") for p in val) == 1
    train, val = inner_split(["b1", "b2", "m1"], ["benign", "benign", "malignant"], 0.9, 0)
    assert "m1" in train and len(val) == 1 and val[0].startswith("b")
    with pytest.raises(ValueError):
        inner_split(["a", "b"], ["benign", "benign"], 0.0, 0)


def test_fold_split_has_no_patient_in_two_roles():
    folds = assign_folds(cohort(30, 12), 5, seed=1)
    seen_test = []
    for fold in range(1, 6):
        split = fold_split(folds, fold, val_fraction=0.2, seed=1)
        roles = [set(split.train), set(split.val), set(split.test)]
        assert sum(len(r) for r in roles) == len(folds)
        assert set().union(*roles) == set(folds["patient_id"])
        assert not (roles[0] & roles[1] or roles[0] & roles[2] or roles[1] & roles[2])
        assert roles[2] == set(folds.loc[folds["fold"] == fold, "patient_id"])
        val_labels = set(folds.set_index("patient_id").loc[split.val, "label"])
        assert val_labels == {"benign", "malignant"}
        seen_test += split.test
    assert sorted(seen_test) == sorted(folds["patient_id"])
    with pytest.raises(SpinefxError):
        fold_split(folds, 6, val_fraction=0.2, seed=1)
