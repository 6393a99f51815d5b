"""How long does the paper's full protocol take here, run by the project's own entry points?

Writes a synthetic cohort in the real patch-file format and runs the real training code on it:
``train_fold`` (one job per fold, ``train.folds_per_job: 1``) and ``train_folds_stacked`` (all
folds in one job, ``folds_per_job: all``), each with everything a job does (reading the patch files,
validation every epoch, checkpoints, predictions, every output file). The paper's protocol:

  190 patients = 140 benign x (1 + 20 copies) + 50 malignant x (1 + 40 copies), 3 samples each
  -> 14,970 samples; ResNet50 at 64x64, batch 32, 10 folds x 100 epochs (early stopping off).

On CUDA the cohort is the paper's and the settings are the config schema's defaults (the paper's:
bf16 autocast, channels_last); each job runs ``--epochs`` epochs (default 3), and the full protocol
is projected from its measured wall time: the time outside the epochs once, plus 100 times the mean
of the epochs after the first (the first carries cuDNN autotuning). ``--epochs 100`` measures it
outright. Without CUDA it runs a REDUCED protocol on the CPU (say so on every line that matters):
20 patients, 1-2 copies, ResNet18, 3 folds, and projects that reduced protocol the same way.

    python bench/gpu_protocol.py [--epochs 3] [--folds-run 2] [--cuda-graphs]

Per-fold mode trains ``--folds-run`` folds (default 2) and multiplies by the fold count; stacked
mode trains every fold at once. Last line:
protocol_seconds=<projected wall seconds of the full protocol, the faster mode> plus the measured
seconds and mode.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from spinefx.imaging.patchfile import write_patch_file  # noqa: E402
from spinefx.learn.stacked import resolve_forward, train_folds_stacked  # noqa: E402
from spinefx.learn.train import FoldOutputs, TrainConfig, train_fold  # noqa: E402

PAPER = {"benign": 140, "malignant": 50, "copies": (20, 40), "folds": 10, "epochs": 100, "arch": "resnet50"}
REDUCED = {"benign": 14, "malignant": 6, "copies": (1, 2), "folds": 3, "epochs": 100, "arch": "resnet18"}


def write_cohort(root: Path, size: dict, samples: int = 3) -> tuple[dict[str, Path], pd.DataFrame]:
    """Patch files (float16 copies, as augment.dtype allows) and a stratified folds table."""
    rng = np.random.default_rng(0)
    files, rows = {}, []
    for label, copies in (("benign", size["copies"][0]), ("malignant", size["copies"][1])):
        for i in range(size[label]):
            pid = f"{label[0]}{i:03d}"
            x = rng.normal(size=(samples * (1 + copies), 6, 64, 64)).astype(np.float32)
            if label == "malignant":
                x[:, :, 24:40, 24:40] += 0.5
            files[pid] = root / f"{pid}.h5"
            write_patch_file(
                files[pid], original=x[:samples], augmented=x[samples:], label=label,
                slices=list(range(samples)), box=[0, 0, 9, 9], patient_id=pid, dtype="float16",
            )  # fmt: skip
            rows.append((pid, label, 1 + i % size["folds"]))
    return files, pd.DataFrame(rows, columns=["patient_id", "label", "fold"])


def outputs_in(d: Path) -> FoldOutputs:
    return FoldOutputs(
        d / "model.pt", d / "history.tsv", d / "predictions.tsv", d / "curve.png", d / "state.pt"
    )


def project(wall: float, history: pd.DataFrame, epochs: int) -> float:
    """Wall seconds for ``epochs`` epochs: what is not epochs once, plus the steady epoch time."""
    seconds = history["seconds"].to_numpy()
    steady = seconds[1:].mean() if len(seconds) > 1 else seconds[0]
    return (wall - seconds.sum()) + epochs * steady


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=3, help="epochs each measured job runs")
    ap.add_argument("--folds-run", type=int, default=2, help="folds the per-fold mode runs (x fold count)")
    ap.add_argument("--cuda-graphs", action="store_true", help="train.cuda_graphs for the per-fold jobs")
    ap.add_argument("--modes", default="per_fold,stacked")
    ap.add_argument(
        "--checkpoint-minutes", type=float, default=None, help="train.checkpoint_minutes (default: schema)"
    )
    args = ap.parse_args()
    cuda = torch.cuda.is_available()
    size = PAPER if cuda else REDUCED
    where = (
        f"GPU {torch.cuda.get_device_name(0)}, the paper's protocol"
        if cuda
        else "NOT A GPU: REDUCED protocol on the CPU (20 patients, 1-2 copies, ResNet18, 3 folds)"
    )
    print(f"{where}; torch {torch.__version__}")
    cfg = TrainConfig(
        arch=size["arch"], epochs=args.epochs, patience=size["epochs"], device="cuda" if cuda else "cpu",
        cuda_graphs=args.cuda_graphs and cuda, threads=None if cuda else 2, require_pretrained=False,
    )  # fmt: skip
    if args.checkpoint_minutes is not None:
        cfg.checkpoint_minutes = args.checkpoint_minutes
    k = size["folds"]
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        files, folds = write_cohort(root / "patches", size)
        n = sum(1 + size["copies"][lab == "malignant"] for lab in folds["label"]) * 3
        print(f"cohort: {len(files)} patients, {n} samples written in {time.perf_counter() - t0:.1f} s")
        for mode in args.modes.split(","):
            t0 = time.perf_counter()
            if mode == "per_fold":
                runs = range(1, min(args.folds_run, k) + 1)
                projected = 0.0
                for f in runs:
                    t1 = time.perf_counter()
                    train_fold(files, folds, f, outputs_in(root / mode / str(f)), cfg)
                    hist = pd.read_csv(root / mode / str(f) / "history.tsv", sep="\t")
                    projected += project(time.perf_counter() - t1, hist, size["epochs"])
                projected *= k / len(runs)
                label = f"per-fold jobs ({len(runs)} of {k} run, x{k / len(runs):g})"
            else:
                outs = {f: outputs_in(root / mode / str(f)) for f in range(1, k + 1)}
                train_folds_stacked(files, folds, range(1, k + 1), outs, root / mode / "state.pt", cfg)
                hist = pd.read_csv(outs[1].history, sep="\t")
                projected = project(time.perf_counter() - t0, hist, size["epochs"])
                forward = resolve_forward(cfg.stacked_forward, torch.device(cfg.device))
                label = f"stacked ({k} folds in one job, forward {forward})"
            measured = time.perf_counter() - t0
            results[mode] = (projected, measured)
            mem = f"; peak GPU memory {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB" if cuda else ""
            print(
                f"{label}: measured {measured:.1f} s for {args.epochs} epoch(s); projected full protocol "
                f"({k} folds x {size['epochs']} epochs) {projected:.0f} s = {projected / 60:.1f} min{mem}"
            )
    best = min(results, key=lambda m: results[m][0]) if results else None
    if best is None:
        print("protocol_seconds=nan")
        return
    projected, measured = results[best]
    scope = "paper" if cuda else "REDUCED-cpu"
    print(
        f"protocol_seconds={projected:.0f} (projected, {scope} protocol, {best}; measured "
        f"{measured:.1f} s for {args.epochs} epochs)" + ("" if math.isfinite(projected) else " FAILED")
    )


if __name__ == "__main__":
    main()
