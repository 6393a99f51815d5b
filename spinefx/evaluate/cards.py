"""The case card of one new patient: what a reader needs to weigh the model's call.

One PNG (and an HTML page that embeds it beside the numbers): the lesion box on the T2W slice and
on the registered T1W slice, the six input channels, the integrated-gradients saliency of the
ensemble, the probability (raw and calibrated) with the spread over the fold models, and where
the patient's calibrated probability falls on the cross-validated ROC. Only the patient id and
numbers are written: no name, date or other identity reaches the card.
"""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import SimpleITK as sitk
import torch

from spinefx.atomic import atomic_path
from spinefx.evaluate.stats import binary_labels, roc_points
from spinefx.imaging.patchfile import channel_names, read_patch_file
from spinefx.learn.final import MeanLogit, load_ensemble
from spinefx.learn.saliency import saliency_maps


def _normalise(a: np.ndarray) -> np.ndarray:
    lo, hi = np.percentile(a, [1, 99])
    return np.clip((a - lo) / (hi - lo + 1e-12), 0, 1)


def operating_point(oof: pd.DataFrame, prob_calibrated: float) -> tuple[float, float]:
    """(1 - specificity, sensitivity) on the cross-validated patients if the patient's calibrated
    probability were the threshold: where the patient sits on the cross-validated ROC."""
    y = binary_labels(oof["label"])
    s = oof["prob_calibrated"].to_numpy(dtype=float)
    pos = s >= prob_calibrated
    return float((pos & (y == 0)).sum() / max((y == 0).sum(), 1)), float(
        (pos & (y == 1)).sum() / max(y.sum(), 1)
    )


def case_card(
    patient: str,
    *,
    t2_nii: str | Path,
    t1_in_t2_nii: str | Path,
    t2_sidecar: str | Path,
    lesion_instance: int,
    box: Sequence[int],
    patch_file: str | Path,
    model_path: str | Path,
    prediction: Mapping[str, Any],
    oof: pd.DataFrame,
    threshold: float,
    out_png: str | Path,
    out_html: str | Path,
    saliency_steps: int = 32,
) -> None:
    """Write the case card of ``patient`` (PNG + HTML). ``prediction``: its row of
    results/predict/per_patient.tsv; ``oof``: the cross-fitted calibrated out-of-fold table."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    numbers = json.loads(Path(t2_sidecar).read_text())["instance_numbers"]
    k = [int(n) for n in numbers].index(int(lesion_instance))
    t2 = sitk.ReadImage(str(t2_nii))
    t1 = sitk.ReadImage(str(t1_in_t2_nii))
    sx, sy = t2.GetSpacing()[:2]
    t2_slice = _normalise(sitk.GetArrayViewFromImage(t2)[k].astype(float))
    t1_slice = _normalise(sitk.GetArrayViewFromImage(t1)[k].astype(float))
    pf = read_patch_file(Path(patch_file), augmented=False)
    centre = len(pf.original) // 2
    x = torch.from_numpy(pf.original[centre : centre + 1].astype(np.float32))
    ens, meta = load_ensemble(model_path)
    sal = saliency_maps(MeanLogit(ens), x, steps=saliency_steps)[0]
    names = channel_names(1) if x.shape[1] == 6 else [f"channel {c}" for c in range(x.shape[1])]
    fold_probs = [float(v) for v in str(prediction["fold_probs"]).split(",")]

    fig = plt.figure(figsize=(13, 8.6), dpi=100)
    grid = fig.add_gridspec(3, 6, height_ratios=[2.3, 1, 1.05], hspace=0.35, wspace=0.25)
    x0, y0, x1, y1 = (int(v) for v in box)
    for col, (title, img) in enumerate((("T2W", t2_slice), ("T1W (registered to T2W)", t1_slice))):
        ax = fig.add_subplot(grid[0, 2 * col : 2 * col + 2])
        ax.imshow(img, cmap="gray", aspect=sy / sx, interpolation="nearest")
        ax.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, ec="yellow", lw=1.6))
        ax.set_title(f"{title}, slice {lesion_instance}, lesion box", fontsize=10)
        ax.axis("off")
    ax = fig.add_subplot(grid[0, 4:])
    fpr, tpr, _ = roc_points(oof["label"], oof["prob_calibrated"])
    ax.plot(fpr, tpr, color="tab:blue", lw=1.5, label="cross-validated ROC")
    ax.plot([0, 1], [0, 1], color="grey", ls=":", lw=1)
    px, py = operating_point(oof, float(prediction["prob_calibrated"]))
    ax.plot([px], [py], "o", color="tab:red", ms=9, label="this patient's probability as cut-off")
    tx, ty = operating_point(oof, threshold)
    ax.plot([tx], [ty], "s", color="black", ms=6, mfc="none", label=f"operating threshold {threshold:.2f}")
    ax.set_xlabel("1 - specificity")
    ax.set_ylabel("sensitivity")
    ax.set_aspect("equal")
    ax.legend(fontsize=7.5, loc="lower right")
    ax.set_title("Where the patient falls (out-of-fold patients)", fontsize=10)
    for c in range(x.shape[1]):
        ax = fig.add_subplot(grid[1, c])
        ax.imshow(x[0, c].numpy(), cmap="gray")
        ax.set_title(names[c], fontsize=9)
        ax.axis("off")
    t2c = names.index("T2 s") if "T2 s" in names else x.shape[1] - 1
    ax = fig.add_subplot(grid[2, 0])
    ax.imshow(sal, cmap="inferno")
    ax.set_title("saliency (integrated gradients)", fontsize=8.5)
    ax.axis("off")
    ax = fig.add_subplot(grid[2, 1])
    ax.imshow(x[0, t2c].numpy(), cmap="gray")
    ax.imshow(np.ma.masked_less(sal, np.percentile(sal, 90)), cmap="autumn", alpha=0.6)
    ax.set_title("top 10% saliency on T2 s", fontsize=8.5)
    ax.axis("off")
    ax = fig.add_subplot(grid[2, 2:4])
    folds = meta["folds"]
    ax.barh([f"fold {f}" for f in folds], fold_probs, color="tab:gray")
    ax.axvline(float(prediction["prob"]), color="tab:red", lw=1.5, label="mean")
    ax.set_xlim(0, 1)
    ax.set_xlabel("probability of malignancy, each fold model")
    ax.tick_params(labelsize=8)
    ax = fig.add_subplot(grid[2, 4:])
    ax.axis("off")
    call = str(prediction["call"])
    text = (
        f"model call: {call.upper()}\n"
        f"calibrated probability: {float(prediction['prob_calibrated']):.2f}\n"
        f"  (threshold {threshold:.2f})\n"
        f"model probability: {float(prediction['prob']):.2f} ± {float(prediction['prob_sd']):.2f}\n"
        f"  (mean ± SD over {len(folds)} fold models)\n"
        "research use: a second opinion, not a diagnosis"
    )
    ax.text(
        0.0,
        0.95,
        text,
        va="top",
        fontsize=10.5,
        family="monospace",
        color="darkred" if call == "malignant" else "darkgreen",
    )
    fig.suptitle(f"spinefx case card: {patient}", fontsize=13, x=0.02, ha="left")
    with atomic_path(Path(out_png)) as tmp:
        fig.savefig(tmp, format="png", bbox_inches="tight")
    plt.close(fig)
    _write_html(patient, prediction, threshold, len(folds), Path(out_png), Path(out_html))


def _write_html(
    patient: str, prediction: Mapping[str, Any], threshold: float, n_models: int, png: Path, out: Path
) -> None:
    img = base64.b64encode(png.read_bytes()).decode()
    e = html.escape
    rows = [
        ("model call", str(prediction["call"])),
        ("calibrated probability of malignancy", f"{float(prediction['prob_calibrated']):.3f}"),
        ("operating threshold (calibrated)", f"{threshold:.3f}"),
        ("model probability, mean over fold models", f"{float(prediction['prob']):.3f}"),
        (f"spread: SD over {n_models} fold models", f"{float(prediction['prob_sd']):.3f}"),
        ("each fold model", str(prediction["fold_probs"]).replace(",", ", ")),
    ]
    body = "\n".join(f"<tr><th>{e(k)}</th><td>{e(v)}</td></tr>" for k, v in rows)
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>spinefx case card {e(patient)}</title>
<style>body{{font-family:sans-serif;margin:1.5em;max-width:1400px}} th{{text-align:left;padding-right:1em}}
img{{max-width:100%}} .note{{color:#555}}</style></head><body>
<h1>Case card: {e(patient)}</h1>
<table>{body}</table>
<p class="note">Benign versus malignant vertebral fracture from the lesion box on sagittal T1W/T2W MRI.
Research use: a second opinion for a reader, not a diagnosis. The probability is calibrated on the
cross-validated patients; the spread over the fold models is its uncertainty.</p>
<img alt="case card of {e(patient)}" src="data:image/png;base64,{img}">
</body></html>
"""
    with atomic_path(out) as tmp:
        Path(tmp).write_text(page)
