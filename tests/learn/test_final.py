"""The final fold ensemble: one file for k models, its predictions equal the fold models' own, and
the TorchScript export predicts the same."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from spinefx.errors import SpinefxError
from spinefx.imaging.patchfile import read_patch_file
from spinefx.learn.final import (
    aggregate_slices,
    export_torchscript,
    load_ensemble,
    model_card,
    predict_patients,
    write_ensemble,
)
from spinefx.learn.model import build_model
from spinefx.learn.train import TrainConfig, load_model

try:
    from tests.test_dataset import write_cohort
except ImportError:
    from test_dataset import write_cohort


def fold_models(root: Path, k: int = 3, arch: str = "resnet18") -> dict[int, Path]:
    """k differently initialised fold checkpoints in train_fold's format."""
    paths = {}
    for fold in range(1, k + 1):
        torch.manual_seed(fold)
        m = build_model(arch, load_pretrained=False)
        paths[fold] = root / f"fold_{fold}" / "model.pt"
        paths[fold].parent.mkdir(parents=True)
        cfg = TrainConfig(arch=arch).to_dict()
        torch.save(
            {
                "state_dict": m.state_dict(),
                "arch": arch,
                "in_channels": 6,
                "config": cfg,
                "fold": fold,
                "best_epoch": fold,
                "best_val_loss": 0.5,
                "bn_recalibrated": False,
            },
            paths[fold],
        )
    return paths


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("final")
    files, _ = write_cohort(root / "patches", 2, 2, k=2, copies=(0, 0))
    folds = fold_models(root)
    final = root / "final" / "model.pt"
    write_ensemble(folds, final, aggregate="max")
    return files, folds, final


def test_ensemble_predicts_what_the_fold_models_predict(setup):
    files, folds, final = setup
    per_patient, per_slice = predict_patients(final, files)
    assert list(per_patient["patient_id"]) == list(files)
    for pid, path in files.items():
        x = torch.from_numpy(read_patch_file(path, augmented=False).original)
        own = []
        for fold in sorted(folds):
            model, _ = load_model(folds[fold])
            with torch.no_grad():
                own.append(float(torch.sigmoid(model(x)).max()))
        row = per_patient.set_index("patient_id").loc[pid]
        assert row["prob"] == pytest.approx(np.mean(own), abs=1e-6)
        assert row["prob_sd"] == pytest.approx(np.std(own, ddof=1), abs=1e-6)
        assert row["call"] == ("malignant" if row["prob"] >= 0.5 else "benign")
    assert len(per_slice) == 4 * 3 * 3  # patients x slices x folds


def test_torchscript_export_predicts_the_same(setup, tmp_path):
    files, _, final = setup
    out = tmp_path / "model.torchscript.pt"
    export_torchscript(final, out)
    scripted = torch.jit.load(str(out))
    ens, meta = load_ensemble(final)
    x = torch.from_numpy(read_patch_file(next(iter(files.values())), augmented=False).original)
    with torch.no_grad():
        expected = torch.sigmoid(ens(x))
        got = scripted(x)
    assert got.shape == (3, 3) and meta["folds"] == [1, 2, 3]
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)


def test_aggregates_by_hand():
    p = np.array([[0.2, 0.5], [0.6, 0.5]])
    np.testing.assert_allclose(aggregate_slices(p, "max"), [0.6, 0.5])
    np.testing.assert_allclose(aggregate_slices(p, "mean"), [0.4, 0.5])
    np.testing.assert_allclose(aggregate_slices(p, "noisy_or"), [1 - 0.8 * 0.4, 0.75])


def test_mixed_architectures_are_refused(tmp_path):
    a = fold_models(tmp_path / "a", k=1, arch="resnet18")
    b = fold_models(tmp_path / "b", k=1, arch="resnet34")
    with pytest.raises(SpinefxError, match="differ in architecture"):
        write_ensemble({1: a[1], 2: b[1]}, tmp_path / "final.pt")


def test_model_card_states_protocol_performance_and_limits(setup):
    _, _, final = setup
    _, meta = load_ensemble(final)
    perf = {"auc": 0.9, "auc_lo": 0.8, "auc_hi": 0.97, "auc_method": "delong", "ci_method": "clopper-pearson"}
    perf |= {f"{m}{s}": 0.8 for m in ("sensitivity", "specificity") for s in ("", "_lo", "_hi")}
    cal = {
        "method": "platt",
        "n_patients": 4,
        "threshold": 0.5,
        "threshold_rule": "fixed at 0.5",
        "brier_raw": 0.2,
        "brier_calibrated": 0.15,
    }
    card = model_card(
        meta, cohort={"n_patients": 4, "n_malignant": 2, "source": "demo"}, performance=perf, calibration=cal
    )
    for needle in ("Ensemble of the 3", "AUC 0.900 (95% CI 0.800-0.970", "Intended use", "Limits", "0.150"):
        assert needle in card
