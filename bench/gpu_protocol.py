"""How long would the paper's full protocol take on this machine's GPU?

Self-contained for a CUDA node: needs only torch and torchvision (spinefx is used when it is
importable from this checkout, so the measured step is the project's own train_step; otherwise an
identical local copy). No install step, < 5 minutes. Measures training images/s of ResNet50 at
64x64, bf16 autocast, channels_last, data resident on the GPU, seeded-permutation batches, at batch
32 (the paper's) and a larger batch; then projects the paper's protocol:

  190 patients = 140 benign x (1 + 20 copies) + 50 malignant x (1 + 40 copies), 3 samples each
  -> 14,970 samples; 9/10 of the patients train in each of 10 folds, for 100 epochs (no early stop).

    python bench/gpu_protocol.py [--seconds 20] [--large-batch 256]

Each batch size runs eagerly and, on CUDA, with the whole step replayed as a CUDA graph
(train.cuda_graphs). On a machine without CUDA it runs a tiny CPU version and says so. Last line:
protocol_minutes=<x> (batch 32, the paper's setting; the faster of eager and graphed).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
import torchvision

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
try:
    from spinefx.learn.model import build_model
    from spinefx.learn.train import GraphedStep, TrainConfig, make_optimizer, train_step

    SOURCE = "spinefx.learn.train.train_step"
except ImportError:  # a bare copy of the project on a node without the package's deps
    SOURCE = "local copy of the project's step"

    def build_model(arch: str = "resnet50", in_channels: int = 6, **_: object) -> torch.nn.Module:
        net = getattr(torchvision.models, arch)(weights=None)
        net.fc = torch.nn.Linear(net.fc.in_features, 1)
        return torch.nn.Sequential(torch.nn.Conv2d(in_channels, 3, 1), net, torch.nn.Flatten(0))

    def make_optimizer(model, cfg, device):
        kw = {"fused": True} if device.type == "cuda" else {}
        return torch.optim.Adam(model.parameters(), lr=1e-4, betas=(0.5, 0.999), weight_decay=1e-4, **kw)

    def train_step(model, optimizer, xb, yb, *, device, amp, channels_last):
        ctx = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda" and amp)
        with ctx:
            logits = model(xb.contiguous(memory_format=torch.channels_last) if channels_last else xb)
        loss = F.binary_cross_entropy_with_logits(logits.float(), yb)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss.detach()

    TrainConfig = None
    GraphedStep = None

N_SAMPLES = (140 * (1 + 20) + 50 * (1 + 40)) * 3  # 14,970
TRAIN_PER_FOLD = round(N_SAMPLES * 9 / 10)
FOLDS, EPOCHS = 10, 100


def measure(
    batch: int, seconds: float, device: torch.device, n_data: int, graphs: bool = False
) -> tuple[float, int]:
    """Images/s of the training step over resident data, after warm-up (cudnn autotuning)."""
    torch.manual_seed(0)
    model = build_model("resnet50", in_channels=6, load_pretrained=False) if TrainConfig else build_model()
    model.to(device).to(memory_format=torch.channels_last)
    cfg = TrainConfig(arch="resnet50", cuda_graphs=graphs) if TrainConfig else None
    opt = make_optimizer(model, cfg, device)
    kw = {"device": device, "amp": True, "channels_last": True}
    graphed = GraphedStep(model, opt, batch, **kw) if graphs else None
    x = torch.randn(n_data, 6, 64, 64, device=device)
    y = (torch.rand(n_data, device=device) < 0.5).float()
    g = torch.Generator().manual_seed(0)

    def steps(k: int) -> torch.Tensor:
        total = torch.zeros((), device=device)
        for _ in range(k):
            idx = torch.randint(0, n_data, (batch,), generator=g).to(device, non_blocking=True)
            xb, yb = x.index_select(0, idx), y.index_select(0, idx)
            total += graphed(xb, yb) if graphed else train_step(model, opt, xb, yb, **kw)
        return total

    warm = 30 if device.type == "cuda" else 2
    steps(warm).item()
    n, t0 = 0, time.perf_counter()
    chunk = 50 if device.type == "cuda" else 2
    while True:
        steps(chunk).item()  # one sync per chunk, as train_epoch syncs once per epoch
        n += chunk
        if time.perf_counter() - t0 > seconds:
            break
    ips = n * batch / (time.perf_counter() - t0)
    measure.checkpoint_s = checkpoint_seconds(model, opt)
    return ips, n


def checkpoint_seconds(model: torch.nn.Module, opt: torch.optim.Optimizer) -> float:
    """Wall time of one per-epoch checkpoint as train_fold writes it (model, optimiser, best state)."""
    best = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        state = {"model": model.state_dict(), "optimizer": opt.state_dict(), "best": best}
        torch.save(state, Path(tmp) / "checkpoint.pt")
        return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description="project the paper's protocol time from measured images/s")
    ap.add_argument("--seconds", type=float, default=20.0, help="timed seconds per batch size")
    ap.add_argument("--large-batch", type=int, default=256)
    args = ap.parse_args()
    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    if cuda:
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        print(f"GPU: {torch.cuda.get_device_name(0)}; torch {torch.__version__}; step: {SOURCE}")
        batches, seconds, n_data = (32, args.large_batch), args.seconds, TRAIN_PER_FOLD
    else:
        print(f"NOT A GPU: no CUDA device; tiny CPU run only (torch {torch.__version__}; step: {SOURCE})")
        batches, seconds, n_data = (32,), min(args.seconds, 5.0), 256
    print(
        f"protocol: {N_SAMPLES} samples, {TRAIN_PER_FOLD} training samples per fold, "
        f"{FOLDS} folds x {EPOCHS} epochs = {FOLDS * EPOCHS * TRAIN_PER_FOLD / 1e6:.1f} M training images"
    )
    runs = [(b, False) for b in batches]
    if cuda and GraphedStep is not None:
        runs += [(b, True) for b in batches]
    minutes = {}
    for batch, graphs in runs:
        try:
            ips, n_steps = measure(batch, seconds, device, n_data, graphs)
        except Exception as exc:  # noqa: BLE001 - report and go on with the other settings
            print(f"batch {batch} cuda_graphs={graphs}: FAILED: {type(exc).__name__}: {exc}")
            continue
        ckpt_min = FOLDS * EPOCHS * measure.checkpoint_s / 60
        minutes[batch, graphs] = FOLDS * EPOCHS * TRAIN_PER_FOLD / ips / 60 + ckpt_min
        mem = f", peak GPU memory {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB" if cuda else ""
        prec = "bf16" if cuda else "fp32 (CPU)"
        print(
            f"resnet50 64x64 {prec} channels_last batch {batch} cuda_graphs={graphs}: {ips:,.0f} images/s "
            f"over {n_steps} steps{mem}; checkpoint {measure.checkpoint_s:.2f} s/epoch; "
            f"protocol {minutes[batch, graphs]:.1f} min (checkpoints {ckpt_min:.1f} of it)"
        )
    at32 = [m for (b, _), m in minutes.items() if b == 32]
    print("protocol_minutes=" + (f"{min(at32):.1f}" if at32 else "nan"))


if __name__ == "__main__":
    main()
