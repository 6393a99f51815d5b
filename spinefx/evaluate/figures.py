"""The paper's figures as PNG: ROC with the readers on it, confusion matrices, training curves.

Built with matplotlib's object API on the Agg canvas (no pyplot state, no display needed). Only
``patient_id``-free aggregates are drawn, and the PNG metadata holds nothing but the software name.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from spinefx.atomic import atomic_path
from spinefx.errors import SpinefxError
from spinefx.evaluate.stats import MODEL_READER, auc_ci, binary_labels, diagnostic_table, roc_points

PNG_METADATA = {"Software": "spinefx (matplotlib)"}


def _new_figure(width_in: float, height_in: float) -> Figure:
    fig = Figure(figsize=(width_in, height_in), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, out_png: str | Path, dpi: int) -> Path:
    out_png = Path(out_png)
    with atomic_path(out_png) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi, metadata=PNG_METADATA)
    return out_png


def roc_figure(
    per_patient: pd.DataFrame,
    reader_points: pd.DataFrame | None,
    out_png: str | Path,
    *,
    auc: dict | None = None,
    model_name: str = MODEL_READER,
    dpi: int = 150,
) -> Path:
    """Per-patient ROC of the model, AUC (CI) in the legend, each human reader as a point.

    ``per_patient``: label, prob. ``reader_points``: reader, sensitivity, specificity (e.g. the
    diagnostic table; optional ``*_lo``/``*_hi`` columns become error bars); the model's own row
    is drawn as the operating point at the threshold rather than as a reader. ``auc``: the dict of
    :func:`spinefx.evaluate.stats.auc_ci`; computed with DeLong when not given.
    """
    y = per_patient["label"].to_numpy()
    prob = per_patient["prob"].to_numpy(dtype=float)
    if auc is None:
        auc = auc_ci(y, prob)
    fpr, tpr, _ = roc_points(y, prob)
    fig = _new_figure(5.2, 5.0)
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], color="0.7", lw=1, ls="--", label="chance")
    label = f"{model_name}: AUC {auc['auc']:.3f} (95% CI {auc['lo']:.3f}–{auc['hi']:.3f}, {auc['method']})"
    # straight segments between the true vertices: a tie of malignant and benign patients is a
    # diagonal, so the area under the drawn curve is the reported (Mann-Whitney) AUC
    ax.plot(fpr, tpr, color="C0", lw=2, label=label)
    if reader_points is not None and len(reader_points):
        markers = iter(["o", "s", "^", "D", "v", "P", "X", "*"] * 4)
        for i, row in enumerate(reader_points.itertuples(index=False)):
            r = row._asdict()
            x, yy = 1.0 - float(r["specificity"]), float(r["sensitivity"])
            is_model = str(r["reader"]) == model_name
            xerr = yerr = None
            if {"specificity_lo", "specificity_hi"} <= r.keys():
                xerr = [
                    [max(r["specificity_hi"] - r["specificity"], 0)],
                    [max(r["specificity"] - r["specificity_lo"], 0)],
                ]
            if {"sensitivity_lo", "sensitivity_hi"} <= r.keys():
                yerr = [[max(yy - r["sensitivity_lo"], 0)], [max(r["sensitivity_hi"] - yy, 0)]]
            ax.errorbar(
                x,
                yy,
                xerr=xerr,
                yerr=yerr,
                fmt="*" if is_model else next(markers),
                ms=12 if is_model else 8,
                color="C0" if is_model else f"C{i + 1}",
                capsize=2,
                elinewidth=0.8,
                label=f"{r['reader']} (threshold)" if is_model else str(r["reader"]),
            )
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(-0.02, 1.02)
    ax.set_aspect("equal")
    ax.set_xlabel("1 − specificity (false-positive rate)")
    ax.set_ylabel("sensitivity (true-positive rate)")
    y01 = binary_labels(y)
    n_pos, n_neg = int(y01.sum()), int(len(y01) - y01.sum())
    ax.set_title(f"Per-patient ROC ({n_pos} malignant, {n_neg} benign)")
    ax.legend(loc="lower right", fontsize=7)
    ax.grid(alpha=0.3)
    return _save(fig, out_png, dpi)


def confusion_figure(
    table: pd.DataFrame, out_png: str | Path, *, truth: pd.DataFrame | pd.Series | None = None, dpi: int = 150
) -> Path:
    """One 2x2 confusion matrix per reader (the model included), rows = truth, columns = call.

    ``table`` is either the diagnostic table (reader, tp, tn, fn, fp) or reader calls
    (patient_id, reader, call) together with ``truth``.
    """
    if not {"tp", "tn", "fn", "fp"} <= set(table.columns):
        if truth is None:
            raise SpinefxError("confusion_figure needs a diagnostic table or calls plus truth")
        table = diagnostic_table(table, truth)
    n = len(table)
    if n == 0:
        raise SpinefxError("no readers to draw")
    ncols = min(n, 4)
    nrows = int(np.ceil(n / ncols))
    fig = _new_figure(2.6 * ncols, 2.6 * nrows)
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
    for ax, row in zip(axes, table.itertuples(index=False), strict=False):
        m = np.array([[row.tp, row.fn], [row.fp, row.tn]], dtype=float)
        # shade by the fraction of each true class, so rows of different size compare
        frac = m / np.maximum(m.sum(axis=1, keepdims=True), 1)
        ax.imshow(frac, cmap="Blues", vmin=0, vmax=1)
        for (i, j), v in np.ndenumerate(m):
            ax.text(
                j,
                i,
                f"{int(v)}",
                ha="center",
                va="center",
                fontsize=12,
                color="white" if frac[i, j] > 0.6 else "black",
            )
        ax.set_xticks([0, 1], ["malignant", "benign"], fontsize=8)
        ax.set_yticks([0, 1], ["malignant", "benign"], fontsize=8)
        ax.set_xlabel("call", fontsize=8)
        ax.set_ylabel("truth", fontsize=8)
        acc = (row.tp + row.tn) / max(row.tp + row.tn + row.fp + row.fn, 1)
        ax.set_title(f"{row.reader}\naccuracy {acc:.2f}", fontsize=9)
    for ax in axes[n:]:
        ax.set_visible(False)
    return _save(fig, out_png, dpi)


def _history(h: pd.DataFrame | str | Path) -> pd.DataFrame:
    if isinstance(h, (str, Path)):
        try:
            h = pd.read_csv(h, sep="\t")
        except FileNotFoundError as err:
            raise SpinefxError("training history not found", path=h) from err
    missing = {"epoch", "train_loss", "val_loss"} - set(h.columns)
    if missing:
        raise SpinefxError(f"training history lacks columns {sorted(missing)}")
    return h


def training_curves_figure(
    histories: Mapping[int, pd.DataFrame | str | Path], out_png: str | Path, *, dpi: int = 150
) -> Path:
    """Train and validation loss per epoch, one small panel per fold on a shared loss axis.

    The epoch of the lowest validation loss (the early-stopping pick) is marked.
    """
    if not histories:
        raise SpinefxError("no training histories to draw")
    folds = sorted(histories, key=int)
    ncols = min(len(folds), 5)
    nrows = int(np.ceil(len(folds) / ncols))
    fig = _new_figure(2.8 * ncols, 2.3 * nrows)
    axes = fig.subplots(nrows, ncols, squeeze=False, sharey=True).ravel()
    for ax, fold in zip(axes, folds, strict=False):
        h = _history(histories[fold])
        ax.plot(h["epoch"], h["train_loss"], color="C0", lw=1.5, label="train")
        ax.plot(h["epoch"], h["val_loss"], color="C1", lw=1.5, label="validation")
        val = pd.to_numeric(h["val_loss"], errors="coerce").to_numpy(dtype=float)
        if np.isfinite(val).any():
            best = int(np.nanargmin(val))
            ax.axvline(h["epoch"].iloc[best], color="0.5", lw=0.8, ls=":", label="lowest validation")
        ax.set_title(f"fold {fold}", fontsize=9)
        ax.set_xlabel("epoch", fontsize=8)
        ax.grid(alpha=0.3)
    for ax in axes[len(folds) :]:
        ax.set_visible(False)
    axes[0].set_ylabel("loss")
    axes[0].legend(fontsize=7)
    return _save(fig, out_png, dpi)


def decision_curve_figure(
    curve: pd.DataFrame, out_png: str | Path, *, model_name: str = MODEL_READER, dpi: int = 150
) -> Path:
    """Net benefit of the model over thresholds against treating all and treating none
    (the table of :func:`spinefx.evaluate.calibration_stats.net_benefit`)."""
    fig = _new_figure(5.2, 4.0)
    ax = fig.add_subplot()
    ax.plot(curve["threshold"], curve["net_benefit_model"], color="C0", lw=2, label=model_name)
    ax.plot(curve["threshold"], curve["net_benefit_all"], color="C1", lw=1, ls="--", label="treat all")
    ax.plot(curve["threshold"], curve["net_benefit_none"], color="0.4", lw=1, ls=":", label="treat none")
    top = float(np.nanmax(curve[["net_benefit_model", "net_benefit_all"]].to_numpy()))
    ax.set_ylim(min(-0.05, -0.2 * max(top, 0.05)), max(top, 0.05) * 1.1)
    ax.set_xlabel("threshold probability")
    ax.set_ylabel("net benefit")
    ax.set_title(f"Decision curve ({int(curve['n'].iloc[0])} patients)")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    return _save(fig, out_png, dpi)
