"""Does spinefx's data path starve the model? Training images/s of the project's own loop
(load_fold_data from real HDF5 patch files + train_epoch's seeded gather + train_step) against a
bare PyTorch loop over in-memory tensor slices, same model, batch and threads, in one process,
alternating which runs first to cancel drift. Also inference images/s (predict_logits vs bare).

    python bench/train_throughput.py [--threads 2] [--rounds 3] [--batches 8]

Last line: ratio=<project / bare> (the lower of the ResNet50 and ResNet18 training ratios).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from spinefx.imaging.patchfile import write_patch_file  # noqa: E402
from spinefx.learn.dataset import load_fold_data  # noqa: E402
from spinefx.learn.model import build_model  # noqa: E402
from spinefx.learn.train import TrainConfig, make_optimizer, predict_logits, train_epoch  # noqa: E402


def write_cohort(root: Path, n_patients: int, copies: int) -> tuple[dict[str, Path], pd.DataFrame]:
    """Patch files in the real on-disk format (chunked, lzf, float16 copies as config allows)."""
    rng = np.random.default_rng(0)
    files, rows = {}, []
    for i in range(n_patients):
        pid, label = f"b{i:03d}", ("malignant" if i % 4 == 0 else "benign")
        orig = rng.normal(size=(3, 6, 64, 64)).astype(np.float32)
        aug = rng.normal(size=(3 * copies, 6, 64, 64)).astype(np.float32)
        files[pid] = root / f"{pid}.h5"
        write_patch_file(
            files[pid], original=orig, augmented=aug, label=label, slices=[4, 5, 6], box=[0, 0, 9, 9],
            patient_id=pid, dtype="float16",
        )  # fmt: skip
        rows.append((pid, label, 1 + i % 5))
    return files, pd.DataFrame(rows, columns=["patient_id", "label", "fold"])


def bare_train(model, opt, x, y, batch: int) -> float:
    t0 = time.perf_counter()
    model.train()
    for s in range(0, len(y), batch):
        loss = F.binary_cross_entropy_with_logits(model(x[s : s + batch]), y[s : s + batch])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return time.perf_counter() - t0


def project_train(model, opt, x, y, batch: int, epoch: int) -> float:
    t0 = time.perf_counter()
    g = torch.Generator().manual_seed(epoch)
    dev = torch.device("cpu")
    train_epoch(model, opt, x, y, batch, g, device=dev, amp=True, channels_last=True)
    return time.perf_counter() - t0


@torch.no_grad()
def bare_infer(model, x, batch: int) -> float:
    t0 = time.perf_counter()
    model.eval()
    for s in range(0, len(x), batch):
        torch.sigmoid(model(x[s : s + batch]))
    return time.perf_counter() - t0


def project_infer(model, x, batch: int) -> float:
    t0 = time.perf_counter()
    torch.sigmoid(predict_logits(model, x, batch, device=torch.device("cpu"), channels_last=True))
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=5, help="alternating pairs per measurement")
    ap.add_argument("--batches", type=int, default=8, help="training batches per timed epoch")
    ap.add_argument("--batch", type=int, default=32)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads, batch {args.batch}, 64x64, channels_last")

    with tempfile.TemporaryDirectory() as tmp:
        files, folds = write_cohort(Path(tmp), n_patients=40, copies=4)
        t0 = time.perf_counter()
        data = load_fold_data(files, folds, 1, val_fraction=0.2, seed=0)
        load_s = time.perf_counter() - t0
    n_load = len(data.train) + len(data.val) + len(data.test)
    print(
        f"load_fold_data: {n_load} samples from 40 HDF5 files in {load_s:.2f} s "
        f"({n_load / load_s:.0f} samples/s; once per fold, before epoch 1)"
    )
    n = args.batches * args.batch
    if len(data.train) < n:
        raise SystemExit(f"only {len(data.train)} training samples; lower --batches")
    # the project loop gathers shuffled batches from the loaded tensors; the bare loop slices a
    # private copy of the same samples in order
    x_proj, y_proj = data.train.x[:n], data.train.y[:n]
    x_bare, y_bare = x_proj.clone(), y_proj.clone()

    ratios = []
    for arch in ("resnet50", "resnet18"):
        torch.manual_seed(0)
        model = build_model(arch, load_pretrained=False).to(memory_format=torch.channels_last)
        opt = make_optimizer(model, TrainConfig(arch=arch), torch.device("cpu"))
        bare_train(model, opt, x_bare[: 2 * args.batch], y_bare[: 2 * args.batch], args.batch)  # warm-up
        proj_t, bare_t = [], []
        for r in range(args.rounds):
            for which in ("bare", "proj") if r % 2 == 0 else ("proj", "bare"):
                if which == "bare":
                    bare_t.append(bare_train(model, opt, x_bare, y_bare, args.batch))
                else:
                    proj_t.append(project_train(model, opt, x_proj, y_proj, args.batch, r))
        proj_ips, bare_ips = n / np.median(proj_t), n / np.median(bare_t)
        ratio = proj_ips / bare_ips
        ratios.append(ratio)
        print(
            f"{arch} train: project {proj_ips:.1f} images/s, bare {bare_ips:.1f} images/s, ratio {ratio:.3f}"
        )
        xi = data.train.x  # the whole loaded training tensor
        project_infer(model, xi[:256], 256)  # warm-up
        pi, bi = [], []
        for r in range(args.rounds):
            for which in ("bare", "proj") if r % 2 == 0 else ("proj", "bare"):
                if which == "bare":
                    bi.append(bare_infer(model, xi, 256))
                else:
                    pi.append(project_infer(model, xi, 256))
        p_ips, b_ips = len(xi) / np.median(pi), len(xi) / np.median(bi)
        print(f"{arch} inference: project {p_ips:.1f} images/s, bare {b_ips:.1f} images/s")
    print(f"ratio={min(ratios):.3f}")


if __name__ == "__main__":
    main()
