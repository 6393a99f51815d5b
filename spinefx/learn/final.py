"""The final model: the k cross-validation fold models as one ensemble, its prediction on new
patients, and its export to TorchScript.

Why an ensemble and not one model retrained on all patients: as nnU-Net does with its five fold
models, the fold models are already trained and checked (each one's held-out fold is the
cross-validated performance), averaging them reduces the variance that dominates short runs on
small cohorts, and their spread is a per-patient uncertainty for free. A model on all patients costs
one more training job and has no held-out check of its own; on the demo's held-aside patients the
ensemble did at least as well (README, "Prediction on new patients").

A patient's probability is computed per fold model exactly as in cross-validation (slice
probabilities, then the per-patient aggregate, max by default), then averaged over the models; the
standard deviation over the models is reported beside it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from spinefx.atomic import atomic_path
from spinefx.errors import SpinefxError
from spinefx.imaging.patchfile import read_patch_file
from spinefx.learn.model import build_model

FORMAT = "spinefx-fold-ensemble-1"
AGGREGATES = ("max", "mean", "noisy_or")


class FoldEnsemble(nn.Module):
    """The fold models side by side: ``forward(x)`` gives the logits of every model, [n, k]."""

    def __init__(self, models: Sequence[nn.Module]) -> None:
        super().__init__()
        self.members = nn.ModuleList(models)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([m(x) for m in self.members], dim=1)


class MeanLogit(nn.Module):
    """One logit per sample (the mean over the fold models), for saliency maps."""

    def __init__(self, ensemble: FoldEnsemble) -> None:
        super().__init__()
        self.ensemble = ensemble

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ensemble(x).mean(dim=1)


class ProbabilityHead(nn.Module):
    """What is exported: slice patches [n, C, H, W] -> each fold model's probability [n, k]."""

    def __init__(self, ensemble: FoldEnsemble) -> None:
        super().__init__()
        self.ensemble = ensemble

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.ensemble(x))


def write_ensemble(
    fold_models: Mapping[int, str | Path], out_path: str | Path, *, aggregate: str = "max"
) -> dict[str, Any]:
    """One file holding the k fold models' state dicts and what they were trained with."""
    if aggregate not in AGGREGATES:
        raise SpinefxError(f"unknown per-patient aggregate {aggregate!r}", fix=f"use one of {AGGREGATES}")
    if not fold_models:
        raise SpinefxError("no fold models to ensemble", fix="train the folds first")
    members = []
    for fold in sorted(fold_models, key=int):
        path = Path(fold_models[fold])
        try:
            ckpt = torch.load(path, map_location="cpu", weights_only=False)
        except (OSError, RuntimeError) as err:
            raise SpinefxError(f"cannot read fold {fold}'s model ({err})", path=path) from err
        members.append(ckpt)
    archs = {m["arch"] for m in members}
    channels = {int(m["in_channels"]) for m in members}
    if len(archs) != 1 or len(channels) != 1:
        raise SpinefxError(
            f"the fold models differ in architecture {sorted(archs)} or channels {sorted(channels)}",
            fix="retrain every fold with the same train settings",
        )
    meta = {
        "format": FORMAT,
        "arch": archs.pop(),
        "in_channels": channels.pop(),
        "aggregate": aggregate,
        "folds": [int(m["fold"]) for m in members],
        "best_epochs": [int(m["best_epoch"]) for m in members],
        "config": members[0]["config"],
    }
    with atomic_path(Path(out_path)) as tmp:
        torch.save({**meta, "state_dicts": [m["state_dict"] for m in members]}, tmp)
    return meta


def load_ensemble(
    path: str | Path, device: str | torch.device = "cpu"
) -> tuple[FoldEnsemble, dict[str, Any]]:
    """The final model as an eval-mode :class:`FoldEnsemble`, plus its metadata."""
    path = Path(path)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except (OSError, RuntimeError) as err:
        raise SpinefxError(
            f"cannot read the final model ({err})", path=path, fix="rerun final_model"
        ) from err
    if ckpt.get("format") != FORMAT:
        raise SpinefxError("not a spinefx fold ensemble", path=path, fix="rerun the final_model rule")
    models = []
    for state in ckpt["state_dicts"]:
        m = build_model(ckpt["arch"], in_channels=ckpt["in_channels"], load_pretrained=False)
        m.load_state_dict(state)
        models.append(m)
    ens = FoldEnsemble(models).to(device).eval()
    return ens, {k: v for k, v in ckpt.items() if k != "state_dicts"}


def aggregate_slices(probs: np.ndarray, method: str) -> np.ndarray:
    """Per-slice probabilities [slices, ...] -> per patient [...], as merge_predictions does."""
    probs = np.asarray(probs, dtype=float)
    if method == "max":
        return probs.max(axis=0)
    if method == "mean":
        return probs.mean(axis=0)
    if method == "noisy_or":
        return 1.0 - np.prod(1.0 - probs, axis=0)
    raise SpinefxError(f"unknown per-patient aggregate {method!r}", fix=f"use one of {AGGREGATES}")


@torch.no_grad()
def slice_probabilities(model: nn.Module, x: np.ndarray | torch.Tensor) -> np.ndarray:
    """Every fold model's probability of each slice sample, [slices, k] (float64)."""
    head = ProbabilityHead(model) if isinstance(model, FoldEnsemble) else model
    head.eval()
    xt = torch.as_tensor(np.asarray(x, dtype=np.float32))
    return head(xt).double().numpy()


def patient_probabilities(slice_probs: np.ndarray, method: str) -> dict[str, Any]:
    """From [slices, k]: each model's patient probability, their mean (the prediction) and SD."""
    per_model = aggregate_slices(slice_probs, method)
    return {
        "prob": float(per_model.mean()),
        "prob_sd": float(per_model.std(ddof=1)) if len(per_model) > 1 else 0.0,
        "per_model": per_model,
    }


def predict_patients(
    model_path: str | Path,
    patch_files: Mapping[str, str | Path],
    *,
    calibrate: Any = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Apply the final model to the original patches of each patient.

    ``calibrate``: an object with ``apply(probs)`` and ``threshold`` (the calibrator of
    ``spinefx.evaluate.calibrate``, given by the caller); without it ``prob_calibrated`` is the raw
    probability and the threshold 0.5. Returns (per_patient[patient_id, prob, prob_sd,
    prob_calibrated, call, fold_probs], per_slice[patient_id, slice, fold, prob])."""
    ens, meta = load_ensemble(model_path)
    rows, slices = [], []
    for pid, path in patch_files.items():
        pf = read_patch_file(Path(path), augmented=False)
        if pf.original.shape[1] != meta["in_channels"]:
            raise SpinefxError(
                f"patches have {pf.original.shape[1]} channels, the final model takes {meta['in_channels']}",
                patient=pid,
                path=path,
                fix="extract the patches with the patches settings the model was trained with",
            )
        sp = slice_probabilities(ens, pf.original)
        pp = patient_probabilities(sp, meta["aggregate"])
        rows.append(
            {
                "patient_id": str(pid),
                "prob": pp["prob"],
                "prob_sd": pp["prob_sd"],
                "fold_probs": ",".join(f"{v:.6f}" for v in pp["per_model"]),
            }
        )
        for i, s in enumerate(pf.slices):
            for j, fold in enumerate(meta["folds"]):
                slices.append(
                    {"patient_id": str(pid), "slice": int(s), "fold": fold, "prob": float(sp[i, j])}
                )
    per_patient = pd.DataFrame(rows, columns=["patient_id", "prob", "prob_sd", "fold_probs"])
    if calibrate is not None:
        per_patient["prob_calibrated"] = calibrate.apply(per_patient["prob"].to_numpy())
        threshold = float(calibrate.threshold)
    else:
        per_patient["prob_calibrated"] = per_patient["prob"]
        threshold = 0.5
    per_patient["call"] = np.where(per_patient["prob_calibrated"] >= threshold, "malignant", "benign")
    cols = ["patient_id", "prob", "prob_sd", "prob_calibrated", "call", "fold_probs"]
    return per_patient[cols], pd.DataFrame(slices, columns=["patient_id", "slice", "fold", "prob"])


def export_torchscript(model_path: str | Path, out_path: str | Path, *, size: int = 64) -> None:
    """The final model as TorchScript (``torch.jit.load`` then ``model(x)``: slice patches
    [n, C, size, size] float32 -> each fold model's probability [n, k]), loadable without spinefx."""
    ens, meta = load_ensemble(model_path)
    example = torch.zeros(2, meta["in_channels"], size, size)
    with torch.no_grad():
        traced = torch.jit.trace(ProbabilityHead(ens).eval(), example, check_trace=False)
    with atomic_path(Path(out_path)) as tmp:
        torch.jit.save(traced, str(tmp))


def model_card(
    meta: Mapping[str, Any],
    *,
    cohort: Mapping[str, Any],
    performance: Mapping[str, Any],
    calibration: Mapping[str, Any],
) -> str:
    """The final model's card (Markdown): data, protocol, cross-validated performance with CIs, the
    operating point, the intended use and its limits."""
    cfg = meta["config"]
    lines = [
        "# spinefx final model",
        "",
        "## Model",
        f"- Ensemble of the {len(meta['folds'])} cross-validation fold models ({meta['arch']}, "
        f"{meta['in_channels']} input channels: T1W and T2W, lesion slice and its neighbours, 64x64, "
        "z-scored per channel).",
        f"- Patient probability: per model, the {meta['aggregate']} over the slice probabilities; "
        "then the mean over the models. The standard deviation over the models is its uncertainty.",
        f"- Best epochs of the folds: {', '.join(map(str, meta['best_epochs']))}.",
        "- Files: `model.pt` (the state dicts), `model.torchscript.pt` (TorchScript: patches [n, C, 64, 64] "
        "-> each fold model's probability [n, k]), `calibration.json`.",
        "",
        "## Data",
        f"- {cohort['n_patients']} patients ({cohort['n_malignant']} malignant, "
        f"{cohort['n_patients'] - cohort['n_malignant']} benign), {len(meta['folds'])}-fold stratified "
        "patient-level cross-validation.",
        f"- Source: {cohort['source']}.",
        "",
        "## Training protocol",
        f"- {cfg['arch']}, Adam lr {cfg['lr']:g} (betas {cfg['betas'][0]:g}/{cfg['betas'][1]:g}), "
        f"weight decay {cfg['weight_decay']:g}, batch {cfg['batch_size']}, up to {cfg['epochs']} epochs, "
        f"early stopping (patience {cfg['patience']}) on an inner validation split of "
        f"{cfg['val_fraction']:.0%} of the training patients.",
        "",
        "## Cross-validated performance (out-of-fold patients, raw probability)",
        f"- AUC {performance['auc']:.3f} (95% CI {performance['auc_lo']:.3f}-{performance['auc_hi']:.3f}, "
        f"{performance['auc_method']}).",
        f"- At the operating point: sensitivity {performance['sensitivity']:.3f} "
        f"({performance['sensitivity_lo']:.3f}-{performance['sensitivity_hi']:.3f}), specificity "
        f"{performance['specificity']:.3f} ({performance['specificity_lo']:.3f}-"
        f"{performance['specificity_hi']:.3f}), 95% CIs {performance['ci_method']}; the threshold of each "
        "fold was chosen on the other folds.",
        "",
        "## Operating point and calibration",
        f"- Calibrator: {calibration['method']}, fitted on the "
        f"{calibration['n_patients']} out-of-fold patients.",
        f"- Threshold on the calibrated probability: {calibration['threshold']:.3f} "
        f"({calibration['threshold_rule']}, chosen on out-of-fold patients only).",
        f"- Brier score, out-of-fold: {calibration['brier_raw']:.3f} raw, "
        f"{calibration['brier_calibrated']:.3f} calibrated (cross-fitted).",
        "",
        "## Intended use",
        "- A second opinion for a reader of sagittal T1W/T2W spine MRI who has already found a vertebral "
        "fracture and drawn its box: benign (osteoporotic) or malignant. Research use; not a diagnosis.",
        "",
        "## Limits",
        "- Validated only by cross-validation on its own cohort; no external test set. Performance on other "
        "scanners, protocols and case mixes is unknown; recalibrate on local data.",
        "- Needs the lesion box from a person; one lesion per patient; sagittal T1W and T2W.",
        "- The assisted-reading table is a simulation from recorded calls, not a reader study.",
        "",
    ]
    return "\n".join(lines)
