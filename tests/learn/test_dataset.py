"""load_fold_data: which patient's patches go where (the no-leak guarantee), and batching."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import torch

from spinefx.errors import SpinefxError
from spinefx.learn.dataset import (
    batch_indices,
    iterate_batches,
    load_fold_data,
    load_folds_data,
    split_patients,
)


def write_cohort(root: Path, n_benign: int, n_malignant: int, k: int, copies=(2, 4), samples=3, seed=0):
    """Tiny HDF5 patch files per the DESIGN.md contract, plus a stratified folds table. Malignant
    patches carry a bright central square so a model has something to learn. Each sample's first
    pixel encodes (patient index, augmented flag) so tests can trace samples back to files."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    rows, files = [], {}
    ids = [(f"p{i:03d}", "benign") for i in range(n_benign)]
    ids += [(f"p{n_benign + i:03d}", "malignant") for i in range(n_malignant)]
    for index, (pid, label) in enumerate(ids):
        n_aug = copies[label == "malignant"] * samples
        x = rng.normal(size=(samples + n_aug, 6, 64, 64)).astype(np.float32)
        if label == "malignant":
            x[:, :, 24:40, 24:40] += 1.5
        x[:, 0, 0, 0] = index
        x[samples:, 0, 0, 1] = 1000.0  # augmented marker
        path = root / f"{pid}.h5"
        with h5py.File(path, "w") as f:
            f.create_dataset("original", data=x[:samples])
            f.create_dataset("augmented", data=x[samples:].astype(np.float16))
            f.attrs["label"] = label
            f.attrs["slices"] = np.arange(10, 10 + samples)
            f.attrs["box"] = np.array([5, 6, 30, 31])
            f.attrs["patient_id"] = pid
        files[pid] = path
        rows.append((pid, label))
    table = pd.DataFrame(rows, columns=["patient_id", "label"])
    table["fold"] = 0
    for label in ("benign", "malignant"):
        idx = table.index[table["label"] == label]
        table.loc[idx, "fold"] = [1 + i % k for i in range(len(idx))]
    return files, table


def test_no_patient_leaks_between_train_val_and_held_out(tmp_path):
    files, folds = write_cohort(tmp_path, n_benign=7, n_malignant=5, k=3)
    all_ids = set(folds["patient_id"])
    for fold in (1, 2, 3):
        data = load_fold_data(files, folds, fold, val_fraction=0.25, seed=fold)
        tr, va, te = (set(s.patient_ids.tolist()) for s in (data.train, data.val, data.test))
        assert tr and va and te
        assert not (tr & va) and not (tr & te) and not (va & te)
        assert tr | va | te == all_ids
        assert te == set(folds.loc[folds["fold"] == fold, "patient_id"])
        # augmented copies only for training patients; val / held-out see originals only
        assert not data.val.augmented.any() and not data.test.augmented.any()
        aug_ids = set(data.train.patient_ids[data.train.augmented].tolist())
        assert aug_ids == tr
        # the tensors themselves agree with the ids (marker pixels written above)
        for split in (data.train, data.val, data.test):
            index = split.x[:, 0, 0, 0].numpy().round().astype(int)
            expected = [int(p[1:]) for p in split.patient_ids]
            assert (index == np.array(expected)).all()
            is_aug = split.x[:, 0, 0, 1].numpy() == 1000.0
            assert (is_aug == split.augmented).all()
        # every training patient contributes all originals and all copies
        for pid in tr:
            n = (data.train.patient_ids == pid).sum()
            label = folds.set_index("patient_id").loc[pid, "label"]
            assert n == 3 + 3 * (2 if label == "benign" else 4)
        # stratified inner split: both labels among the early-stopping patients
        assert set(data.val.y.tolist()) == {0.0, 1.0}
        assert (data.test.slices >= 10).all() and (data.train.slices[data.train.augmented] == -1).all()
        assert data.train.x.dtype == torch.float32 and data.train.x.is_contiguous()


def test_fingerprint_changes_with_content(tmp_path):
    files, folds = write_cohort(tmp_path, 3, 3, k=3)
    a = load_fold_data(files, folds, 1, 0.3, 0).fingerprint()
    assert a == load_fold_data(files, folds, 1, 0.3, 0).fingerprint()
    with h5py.File(files["p000"], "r+") as f:
        f["original"][0, 1, 5, 5] += 1.0
    assert load_fold_data(files, folds, 1, 0.3, 0).fingerprint() != a


def test_label_mismatch_and_missing_file_are_user_errors(tmp_path):
    files, folds = write_cohort(tmp_path, 3, 3, k=3)
    bad = folds.copy()
    bad.loc[0, "label"] = "malignant"
    with pytest.raises(SpinefxError, match="differs"):
        load_fold_data(files, bad, 1, 0.3, 0)
    with pytest.raises(SpinefxError, match="no patch file"):
        load_fold_data({k: v for k, v in files.items() if k != "p001"}, folds, 1, 0.3, 0)


def test_batches_cover_each_sample_once_in_seeded_order():
    x = torch.arange(70, dtype=torch.float32).view(70, 1, 1, 1).expand(70, 2, 3, 3).contiguous()
    y = torch.arange(70, dtype=torch.float32)
    seen = [yb for _, yb in iterate_batches(x, y, 32, torch.Generator().manual_seed(1))]
    assert [len(b) for b in seen] == [32, 32, 6]
    order = torch.cat(seen)
    assert sorted(order.tolist()) == list(range(70)) and order.tolist() != list(range(70))
    again = torch.cat([yb for _, yb in iterate_batches(x, y, 32, torch.Generator().manual_seed(1))])
    assert torch.equal(order, again)
    assert all((xb[:, 0, 0, 0] == yb).all() for xb, yb in iterate_batches(x, y, 32, torch.Generator()))
    # a trailing batch of one sample is dropped when BatchNorm needs two
    assert [len(i) for i in batch_indices(65, 32, torch.Generator(), min_last=2)] == [32, 32]


def test_no_early_stopping_split_when_val_fraction_is_zero(tmp_path):
    files, folds = write_cohort(tmp_path, 3, 3, k=3, copies=(1, 1))
    train, val, test = split_patients(folds, 2, 0.0, seed=0)
    assert val == [] and sorted(train + test) == sorted(folds["patient_id"])
    data = load_fold_data(files, folds, 2, 0.0, 0)
    assert len(data.val) == 0 and set(data.train.patient_ids) == set(train)


def test_load_folds_data_reads_each_file_once_and_gives_each_folds_tensors(tmp_path, monkeypatch):
    import spinefx.learn.dataset as dataset

    files, folds = write_cohort(tmp_path, n_benign=4, n_malignant=3, k=3)
    alone = [load_fold_data(files, folds, f, 0.25, seed=2) for f in (1, 2, 3)]
    reads = []
    real = dataset.read_patch_file
    monkeypatch.setattr(dataset, "read_patch_file", lambda path, **kw: reads.append(path) or real(path, **kw))
    together = load_folds_data(files, folds, [1, 2, 3], 0.25, seed=2)
    assert sorted(reads) == sorted(files.values())  # once each
    assert [d.fingerprint() for d in together] == [d.fingerprint() for d in alone]
