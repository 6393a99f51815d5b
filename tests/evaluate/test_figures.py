"""Figures are written atomically as real PNGs, with content, and no user name in the metadata."""

from __future__ import annotations

import getpass
import os
import struct
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from spinefx.errors import SpinefxError
from spinefx.evaluate import stats
from spinefx.evaluate.figures import confusion_figure, roc_figure, training_curves_figure

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_text_chunks(path: Path) -> dict[str, str]:
    """tEXt/iTXt key -> value of a PNG, read chunk by chunk."""
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    out, i = {}, 8
    while i < len(data):
        (length,) = struct.unpack(">I", data[i : i + 4])
        kind = data[i + 4 : i + 8]
        body = data[i + 8 : i + 8 + length]
        if kind in (b"tEXt", b"iTXt"):
            key, _, value = body.partition(b"\x00")
            out[key.decode("latin-1")] = value.decode("latin-1", "replace")
        i += 12 + length
    return out


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    return struct.unpack(">II", data[16:24])


def check_png(path: Path, min_bytes: int = 10_000) -> None:
    assert path.exists() and path.stat().st_size > min_bytes
    chunks = png_text_chunks(path)
    users = {getpass.getuser(), os.environ.get("USER", ""), Path.home().name} - {"", "root"}
    blob = " ".join(chunks.values()) + " ".join(chunks)
    assert not any(u in blob for u in users)
    assert "Author" not in chunks
    assert [p.name for p in path.parent.iterdir() if p.name.startswith(".")] == []  # no temp files left


def paper_like() -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(0)
    label = np.array(["malignant"] * 50 + ["benign"] * 140)
    prob = np.clip(rng.normal(np.where(label == "malignant", 0.75, 0.3), 0.2), 0, 1)
    pp = pd.DataFrame(
        {"patient_id": [f"p{i}" for i in range(190)], "label": label, "fold": 1 + np.arange(190) % 10}
    )
    pp["prob"] = prob
    pp["call"] = np.where(prob >= 0.5, "malignant", "benign")
    readers = [stats.calls_from_per_patient(pp)]
    for name, flip in (("msk", 0.02), ("r1", 0.35)):
        wrong = rng.random(190) < flip
        call = np.where(wrong, np.where(label == "malignant", "benign", "malignant"), label)
        readers.append(pd.DataFrame({"patient_id": pp["patient_id"], "reader": name, "call": call}))
    return pp, pd.concat(readers, ignore_index=True)


def test_roc_figure(tmp_path: Path) -> None:
    pp, calls = paper_like()
    diag = stats.diagnostic_table(calls, pp)
    out = roc_figure(pp, diag, tmp_path / "figs" / "roc.png", auc=stats.auc_ci(pp["label"], pp["prob"]))
    check_png(out)
    w, h = png_size(out)
    assert w > 500 and h > 500
    # without readers and without a precomputed AUC (computed inside)
    check_png(roc_figure(pp, None, tmp_path / "figs" / "roc_model.png"))


def test_confusion_figure_from_table_or_calls(tmp_path: Path) -> None:
    pp, calls = paper_like()
    a = confusion_figure(stats.diagnostic_table(calls, pp), tmp_path / "a.png")
    b = confusion_figure(calls, tmp_path / "b.png", truth=pp)
    check_png(a)
    assert a.read_bytes() == b.read_bytes()  # same counts, same picture
    with pytest.raises(SpinefxError, match="truth"):
        confusion_figure(calls, tmp_path / "c.png")


def test_training_curves_figure(tmp_path: Path) -> None:
    hist = {}
    for k in range(1, 11):
        epochs = np.arange(1, 21)
        h = pd.DataFrame(
            {"epoch": epochs, "train_loss": 1 / epochs, "val_loss": 1 / epochs + 0.01 * (epochs - 8) ** 2 / k,
             "lr": 1e-4, "seconds": 1.0}
        )  # fmt: skip
        if k == 3:  # one fold read from its history.tsv
            path = tmp_path / "fold_3" / "history.tsv"
            path.parent.mkdir()
            h.to_csv(path, sep="\t", index=False)
            hist[k] = path
        else:
            hist[k] = h
    out = training_curves_figure(hist, tmp_path / "curves.png")
    check_png(out)
    assert png_size(out)[0] > png_size(training_curves_figure({1: hist[1]}, tmp_path / "one.png"))[0]
    with pytest.raises(SpinefxError, match="val_loss"):
        training_curves_figure({1: pd.DataFrame({"epoch": [1], "train_loss": [1.0]})}, tmp_path / "x.png")


def test_roc_drawn_through_true_vertices_area_equals_auc(tmp_path: Path, monkeypatch) -> None:
    from spinefx.evaluate import figures as figmod

    rng = np.random.default_rng(2)
    label = np.array(["malignant"] * 30 + ["benign"] * 50)
    prob = np.round(rng.random(80) * 0.5 + (label == "malignant") * 0.3, 1)  # many ties across classes
    pp = pd.DataFrame({"patient_id": [f"p{i}" for i in range(80)], "label": label, "prob": prob})
    drawn = {}
    monkeypatch.setattr(figmod, "_save", lambda fig, out, dpi: drawn.setdefault("fig", fig))
    figmod.roc_figure(pp, None, tmp_path / "roc.png")
    line = next(ln for ln in drawn["fig"].axes[0].get_lines() if "AUC" in ln.get_label())
    x, y = line.get_xdata(), line.get_ydata()
    assert np.trapezoid(y, x) == pytest.approx(stats.auc_ci(label, prob)["auc"], abs=1e-12)
    assert line.get_drawstyle() == "default"  # straight segments, no steps


def test_decision_curve_figure(tmp_path: Path) -> None:
    from spinefx.evaluate.calibration_stats import net_benefit
    from spinefx.evaluate.figures import decision_curve_figure

    pp, _ = paper_like()
    check_png(
        decision_curve_figure(net_benefit(pp["label"], pp["prob"], [0.1, 0.3, 0.5]), tmp_path / "dc.png")
    )
