"""Where in a patch the model looks: integrated gradients (Sundararajan et al. 2017).

Why integrated gradients and not Grad-CAM: at 64x64 input the last ResNet block's feature map is
2x2 pixels, so Grad-CAM there can only say "upper left quarter". Integrated gradients work at the
input's own resolution, per channel, and satisfy completeness (the attributions add up to
logit(x) - logit(baseline)), which the tests check. The baseline is an all-zero patch, i.e. the
mean of every z-scored channel.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from spinefx.atomic import atomic_path
from spinefx.imaging.patchfile import channel_names, read_patch_file


def integrated_gradients(
    model: nn.Module, x: torch.Tensor, steps: int = 32, baseline: torch.Tensor | None = None
) -> torch.Tensor:
    """Signed attributions [n, C, H, W] of the malignant logit, midpoint Riemann sum over ``steps``
    points on the straight path from ``baseline`` (zeros) to each sample."""
    model.eval()
    device = next(model.parameters()).device
    x = x.detach().to(device, torch.float32)
    baseline = torch.zeros_like(x) if baseline is None else baseline.to(device, torch.float32)
    alphas = ((torch.arange(steps, device=device, dtype=torch.float32) + 0.5) / steps).view(-1, 1, 1, 1)
    out = torch.empty_like(x)
    for i in range(len(x)):
        path = (baseline[i] + alphas * (x[i] - baseline[i])).requires_grad_(True)
        (grads,) = torch.autograd.grad(model(path).sum(), path)
        out[i] = (x[i] - baseline[i]) * grads.mean(0)
    return out.detach()


def saliency_maps(model: nn.Module, x: torch.Tensor, steps: int = 32) -> np.ndarray:
    """Saliency [n, H, W]: integrated-gradients magnitude summed over the channels."""
    return integrated_gradients(model, x, steps).abs().sum(1).cpu().numpy().astype(np.float32)


def saliency_figure(
    model_path: Path | Mapping[int, Path],
    patch_files: Mapping[str, Path] | pd.DataFrame,
    patient_ids: Sequence[str] | Mapping[str, Path],
    out_png: Path,
    *,
    steps: int = 32,
    per_class: int = 2,
    seed: int = 0,
) -> None:
    """One row per patient (benign first): the six input channels of the centre sample (the lesion
    slice with the default three centres) and the integrated-gradients saliency over the T2 s
    channel, titled with the label and the model's probability of malignancy.

    Called as ``(model_path, patch_files, patient_ids, out_png)`` every row uses one model. Called
    as ``(models_by_fold, folds_table, patch_files, out_png, per_class=2)`` it picks ``per_class``
    patients of each label (seeded) and explains each with its own held-out fold's model, so the
    maps show out-of-sample behaviour."""
    if isinstance(model_path, Mapping):
        folds, files = patch_files, patient_ids
        if not (isinstance(folds, pd.DataFrame) and isinstance(files, Mapping)):
            raise TypeError("with models by fold, pass (models, folds table, patch files, out_png)")
        rows = []
        rng = np.random.default_rng(seed)
        for label in ("benign", "malignant"):
            ids = sorted(folds.loc[folds["label"] == label, "patient_id"].astype(str))
            ids = [ids[i] for i in sorted(rng.permutation(len(ids))[:per_class])]
            fold_of = folds.set_index(folds["patient_id"].astype(str))["fold"]
            rows += [(pid, Path(model_path[int(fold_of[pid])])) for pid in ids]
        _figure(rows, files, Path(out_png), steps)
    else:
        _figure([(pid, Path(model_path)) for pid in patient_ids], patch_files, Path(out_png), steps)


def _figure(
    rows_in: list[tuple[str, Path]], patch_files: Mapping[str, Path], out_png: Path, steps: int
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from spinefx.learn.train import load_model

    models: dict[Path, tuple[nn.Module, dict]] = {}
    rows = []
    for pid, mpath in rows_in:
        if mpath not in models:
            models[mpath] = load_model(mpath)
        p = read_patch_file(Path(patch_files[pid]), augmented=False)
        rows.append((p.label, pid, mpath, p.original[len(p.original) // 2]))
    rows.sort(key=lambda r: (r[0] != "benign", r[1]))
    if not rows:
        raise ValueError("no patients to show")
    x = torch.from_numpy(np.stack([r[3] for r in rows]).astype(np.float32))
    sal, probs = [], []
    for i, (_, _, mpath, _) in enumerate(rows):
        model = models[mpath][0]
        sal.append(saliency_maps(model, x[i : i + 1], steps)[0])
        with torch.no_grad():
            probs.append(float(torch.sigmoid(model(x[i : i + 1]))[0]))
    n_ch = x.shape[1]
    names = channel_names(1) if n_ch == 6 else [f"channel {c}" for c in range(n_ch)]
    t2_centre = names.index("T2 s") if "T2 s" in names else n_ch - 1
    fig, axes = plt.subplots(len(rows), n_ch + 1, figsize=(1.6 * (n_ch + 1), 1.7 * len(rows)), squeeze=False)
    for r, ((label, pid, mpath, _), prob) in enumerate(zip(rows, probs, strict=True)):
        for c in range(n_ch):
            ax = axes[r, c]
            ax.imshow(x[r, c].numpy(), cmap="gray")
            if r == 0:
                ax.set_title(names[c], fontsize=8)
        ax = axes[r, n_ch]
        ax.imshow(x[r, t2_centre].numpy(), cmap="gray")
        ax.imshow(sal[r] / (sal[r].max() + 1e-12), cmap="inferno", alpha=0.5, vmin=0, vmax=1)
        if r == 0:
            ax.set_title("saliency (IG)", fontsize=8)
        fold = models[mpath][1].get("fold")
        axes[r, 0].set_ylabel(f"{pid}\n{label}\np={prob:.2f} (fold {fold})", fontsize=7)
        for ax in axes[r]:
            ax.set_xticks([])
            ax.set_yticks([])
    arch = next(iter(models.values()))[1].get("arch", "")
    fig.suptitle(f"{arch}: integrated gradients on the lesion slice", fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 0.985))
    with atomic_path(out_png) as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)
