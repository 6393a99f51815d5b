"""A fold's patches as contiguous in-memory tensors, and a batch iterator over them.

Why not a torch Dataset/DataLoader: a fold of the paper's protocol is ~15k samples of 6x64x64
(< 1.5 GB float32), so it fits in RAM (or GPU memory) once; indexing a contiguous tensor with a
seeded permutation costs microseconds per batch, while per-sample ``__getitem__`` calls, HDF5 reads
and collation would be the bottleneck on a GPU. The split logic (which patient's patches go where)
lives here too, so the no-leak property is checked on the very tensors that training consumes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from spinefx.errors import SpinefxError
from spinefx.imaging.patchfile import PatchFile, read_patch_file
from spinefx.learn.folds import fold_split

LABEL_VALUE = {"benign": 0.0, "malignant": 1.0}


@dataclass
class Split:
    """Samples of one role (train / val / test). ``slices`` is the T2 centre slice index k of an
    original sample and -1 for an augmented copy."""

    x: torch.Tensor  # [n, C, H, W] float32, contiguous
    y: torch.Tensor  # [n] float32, 1 = malignant
    patient_ids: np.ndarray  # [n] str
    slices: np.ndarray  # [n] int64
    augmented: np.ndarray  # [n] bool

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def to(self, device: torch.device | str) -> Split:
        """Copy the tensors to ``device`` (once per fold, so batches never cross the bus)."""
        return Split(self.x.to(device), self.y.to(device), self.patient_ids, self.slices, self.augmented)


@dataclass
class FoldData:
    """Everything one fold trains and predicts on: train = training patients' originals and their
    augmented copies; val = the inner early-stopping patients' originals; test = the held-out fold's
    originals."""

    fold: int
    train: Split
    val: Split
    test: Split

    def fingerprint(self) -> str:
        """Content hash of every tensor and id, so a resumed job can tell its inputs changed."""
        h = hashlib.blake2b(digest_size=16)
        h.update(str(self.fold).encode())
        for split in (self.train, self.val, self.test):
            for t in (split.x, split.y):
                h.update(str(tuple(t.shape)).encode())
                h.update(t.detach().cpu().contiguous().numpy().tobytes())
            h.update("\0".join(split.patient_ids.tolist()).encode())
            h.update(split.slices.tobytes())
            h.update(split.augmented.tobytes())
        return h.hexdigest()


def _read_patches(path: Path, patient: str, want_augmented: bool) -> PatchFile:
    """One patient's patch file (augmented copies only when they will be used)."""
    if not Path(path).is_file():
        raise SpinefxError("patch file not found.", patient=patient, path=path, fix="run extract_patches")
    return read_patch_file(path, augmented=want_augmented)


def split_patients(
    folds: pd.DataFrame, fold: int, val_fraction: float, seed: int
) -> tuple[list[str], list[str], list[str]]:
    """(train, early-stopping validation, held-out) patient ids of ``fold``: the shared
    :func:`spinefx.learn.folds.fold_split`, or no validation patients when ``val_fraction`` is 0."""
    if fold not in set(folds["fold"].astype(int)):
        raise SpinefxError(f"fold {fold} is not in the folds table (folds: {sorted(set(folds['fold']))}).")
    if val_fraction == 0:
        held = folds["fold"].astype(int) == fold
        return (
            folds.loc[~held, "patient_id"].astype(str).tolist(),
            [],
            folds.loc[held, "patient_id"].astype(str).tolist(),
        )
    split = fold_split(folds, fold, val_fraction=val_fraction, seed=seed)
    return list(split.train), list(split.val), list(split.test)


def _stack(parts: list[tuple[str, np.ndarray, float, np.ndarray, bool]]) -> Split:
    if not parts:
        return Split(
            torch.empty(0, 6, 64, 64),
            torch.empty(0),
            np.array([], dtype=str),
            np.array([], dtype=np.int64),
            np.array([], dtype=bool),
        )
    shapes = {p[1].shape[1:] for p in parts if len(p[1])}
    if len(shapes) > 1:
        raise SpinefxError(f"patch files disagree on the sample shape: {sorted(shapes)}.")
    shape = shapes.pop() if shapes else (6, 64, 64)
    n = sum(len(p[1]) for p in parts)
    x = torch.empty((n, *shape), dtype=torch.float32)
    y = torch.empty(n, dtype=torch.float32)
    pids, slices, aug = [], [], []
    i = 0
    for pid, arr, label, sl, is_aug in parts:
        m = len(arr)
        x[i : i + m] = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))
        y[i : i + m] = label
        pids += [pid] * m
        slices.append(sl)
        aug.append(np.full(m, is_aug))
        i += m
    return Split(x, y, np.array(pids, dtype=str), np.concatenate(slices), np.concatenate(aug))


def load_fold_data(
    patch_files: Mapping[str, Path],
    folds: pd.DataFrame,
    fold: int,
    val_fraction: float,
    seed: int,
    *,
    read: Callable[[Path, str, bool], PatchFile] = _read_patches,
) -> FoldData:
    """Read the patches of every patient once and place them by role for ``fold``: patients with
    ``fold != fold`` are split by :func:`spinefx.learn.folds.fold_split` (stratified; ``seed`` is the
    run's seed, the fold is mixed in there) into training and early-stopping validation;
    the held-out fold and validation get original patches only; augmented copies go to training
    only. Labels come from the folds table and must agree with each file's ``label`` attribute.
    ``read(path, patient, want_augmented)`` reads one file (see :func:`load_folds_data`)."""
    need = {"patient_id", "label", "fold"}
    if not need <= set(folds.columns):
        raise SpinefxError(f"folds table lacks columns {sorted(need - set(folds.columns))}.")
    table = folds.assign(patient_id=folds["patient_id"].astype(str)).sort_values("patient_id")
    table = table.reset_index(drop=True)
    bad = sorted(set(table["label"]) - set(LABEL_VALUE))
    if bad:
        raise SpinefxError(f"unknown labels {bad} in the folds table.", fix="use benign/malignant")
    train_ids, val_ids, test_ids = split_patients(table, fold, val_fraction, seed)
    labels = dict(zip(table["patient_id"], table["label"], strict=True))
    roles = {pid: "train" for pid in train_ids} | {pid: "val" for pid in val_ids}
    roles |= {pid: "test" for pid in test_ids}
    parts: dict[str, list] = {"train": [], "val": [], "test": []}
    for pid in table["patient_id"]:
        if pid not in patch_files:
            raise SpinefxError("no patch file given for this patient.", patient=pid)
        role = roles[pid]
        p = read(Path(patch_files[pid]), pid, role == "train")
        if p.label != labels[pid]:
            raise SpinefxError(
                f"label {p.label!r} in the patch file differs from {labels[pid]!r} in the folds table.",
                patient=pid,
                path=patch_files[pid],
                fix="rebuild the patches or the folds from the same sheet",
            )
        if len(p.slices) != len(p.original):
            raise SpinefxError(
                f"{len(p.original)} original samples but {len(p.slices)} slice indices.",
                patient=pid,
                path=patch_files[pid],
            )
        y = LABEL_VALUE[p.label]
        parts[role].append((pid, p.original, y, np.asarray(p.slices, dtype=np.int64), False))
        if role == "train" and len(p.augmented):
            parts[role].append((pid, p.augmented, y, np.full(len(p.augmented), -1, np.int64), True))
    data = FoldData(fold, _stack(parts["train"]), _stack(parts["val"]), _stack(parts["test"]))
    if len(data.train) == 0:
        raise SpinefxError(f"fold {fold}: no training samples.", fix="check folds.tsv and the patches")
    return data


def load_folds_data(
    patch_files: Mapping[str, Path],
    folds: pd.DataFrame,
    fold_ids: list[int],
    val_fraction: float,
    seed: int,
) -> list[FoldData]:
    """:func:`load_fold_data` for several folds, reading each patch file once (a stacked job would
    otherwise read the cohort k times); the tensors are the very ones a job per fold loads."""
    cache: dict[Path, PatchFile] = {}

    def read_once(path: Path, patient: str, want_augmented: bool) -> PatchFile:
        if path not in cache:
            cache[path] = _read_patches(path, patient, want_augmented=True)
        return cache[path]

    return [load_fold_data(patch_files, folds, f, val_fraction, seed, read=read_once) for f in fold_ids]


def batch_indices(
    n: int, batch_size: int, generator: torch.Generator | None = None, min_last: int = 1
) -> Iterator[torch.Tensor]:
    """Index tensors of consecutive batches over ``n`` samples; a seeded shuffle when ``generator``
    is given. A trailing batch smaller than ``min_last`` is dropped (BatchNorm cannot train on 1)."""
    order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
    for start in range(0, n, batch_size):
        idx = order[start : start + batch_size]
        if len(idx) < min_last:
            return
        yield idx


def iterate_batches(
    x: torch.Tensor,
    y: torch.Tensor,
    batch_size: int,
    generator: torch.Generator | None = None,
    min_last: int = 1,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """(x, y) batches gathered from in-memory tensors (on whatever device they live); without a
    generator the order is the stored one and batches are zero-copy views."""
    if generator is None:
        for start in range(0, len(y), batch_size):
            if len(y) - start < min_last:
                return
            yield x[start : start + batch_size], y[start : start + batch_size]
        return
    for idx in batch_indices(len(y), batch_size, generator, min_last):
        idx = idx.to(x.device, non_blocking=True)
        yield x.index_select(0, idx), y.index_select(0, idx)
