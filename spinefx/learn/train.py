"""One fold of the paper's training protocol: ResNet + 1x1 mixing conv, BCE-with-logits, Adam
(lr 1e-4, betas 0.5/0.999, L2 via weight decay), batch 32, early stopping on an inner validation
split, best checkpoint kept.

A fold is the job users send to a GPU node, so it is built to be interrupted: at the end of an epoch
a resumable checkpoint (model, optimiser, RNG states, early-stopping state with the best weights) is
written to the caller's state path when ``checkpoint_minutes`` have passed since the last one, and at
once when SLURM (or anyone) sends SIGTERM or SIGUSR1, after which the job exits with an error that
says so. A rerun continues from it to the very same result (bitwise on CPU). The per-epoch shuffle
comes from a generator seeded by (seed, fold, epoch), so resuming needs no generator state at all.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import hashlib
import json
import math
import os
import random
import signal
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.swa_utils import update_bn

from spinefx.atomic import atomic_path
from spinefx.errors import SpinefxError
from spinefx.learn.dataset import FoldData, iterate_batches, load_fold_data
from spinefx.learn.model import ARCHS, build_model, pretrained_source
from spinefx.settings import section_defaults

STATE_VERSION = 1
# Config fields that may change between a killed run and its rerun without invalidating the state:
# they change where/how fast it runs, not what it computes (threads may change CPU rounding).
_NOT_HASHED = {
    "threads",
    "device",
    "keep_state",
    "cuda_graphs",
    "checkpoint_minutes",
    "require_pretrained",
    "folds_per_job",
    "stacked_forward",
}


_DEFAULTS = section_defaults("train")  # the config schema: the one statement of every default


@dataclass
class TrainConfig:
    """Training settings: the ``train:`` block of the config, defaults from the config schema (the
    paper's protocol; config/README.md says what each field does)."""

    arch: str = _DEFAULTS["arch"]
    epochs: int = _DEFAULTS["epochs"]
    batch_size: int = _DEFAULTS["batch_size"]
    lr: float = _DEFAULTS["lr"]
    betas: tuple[float, float] = tuple(_DEFAULTS["betas"])
    weight_decay: float = _DEFAULTS["weight_decay"]  # Adam's L2 term
    patience: int = _DEFAULTS["patience"]
    min_delta: float = _DEFAULTS["min_delta"]
    val_fraction: float = _DEFAULTS["val_fraction"]
    seed: int = _DEFAULTS["seed"]
    threads: int | None = _DEFAULTS["threads"]  # None leaves torch's default
    device: str = _DEFAULTS["device"]
    bn_recalibrate: bool = _DEFAULTS["bn_recalibrate"]
    bn_recalibrate_samples: int = _DEFAULTS["bn_recalibrate_samples"]
    pretrained_weights: Path | None = _DEFAULTS["pretrained_weights"]
    amp: bool = _DEFAULTS["amp"]
    channels_last: bool = _DEFAULTS["channels_last"]
    eval_batch_size: int = _DEFAULTS["eval_batch_size"]
    keep_state: bool = _DEFAULTS["keep_state"]
    cuda_graphs: bool = _DEFAULTS["cuda_graphs"]
    checkpoint_minutes: float = _DEFAULTS["checkpoint_minutes"]  # 0: after every epoch
    require_pretrained: bool = _DEFAULTS["require_pretrained"]
    dropout: float = _DEFAULTS["dropout"]  # before the final linear layer; 0: none
    folds_per_job: int | str = _DEFAULTS["folds_per_job"]  # 1 or "all" (spinefx.learn.stacked)
    stacked_forward: str = _DEFAULTS["stacked_forward"]

    def __post_init__(self) -> None:
        self.betas = tuple(float(b) for b in self.betas)  # type: ignore[assignment]
        if self.pretrained_weights is not None:
            self.pretrained_weights = Path(self.pretrained_weights)
        problems = []
        if self.arch not in ARCHS:
            problems.append(f"arch must be one of {ARCHS}")
        if self.device not in ("auto", "cpu", "cuda"):
            problems.append("device must be auto, cpu or cuda")
        if self.epochs < 1 or self.patience < 1:
            problems.append("epochs and patience must be >= 1")
        if self.checkpoint_minutes < 0:
            problems.append("checkpoint_minutes must be >= 0")
        if not 0.0 <= self.dropout < 1.0:
            problems.append("dropout must be in [0, 1)")
        if self.batch_size < 2 or self.eval_batch_size < 1:
            problems.append("batch_size must be >= 2")
        if not 0.0 <= self.val_fraction < 1.0:
            problems.append("val_fraction must be in [0, 1)")
        if len(self.betas) != 2:
            problems.append("betas must be two numbers")
        if self.folds_per_job not in (1, "all"):
            problems.append("folds_per_job must be 1 or all")
        if self.stacked_forward not in ("auto", "vmap", "loop"):
            problems.append("stacked_forward must be auto, vmap or loop")
        if self.threads is not None and self.threads < 1:
            problems.append("threads must be >= 1")
        if problems:
            raise SpinefxError("invalid train config: " + "; ".join(problems) + ".")

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TrainConfig:
        """Build from the config's ``train:`` mapping; unknown keys are an error (typos must not be
        silently ignored in a protocol that takes hours)."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise SpinefxError(
                f"unknown train config keys {unknown}.",
                fix=f"use only {sorted(known)} (see config/README.md)",
            )
        return cls(**dict(d))

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly copy (paths as strings, tuples as lists)."""
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d["betas"] = list(self.betas)
        d["pretrained_weights"] = None if self.pretrained_weights is None else str(self.pretrained_weights)
        return d


def _log(fold: int, message: str) -> None:
    print(f"[train fold {fold}] {message}", file=sys.stderr, flush=True)


def resolve_device(device: str) -> torch.device:
    """'auto' -> cuda when available, else cpu. 'cuda' (the paper's protocol) on a node without a
    usable GPU stops the job at its start, saying what to check, rather than training for days on
    the CPU."""
    if device == "cuda" and not torch.cuda.is_available():
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        shown = "unset" if visible is None else repr(visible)
        build = f"built with CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
        raise SpinefxError(
            f"train.device is cuda but this node has no usable CUDA GPU: torch.cuda.is_available() is "
            f"false (torch {torch.__version__}, {build}; CUDA_VISIBLE_DEVICES={shown}).",
            fix="run the training job on a GPU node (profiles/slurm asks for one with --gpus=1); there, "
            "`nvidia-smi` must list the GPU (NVIDIA driver loaded) and CUDA_VISIBLE_DEVICES must not be "
            "empty or name a missing GPU; in an apptainer/singularity container pass `--nv` (Snakemake: "
            "--apptainer-args '--nv'); torch must be a CUDA build. Or set train.device: auto (or cpu) to "
            "train on the CPU",
        )
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(device)


def check_pretrained(cfg: TrainConfig) -> dict[str, str] | None:
    """The ImageNet weights a job starts from (``{"path", "sha256"}``), or None for random weights.
    With ``require_pretrained`` (the paper initialised from ImageNet) finding none stops the job at
    its start."""
    source = pretrained_source(cfg.arch, cfg.pretrained_weights)
    if source is None and cfg.require_pretrained:
        from spinefx.learn.model import TORCHVISION_WEIGHT_FILES, torch_hub_checkpoints

        names = " or ".join(TORCHVISION_WEIGHT_FILES[cfg.arch])
        raise SpinefxError(
            f"train.require_pretrained is true but no ImageNet weights for {cfg.arch} were found: "
            f"train.pretrained_weights is not set and {torch_hub_checkpoints()} holds no {names}.",
            fix="set train.pretrained_weights to a torchvision ImageNet state-dict file of "
            f"{cfg.arch} (nothing is downloaded), or copy it into that cache folder (TORCH_HOME); or set "
            "train.require_pretrained: false to train from random weights",
        )
    return source


def _autocast(device: torch.device, amp: bool):
    if device.type == "cuda" and amp:
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _format(x: torch.Tensor, channels_last: bool) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def make_optimizer(model: nn.Module, cfg: TrainConfig, device: torch.device) -> torch.optim.Optimizer:
    """Adam as in the paper; the fused kernel on CUDA (one launch instead of one per tensor), and
    capturable when the whole step is replayed as a CUDA graph."""
    kwargs: dict[str, bool] = {"foreach": False}
    if device.type == "cuda":
        kwargs = {"fused": True, "capturable": bool(cfg.cuda_graphs)}
    return torch.optim.Adam(
        model.parameters(), lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay, **kwargs
    )


def train_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    xb: torch.Tensor,
    yb: torch.Tensor,
    *,
    device: torch.device,
    amp: bool,
    channels_last: bool,
) -> torch.Tensor:
    """One optimiser step on a batch already on ``device``; returns the batch's mean loss as a
    detached tensor (no host sync, so the GPU never waits for Python)."""
    with _autocast(device, amp):
        logits = model(_format(xb, channels_last))
    loss = F.binary_cross_entropy_with_logits(logits.float(), yb)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.detach()


def train_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    batch_size: int,
    generator: torch.Generator,
    *,
    device: torch.device,
    amp: bool,
    channels_last: bool,
    step: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
) -> tuple[float, int]:
    """One pass over (x, y) in a seeded random order; returns (mean loss, samples seen). ``step``
    replaces :func:`train_step` (e.g. a :class:`GraphedStep`)."""
    model.train()
    total = torch.zeros((), device=device)
    seen = 0
    for xb, yb in iterate_batches(x, y, batch_size, generator, min_last=2):
        if step is not None:
            loss = step(xb, yb)
        else:
            loss = train_step(model, optimizer, xb, yb, device=device, amp=amp, channels_last=channels_last)
        total += loss * len(yb)
        seen += len(yb)
    return (total.item() / seen if seen else float("nan")), seen


class GraphedStep:
    """The same optimiser step as :func:`train_step`, replayed as one CUDA graph for full batches.

    Why: at 64x64 a ResNet50 step is a few hundred tiny kernels, so at batch 32 an eager step is
    bound by Python/launch overhead, not by the GPU. The first ``warmup`` full batches run eagerly
    on a side stream (real training steps, as the capture recipe requires); the next full batch is
    captured and then replayed; partial batches run eagerly. Needs a capturable optimiser
    (``make_optimizer`` with ``cuda_graphs``) and a constant learning rate.
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        batch_size: int,
        *,
        device: torch.device,
        amp: bool,
        channels_last: bool,
        warmup: int = 3,
    ) -> None:
        self.model, self.optimizer, self.batch_size = model, optimizer, batch_size
        self.kw = {"device": device, "amp": amp, "channels_last": channels_last}
        self.warmup = warmup
        self.graph: torch.cuda.CUDAGraph | None = None

    def _eager(self, xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        return train_step(self.model, self.optimizer, xb, yb, **self.kw)

    def __call__(self, xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        if len(yb) != self.batch_size:
            return self._eager(xb, yb)
        if self.graph is None and self.warmup > 0:
            self.warmup -= 1
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                loss = self._eager(xb, yb)
            torch.cuda.current_stream().wait_stream(side)
            return loss
        if self.graph is None:
            self.static_x, self.static_y = xb.clone(), yb.clone()
            self.graph = torch.cuda.CUDAGraph()
            self.optimizer.zero_grad(set_to_none=True)
            with torch.cuda.graph(self.graph):
                ctx = torch.autocast(
                    "cuda", dtype=torch.bfloat16, enabled=self.kw["amp"], cache_enabled=False
                )
                with ctx:
                    logits = self.model(_format(self.static_x, self.kw["channels_last"]))
                self.static_loss = F.binary_cross_entropy_with_logits(logits.float(), self.static_y)
                self.static_loss.backward()
                self.optimizer.step()
        else:
            self.static_x.copy_(xb)
            self.static_y.copy_(yb)
        self.graph.replay()
        return self.static_loss.detach().clone()


@torch.no_grad()
def predict_logits(
    model: nn.Module,
    x: torch.Tensor,
    batch_size: int = 256,
    *,
    device: torch.device | None = None,
    amp: bool = True,
    channels_last: bool = True,
) -> torch.Tensor:
    """Logits [n] (float32, on CPU) in eval mode, in the stored order."""
    device = device or next(model.parameters()).device
    model.eval()
    out = [torch.empty(0)]
    for xb, _ in iterate_batches(x, torch.empty(len(x)), batch_size):
        with _autocast(device, amp):
            out.append(model(_format(xb.to(device), channels_last)).float().cpu())
    return torch.cat(out)


def evaluate_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int, **kw: Any) -> float:
    """Mean BCE-with-logits over (x, y); NaN when there are no samples."""
    if len(y) == 0:
        return float("nan")
    logits = predict_logits(model, x, batch_size, **kw)
    return float(F.binary_cross_entropy_with_logits(logits, y.float().cpu()))


@torch.no_grad()
def recalibrate_batchnorm(
    model: nn.Module,
    x: torch.Tensor,
    batch_size: int,
    max_samples: int,
    seed: int,
    *,
    device: torch.device,
    amp: bool,
    channels_last: bool,
) -> int:
    """Re-estimate every BatchNorm's running mean/var as an equal-weight average over batches of
    training samples, with the weights frozen. With few optimiser steps per epoch the running
    statistics lag behind the weights; this removes that lag. The averaging is torch's own
    ``torch.optim.swa_utils.update_bn``; this function only chooses the samples (a seeded subset,
    batches of at least 2) and applies the run's autocast and memory format. Returns the samples used."""
    if not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()) or len(x) < 2:
        return 0
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))[:max_samples]
    batches = [order[s : s + batch_size] for s in range(0, len(order), batch_size)]
    batches = [idx for idx in batches if len(idx) >= 2]
    inputs = (_format(x.index_select(0, idx.to(x.device)), channels_last) for idx in batches)
    with _autocast(device, amp):
        update_bn(inputs, model)
    model.eval()
    return sum(len(idx) for idx in batches)


def _rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: Mapping[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _epoch_generator(seed: int, fold: int, epoch: int) -> torch.Generator:
    return torch.Generator().manual_seed((seed * 1_000_003 + fold * 10_007 + epoch) % (2**63))


def _cpu_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True).contiguous() for k, v in model.state_dict().items()}


def _run_hash(cfg: TrainConfig, data: FoldData) -> str:
    hashed = {k: v for k, v in cfg.to_dict().items() if k not in _NOT_HASHED}
    text = json.dumps({"v": STATE_VERSION, "cfg": hashed, "data": data.fingerprint()}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def _save_torch(obj: Any, final: Path) -> None:
    with atomic_path(final) as tmp:
        torch.save(obj, tmp)


def _write_curve(history: list[dict[str, float]], fold: int, final: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5), dpi=100)
    epochs = [r["epoch"] for r in history]
    ax.plot(epochs, [r["train_loss"] for r in history], marker="o", ms=3, label="train")
    ax.plot(epochs, [r["val_loss"] for r in history], marker="o", ms=3, label="validation (early stopping)")
    finite = [r for r in history if math.isfinite(r["val_loss"])]
    if finite:
        best = min(finite, key=lambda r: r["val_loss"])
        ax.axvline(best["epoch"], color="grey", ls=":", lw=1, label=f"best epoch {best['epoch']}")
    ax.set_xlabel("epoch")
    ax.set_ylabel("BCE loss")
    ax.set_title(f"fold {fold}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(final) as tmp:
        fig.savefig(tmp)
    plt.close(fig)


def load_model(model_path: Path, device: str | torch.device = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """A trained ``model.pt`` as an eval-mode module, plus its metadata (arch, config, fold...)."""
    ckpt = torch.load(Path(model_path), map_location="cpu", weights_only=False)
    dropout = ckpt.get("config", {}).get("dropout", 0.0)
    model = build_model(ckpt["arch"], in_channels=ckpt["in_channels"], load_pretrained=False, dropout=dropout)
    model.load_state_dict(ckpt["state_dict"])
    model.to(device).eval()
    return model, {k: v for k, v in ckpt.items() if k != "state_dict"}


@dataclass(frozen=True)
class FoldOutputs:
    """Where one fold's files go, every path given by the caller (the rule's ``output:``), so the
    library never invents a file name. ``state`` is the resumable checkpoint, deleted after a
    successful run unless ``keep_state``."""

    model: Path
    history: Path
    predictions: Path
    curve: Path
    state: Path

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            object.__setattr__(self, f.name, Path(getattr(self, f.name)))


@contextlib.contextmanager
def torch_settings(cfg: TrainConfig, device: torch.device):
    """Threads and determinism on CPU (bitwise-reproducible reruns), cuDNN autotuning and TF32 on
    CUDA; the previous process-wide settings come back afterwards."""
    prev_threads = torch.get_num_threads()
    prev_det = torch.are_deterministic_algorithms_enabled()
    prev_bench = torch.backends.cudnn.benchmark
    try:
        if device.type == "cpu":
            if cfg.threads:
                torch.set_num_threads(cfg.threads)
            torch.use_deterministic_algorithms(True, warn_only=True)
        else:
            torch.backends.cudnn.benchmark = True
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        yield
    finally:
        torch.set_num_threads(prev_threads)
        torch.use_deterministic_algorithms(prev_det)
        torch.backends.cudnn.benchmark = prev_bench


def fold_seed(cfg: TrainConfig, fold: int) -> int:
    """The seed of a fold's initialisation (and BatchNorm re-estimation subset)."""
    return cfg.seed * 1000 + fold


def init_model(cfg: TrainConfig, fold: int, in_channels: int) -> nn.Module:
    """A fold's freshly initialised model on the CPU, from the fold's own seed, so every way of
    training a fold (alone or stacked with others) starts from the very same weights."""
    seed = fold_seed(cfg, fold)
    torch.manual_seed(seed)
    np.random.seed(seed % (2**32))
    random.seed(seed)
    return build_model(cfg.arch, cfg.pretrained_weights, in_channels=in_channels, dropout=cfg.dropout)


def log_fold_data(fold: int, data: FoldData, device: torch.device) -> None:
    """One line per fold saying what it trains, validates and predicts on."""
    _log(
        fold,
        f"{len(data.train)} training samples ({int(data.train.augmented.sum())} augmented) from "
        f"{len(set(data.train.patient_ids))} patients; early stopping on {len(data.val)} samples of "
        f"{len(set(data.val.patient_ids))} patients; held out {len(data.test)} samples of "
        f"{len(set(data.test.patient_ids))} patients; device {device}, threads {torch.get_num_threads()}",
    )
    if len(data.val) == 0:
        _log(fold, "no early-stopping patients (val_fraction 0 or too few patients): keeping the last epoch")


def check_finite(fold: int, epoch: int, train_loss: float, val_loss: float, n_val: int, state: Path) -> None:
    """A non-finite loss stops the run with the last good checkpoint kept."""
    if not math.isfinite(train_loss) or (n_val and not math.isfinite(val_loss)):
        kept = f"the last good checkpoint ({state}) is kept" if state.is_file() else "no epoch"
        raise SpinefxError(
            f"fold {fold}, epoch {epoch}: loss is not finite (train {train_loss}, validation "
            f"{val_loss}); training stopped, {kept}.",
            fix="lower train.lr, or check the patches for extreme values",
        )


def update_best(
    best: dict[str, Any],
    val_loss: float,
    n_val: int,
    epoch: int,
    min_delta: float,
    state: Callable[[], dict[str, torch.Tensor]],
) -> bool:
    """Early-stopping bookkeeping after an epoch; ``state`` (a callable) gives the weights to keep
    when this epoch is the best so far. Returns whether it was."""
    improved = n_val == 0 or val_loss < best["val_loss"] - min_delta
    if improved:
        best.update(state=state(), val_loss=val_loss, epoch=epoch, bad_epochs=0)
    else:
        best["bad_epochs"] += 1
    return improved


STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)


class TrainingInterrupted(SpinefxError):
    """A stop signal arrived: the checkpoint is on disk and the job exits non-zero, so that a rerun
    (Snakemake's ``--retries``, or the same command again) resumes it."""


class CheckpointPolicy:
    """When a training job writes its resumable checkpoint (~380 MB for a ResNet50 fold, k times that
    for a stacked job): at the end of an epoch once ``minutes`` have passed since the last one (0:
    after every epoch), and at the end of the epoch in which a stop signal arrived. ``clock`` (seconds,
    monotonic) is injectable so tests need not sleep."""

    def __init__(self, minutes: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.seconds = 60.0 * float(minutes)
        self.clock = clock
        self.last = clock()
        self.stop_signal: int | None = None

    def request_stop(self, signum: int, frame: Any = None) -> None:
        """The signal handler: only sets a flag; the loop acts on it at the next safe point."""
        self.stop_signal = signum

    def due(self) -> bool:
        """Whether the epoch that just ended must be checkpointed."""
        return self.stop_signal is not None or self.clock() - self.last >= self.seconds

    def written(self) -> None:
        """Restart the interval after a checkpoint was written."""
        self.last = self.clock()

    def interrupted(self, what: str, epoch: int, state: Path) -> TrainingInterrupted | None:
        """The error to raise when a stop signal arrived (None otherwise), once the checkpoint of
        ``epoch`` is at ``state``."""
        if self.stop_signal is None:
            return None
        name = signal.Signals(self.stop_signal).name
        return TrainingInterrupted(
            f"{what}: stopped by {name} after epoch {epoch}; the resumable checkpoint is written.",
            path=state,
            fix="rerun the job (the same snakemake command, or let --retries resubmit it): training "
            f"resumes after epoch {epoch} and ends with the same model as an uninterrupted run",
        )


@contextlib.contextmanager
def stop_signals(policy: CheckpointPolicy):
    """SIGTERM and SIGUSR1 (SLURM's warning before a time limit, ``--signal``) set the policy's flag
    while training runs; the previous handlers come back afterwards. Signal handlers can only be set
    from the main thread: elsewhere this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, policy.request_stop) for s in STOP_SIGNALS}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def train_fold(
    patch_files: Mapping[str, Path],
    folds: pd.DataFrame,
    fold: int,
    outputs: FoldOutputs,
    cfg: TrainConfig,
    *,
    on_epoch_end: Callable[[int, dict[str, float]], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> dict[str, Any]:
    """Train on the patients of ``folds`` outside ``fold`` and predict the held-out fold's original
    patches. Writes ``outputs`` (model, history, predictions, curve; each atomically); resumes from
    ``outputs.state`` when its config+input hash matches. The checkpoint is written as
    :class:`CheckpointPolicy` says (``clock`` is its clock); after SIGTERM/SIGUSR1 the job writes it
    at the end of the current epoch and raises :class:`TrainingInterrupted`.
    ``on_epoch_end(epoch, history_row)`` runs after each epoch, once its checkpoint (when one was
    due) is on disk. Returns a summary (best epoch, losses, sample counts, images/s)."""
    device = resolve_device(cfg.device)
    pretrained = check_pretrained(cfg)
    policy = CheckpointPolicy(cfg.checkpoint_minutes, clock)
    with torch_settings(cfg, device), stop_signals(policy):
        return _train_fold(patch_files, folds, fold, outputs, cfg, device, on_epoch_end, policy, pretrained)


def _train_fold(
    patch_files, folds, fold, outputs, cfg, device, on_epoch_end, policy, pretrained
) -> dict[str, Any]:
    t_start = time.perf_counter()
    state_path = outputs.state
    data = load_fold_data(patch_files, folds, fold, cfg.val_fraction, cfg.seed)
    log_fold_data(fold, data, device)
    run_hash = _run_hash(cfg, data)

    model = init_model(cfg, fold, int(data.train.x.shape[1])).to(device)
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    optimizer = make_optimizer(model, cfg, device)
    kw = {"device": device, "amp": cfg.amp, "channels_last": cfg.channels_last}

    epoch, history = 0, []
    best = {"state": _cpu_state(model), "val_loss": math.inf, "epoch": 0, "bad_epochs": 0}
    if state_path.is_file():
        ckpt = torch.load(state_path, map_location="cpu", weights_only=False)
        if ckpt.get("hash") != run_hash:
            _log(fold, f"config or inputs changed since {state_path} was written: starting fresh")
            state_path.unlink()
        else:
            model.load_state_dict(ckpt["model"])
            optimizer.load_state_dict(ckpt["optimizer"])
            epoch, history, best = ckpt["epoch"], ckpt["history"], ckpt["best"]
            _set_rng_state(ckpt["rng"])
            _log(fold, f"resuming after epoch {epoch} from {state_path}")

    def save_state() -> None:
        payload = {"hash": run_hash, "epoch": epoch, "model": model.state_dict()}
        payload |= {"optimizer": optimizer.state_dict(), "history": history, "best": best}
        _save_torch(payload | {"rng": _rng_state()}, state_path)
        policy.written()
        _log(fold, f"checkpoint after epoch {epoch} written to {state_path}")

    train, val = data.train.to(device), data.val.to(device)
    step = None
    if cfg.cuda_graphs and device.type == "cuda":
        step = GraphedStep(model, optimizer, cfg.batch_size, **kw)
    steps_images, steps_seconds = 0, 0.0
    while epoch < cfg.epochs and best["bad_epochs"] < cfg.patience:
        epoch += 1
        t0 = time.perf_counter()
        g = _epoch_generator(cfg.seed, fold, epoch)
        train_loss, seen = train_epoch(model, optimizer, train.x, train.y, cfg.batch_size, g, step=step, **kw)
        t_train = time.perf_counter() - t0
        val_loss = evaluate_loss(model, val.x, val.y, cfg.eval_batch_size, **kw)
        check_finite(fold, epoch, train_loss, val_loss, len(val), state_path)
        seconds = time.perf_counter() - t0
        steps_images += seen
        steps_seconds += t_train
        # the best weights are copied (in memory) only when they improve; the checkpoint carries them
        improved = update_best(best, val_loss, len(val), epoch, cfg.min_delta, lambda: _cpu_state(model))
        row = {
            "epoch": epoch,
            "train_loss": train_loss,
            "val_loss": val_loss,
            "lr": optimizer.param_groups[0]["lr"],
            "seconds": seconds,
        }
        history.append(row)
        saved = policy.due()
        if saved:
            save_state()
        _log(
            fold,
            f"epoch {epoch}/{cfg.epochs} train_loss {train_loss:.4f} val_loss {val_loss:.4f} "
            f"images/s {seen / t_train:.1f} seconds {seconds:.1f}" + (" *best" if improved else ""),
        )
        if on_epoch_end is not None:
            on_epoch_end(epoch, dict(row))
        if policy.stop_signal is not None:  # it may have come during on_epoch_end
            if not saved:
                save_state()
            raise policy.interrupted(f"fold {fold}", epoch, state_path)
    del train, val
    summary = finish_fold(model, best, history, data, fold, cfg, device, outputs, pretrained=pretrained)
    if not cfg.keep_state:
        remove_state(outputs.state)
    summary["train_images_per_s"] = steps_images / steps_seconds if steps_seconds else float("nan")
    summary["seconds"] = time.perf_counter() - t_start
    _log(
        fold,
        f"done: best epoch {best['epoch']} (val_loss {best['val_loss']:.4f}), {summary['seconds']:.0f} s",
    )
    return summary


def remove_state(state: Path) -> None:
    """Drop a finished job's resumable checkpoint (and its folder when that is left empty)."""
    with contextlib.suppress(OSError):
        os.remove(state)
        Path(state).parent.rmdir()


def finish_fold(
    model: nn.Module,
    best: Mapping[str, Any],
    history: list[dict[str, float]],
    data: FoldData,
    fold: int,
    cfg: TrainConfig,
    device: torch.device,
    outputs: FoldOutputs,
    *,
    pretrained: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """After the last epoch: the best weights back into ``model`` (on ``device``), BatchNorm
    re-estimated when asked, the held-out predictions, and every output file written; the same
    code whether the fold was trained alone or stacked. ``pretrained`` (path and SHA-256 of the
    ImageNet weights the fold started from, or None) goes into model.pt. Returns the summary's
    counts."""
    if best["bad_epochs"] >= cfg.patience:
        _log(fold, f"early stop: no better validation loss for {cfg.patience} epochs")
    kw = {"device": device, "amp": cfg.amp, "channels_last": cfg.channels_last}
    model.load_state_dict(best["state"])
    if cfg.bn_recalibrate:
        train_x = data.train.x.to(device)
        n = recalibrate_batchnorm(
            model, train_x, cfg.eval_batch_size, cfg.bn_recalibrate_samples, fold_seed(cfg, fold), **kw
        )
        del train_x
        _log(fold, f"BatchNorm statistics re-estimated on {n} training samples with the best weights")
    final_state = _cpu_state(model)
    test = data.test
    probs = torch.sigmoid(predict_logits(model, test.x, cfg.eval_batch_size, **kw)).numpy()
    _save_torch(
        {
            "state_dict": final_state,
            "arch": cfg.arch,
            "in_channels": int(data.train.x.shape[1]),
            "config": cfg.to_dict(),
            "fold": fold,
            "best_epoch": best["epoch"],
            "best_val_loss": best["val_loss"],
            "bn_recalibrated": cfg.bn_recalibrate,
            "pretrained": None if pretrained is None else dict(pretrained),
        },
        outputs.model,
    )
    hist = pd.DataFrame(history, columns=["epoch", "train_loss", "val_loss", "lr", "seconds"])
    with atomic_path(outputs.history) as tmp:
        hist.to_csv(tmp, sep="\t", index=False, float_format="%.6g")
    preds = pd.DataFrame({"patient_id": test.patient_ids, "slice": test.slices, "prob": probs.astype(float)})
    with atomic_path(outputs.predictions) as tmp:
        preds.to_csv(tmp, sep="\t", index=False, float_format="%.8g")
    _write_curve(history, fold, outputs.curve)
    return {
        "fold": fold,
        "device": str(device),
        "epochs_run": len(history),
        "best_epoch": best["epoch"],
        "best_val_loss": best["val_loss"],
        "n_train": len(data.train),
        "n_val": len(data.val),
        "n_test": len(data.test),
    }


def copy_config(cfg: TrainConfig, **changes: Any) -> TrainConfig:
    """A changed copy of ``cfg`` (validated again)."""
    return dataclasses.replace(copy.deepcopy(cfg), **changes)
