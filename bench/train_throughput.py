"""Does spinefx's training path cost more than the model itself? In one process, same model, batch
and threads, alternating which runs first to cancel drift:

1. training images/s of the project's epoch loop (train_epoch's seeded gather + train_step) against
   a bare PyTorch loop over in-memory tensor slices, for ResNet50 and ResNet18; inference likewise;
2. ``train_fold`` itself, the whole job (reading the HDF5 patch files, validation every epoch,
   checkpoints, BatchNorm re-estimation, predictions, every output file), against a bare loop over
   the same number of training images (ResNet18, the demo's settings);
3. the demo's 5 folds trained stacked (``train.folds_per_job: all``, spinefx/learn/stacked.py)
   against 5 ``train_fold`` jobs one after the other, same settings.

    python bench/train_throughput.py [--threads 2] [--rounds 5] [--batches 8] [--epochs 1]

Last two lines: stacked_ratio=<sequential seconds / stacked seconds> (above 1: stacked is faster),
then ratio=<train_fold images/s / bare images/s>.
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
from spinefx.learn.stacked import resolve_forward, train_folds_stacked  # noqa: E402
from spinefx.learn.train import (  # noqa: E402
    FoldOutputs,
    TrainConfig,
    make_optimizer,
    predict_logits,
    train_epoch,
    train_fold,
)


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
    ap.add_argument("--rounds", type=int, default=3, help="alternating pairs per measurement")
    ap.add_argument("--batches", type=int, default=8, help="training batches per timed epoch")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--archs", default="resnet50,resnet18", help="architectures of section 1")
    ap.add_argument("--epochs", type=int, default=1, help="epochs of each train_fold / stacked job")
    ap.add_argument("--job-rounds", type=int, default=1, help="alternating rounds of the job comparison")
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
    for arch in args.archs.split(","):
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
    job_ratio = compare_jobs(args)
    print(f"ratio={job_ratio:.3f}")


def outputs_in(d: Path) -> FoldOutputs:
    return FoldOutputs(
        d / "model.pt", d / "history.tsv", d / "predictions.tsv", d / "curve.png", d / "state.pt"
    )


def demo_config(args: argparse.Namespace) -> TrainConfig:
    """config/config.yaml's training settings (ResNet18, batch 32, BatchNorm re-estimation) on CPU,
    for ``--epochs`` epochs, checkpoints as the demo run writes them (train.checkpoint_minutes)."""
    import yaml

    block = yaml.safe_load((Path(__file__).resolve().parents[1] / "config" / "config.yaml").read_text())[
        "train"
    ]
    block = dict(block, epochs=args.epochs, threads=args.threads, device="cpu")
    return TrainConfig.from_dict(block)


def compare_jobs(args: argparse.Namespace) -> float:
    """Sections 2 and 3 of the module docstring; prints stacked_ratio= and returns train_fold's ratio."""
    cfg = demo_config(args)
    k = 5
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        # the demo's shape: 80 patients, about a quarter malignant, 3 slices, 1-2 copies, 5 folds
        files, folds = write_cohort(root / "patches", n_patients=80, copies=1)
        folds["fold"] = [1 + i % k for i in range(len(folds))]
        times: dict[str, list[float]] = {"sequential": [], "stacked": [], "bare": []}
        images = 0
        for r in range(args.job_rounds):
            order = ("sequential", "stacked", "bare") if r % 2 == 0 else ("bare", "stacked", "sequential")
            for which in order:
                t0 = time.perf_counter()
                if which == "sequential":
                    summaries = [
                        train_fold(files, folds, f, outputs_in(root / f"seq{r}_{f}"), cfg)
                        for f in range(1, k + 1)
                    ]
                    images = sum(s["n_train"] * s["epochs_run"] for s in summaries)
                    first = summaries[0]
                elif which == "stacked":
                    outs = {f: outputs_in(root / f"stk{r}_{f}") for f in range(1, k + 1)}
                    train_folds_stacked(files, folds, range(1, k + 1), outs, root / f"stk{r}.pt", cfg)
                else:
                    if not images:
                        continue  # the bare loop runs as many images as train_fold's first fold did
                    n = first["n_train"] * first["epochs_run"]
                    torch.manual_seed(0)
                    model = build_model("resnet18", load_pretrained=False).to(
                        memory_format=torch.channels_last
                    )
                    opt = make_optimizer(model, cfg, torch.device("cpu"))
                    x = torch.randn(first["n_train"], 6, 64, 64).contiguous(memory_format=torch.channels_last)
                    y = (torch.rand(first["n_train"]) < 0.3).float()
                    for _ in range(first["epochs_run"]):
                        bare_train(model, opt, x, y, cfg.batch_size)
                    times["bare_images"] = [n]
                times[which].append(time.perf_counter() - t0)
            if r == 0:
                times["first_fold"] = [first["seconds"]]
    seq, stk = float(np.min(times["sequential"])), float(np.min(times["stacked"]))
    fold_ips = first["n_train"] * first["epochs_run"] / times["first_fold"][0]
    bare_ips = times["bare_images"][0] / float(np.min(times["bare"]))
    print(
        f"train_fold job (resnet18, {cfg.epochs} epoch(s), batch {cfg.batch_size}, validation, a checkpoint "
        f"per epoch, BatchNorm re-estimation, predictions, outputs; {first['n_train']} training samples): "
        f"{fold_ips:.1f} images/s; bare loop over as many images {bare_ips:.1f} images/s"
    )
    print(
        f"demo's {k} folds ({images} training images in all): sequential train_fold jobs {seq:.1f} s, "
        f"stacked (folds_per_job: all, forward {resolve_forward(cfg.stacked_forward, torch.device('cpu'))}) "
        f"{stk:.1f} s (best of {args.job_rounds})"
    )
    print(f"stacked_ratio={seq / stk:.3f}")
    return fold_ips / bare_ips


if __name__ == "__main__":
    main()
