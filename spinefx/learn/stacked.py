"""All k cross-validation folds trained at once on one device, as one stacked model
(``train.folds_per_job: all``).

Why: at 64x64 and batch 32 a ResNet step is a few hundred tiny kernels, so k fold jobs on a large
GPU are launch-bound k times over, and each job re-reads every patch file. Stacked, one job holds
every fold's data on the device and takes one optimiser step for all folds at a time.

Each fold stays exactly the model a job of its own would train (``train_fold``): the same
initialisation (the fold's seed), the same seeded shuffle and batches per epoch, its own BatchNorm
statistics, its own Adam state and step count, its own early stopping (a stopped fold's weights stop
changing; its best weights are kept). Folds have different training-set sizes, so at a step some
folds have a short last batch or none at all: a fold without a batch is masked out of the optimiser
update, and short batches are never padded (padding would enter BatchNorm's batch statistics).
tests/learn/test_stacked.py checks that weights and predictions equal sequential training's.

Layout: the parameters of all folds live in one ``[k, P]`` tensor (row f = fold f; convolution
weights stored channels-last, each tensor 64-byte aligned), so with vmap the optimiser is one masked
Adam over rows (the loop updates each fold's tensors as torch.optim.Adam would, skipping a [k, P]
gradient pass), in the arithmetic of ``torch.optim.Adam``'s single-tensor path. The forward runs as
``torch.func.vmap(functional_call)`` over the stacked parameters (one batched kernel per layer: the
GPU path) or as a loop calling the same module functionally per fold on views of those rows (the CPU
path, where a vmapped convolution becomes a grouped one that oneDNN runs slower than k separate
convolutions: 3.9 s against 1.8 s for 5 ResNet18 steps on 2 cores). BatchNorm buffers are passed functionally,
stacked ``[k, ...]``, and BatchNorm updates them in place through vmap.
"""

from __future__ import annotations

import copy
import hashlib
import math
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, vmap

from spinefx.errors import SpinefxError
from spinefx.learn.dataset import FoldData, batch_indices, load_folds_data
from spinefx.learn.train import (
    CheckpointPolicy,
    FoldOutputs,
    TrainConfig,
    _autocast,
    _epoch_generator,
    _format,
    _log,
    _rng_state,
    _run_hash,
    _save_torch,
    _set_rng_state,
    check_finite,
    check_pretrained,
    finish_fold,
    init_model,
    log_fold_data,
    remove_state,
    resolve_device,
    stop_signals,
    torch_settings,
    update_best,
)

FORWARDS = ("auto", "vmap", "loop")
_ALIGN = 16  # float32 elements in 64 bytes


def resolve_forward(forward: str, device: torch.device) -> str:
    """``auto`` -> vmap on CUDA, the per-fold loop on CPU."""
    if forward not in FORWARDS:
        raise SpinefxError(f"unknown stacked forward {forward!r}.", fix=f"use one of {FORWARDS}")
    if forward == "auto":
        return "vmap" if device.type == "cuda" else "loop"
    return forward


class StackedFolds:
    """k models of one architecture as one set of stacked parameters and buffers, with a masked
    Adam step. ``models`` give the initial weights (and are left unchanged)."""

    def __init__(self, models: Sequence[nn.Module], cfg: TrainConfig, device: torch.device, forward: str):
        self.k, self.cfg, self.device = len(models), cfg, device
        self.forward = resolve_forward(forward, device)
        self.base = copy.deepcopy(models[0]).to("meta")
        named = [dict(m.named_parameters()) for m in models]
        self.names = list(named[0])
        self.keys = list(models[0].state_dict())
        sizes = [named[0][n].numel() for n in self.names]
        # each parameter starts on a 64-byte boundary, as a tensor of its own would: oneDNN picks
        # its kernels by alignment, and a misaligned copy of a weight rounds differently
        padded = [-(-n // _ALIGN) * _ALIGN for n in sizes]
        self.offsets = [sum(padded[:i]) for i in range(len(sizes))]
        self.shapes = [tuple(named[0][n].shape) for n in self.names]
        p_total = sum(padded)
        self.flat = torch.zeros(self.k, p_total, device=device)
        self.grad = torch.zeros_like(self.flat)
        self.exp_avg = torch.zeros_like(self.flat)
        self.exp_avg_sq = torch.zeros_like(self.flat)
        self.steps = [0] * self.k
        with torch.no_grad():
            for f, params in enumerate(named):
                for i, n in enumerate(self.names):
                    self._view(self.flat, i, f).copy_(params[n])
        self.buffers = {
            n: torch.stack([dict(m.named_buffers())[n].detach() for m in models]).to(device)
            for n, _ in models[0].named_buffers()
        }
        self._make_leaves()

    def _view(self, flat: torch.Tensor, i: int, f: int | None) -> torch.Tensor:
        """Parameter ``i`` of fold ``f`` (or of all folds, stacked, when None) as a view of ``flat``;
        with ``channels_last``, 4-D weights are stored (out, kh, kw, in) and permuted back."""
        a, shape = self.offsets[i], self.shapes[i]
        rows = flat[:, a : a + math.prod(shape)] if f is None else flat[f, a : a + math.prod(shape)]
        lead = (self.k,) if f is None else ()
        if len(shape) == 4 and self.cfg.channels_last:
            o, c, h, w = shape
            v = rows.view(*lead, o, h, w, c)
            return v.permute(0, 1, 4, 2, 3) if f is None else v.permute(0, 3, 1, 2)
        return rows.view(*lead, *shape)

    def _leaf(self, i: int, f: int | None) -> torch.Tensor:
        leaf = self._view(self.flat, i, f).detach().requires_grad_(True)
        if f is None:  # vmap: backward accumulates straight into self.grad, for one Adam over rows
            leaf.grad = self._view(self.grad, i, f)
        return leaf

    def _make_leaves(self) -> None:
        if self.forward == "vmap":
            self.stacked = {n: self._leaf(i, None) for i, n in enumerate(self.names)}
        else:
            self.per_fold = [{n: self._leaf(i, f) for i, n in enumerate(self.names)} for f in range(self.k)]

    def _call(self, params: Mapping[str, torch.Tensor], buffers: Mapping[str, torch.Tensor], x: torch.Tensor):
        return functional_call(self.base, (dict(params), dict(buffers)), (x,))

    def _fold_params(self, f: int) -> dict[str, torch.Tensor]:
        if self.forward == "vmap":
            return {n: v[f] for n, v in self.stacked.items()}
        return self.per_fold[f]

    def step(self, batches: Mapping[int, tuple[torch.Tensor, torch.Tensor]]) -> dict[int, torch.Tensor]:
        """One optimiser step for every fold in ``batches`` (fold index -> (x, y) on the device);
        the other folds are left exactly as they were. Returns each stepped fold's mean loss
        (detached, no host sync)."""
        cfg = self.cfg
        self.base.train()
        if self.forward == "vmap":
            self.grad.zero_()
        else:  # the loop hands each gradient to Adam as autograd made it: no [k, P] pass
            for params in self.per_fold:
                for leaf in params.values():
                    leaf.grad = None
        losses: dict[int, torch.Tensor] = {}
        with _autocast(self.device, cfg.amp):
            if self.forward == "loop":
                for f, (xb, yb) in batches.items():
                    bufs = {n: b[f] for n, b in self.buffers.items()}
                    logits = self._call(self.per_fold[f], bufs, _format(xb, cfg.channels_last))
                    losses[f] = F.binary_cross_entropy_with_logits(logits.float(), yb)
            else:
                by_size: dict[int, list[int]] = {}
                for f, (_, yb) in batches.items():
                    by_size.setdefault(len(yb), []).append(f)
                for group in by_size.values():
                    losses.update(self._vmapped_losses(group, batches))
        total = torch.stack(list(losses.values())).sum()
        with warnings.catch_warnings():  # the grads are views of one [k, P] tensor, by design
            warnings.filterwarnings("ignore", message="grad and param do not obey the gradient layout")
            total.backward()
        self._adam(sorted(batches))
        return {f: loss.detach() for f, loss in losses.items()}

    def _vmapped_losses(self, group: list[int], batches) -> dict[int, torch.Tensor]:
        """Losses of folds whose batches have one size, in one vmapped forward."""
        x = torch.stack([batches[f][0] for f in group])
        y = torch.stack([batches[f][1] for f in group])
        if group == list(range(self.k)):
            params, bufs = self.stacked, self.buffers
        else:
            idx = torch.tensor(group, device=self.device)
            params = {n: v.index_select(0, idx) for n, v in self.stacked.items()}
            bufs = {n: b.index_select(0, idx) for n, b in self.buffers.items()}
        # dropout (train.dropout > 0) draws its own mask per fold; with 0 nothing random runs
        logits = vmap(self._call, randomness="different")(params, bufs, x)
        if bufs is not self.buffers:  # BatchNorm updated the copies: write them back
            for n, b in bufs.items():
                self.buffers[n].index_copy_(0, idx, b)
        per_fold = F.binary_cross_entropy_with_logits(logits.float(), y, reduction="none").mean(1)
        return {f: per_fold[j] for j, f in enumerate(group)}

    @torch.no_grad()
    def _adam(self, folds: list[int]) -> None:
        """``torch.optim.Adam`` (L2 as weight decay, single-tensor arithmetic) on the rows of
        ``folds``; each fold's own step count sets its bias correction."""
        for f in folds:
            self.steps[f] += 1
        if self.forward == "loop":  # per fold and tensor, as torch.optim.Adam(foreach=False) does
            for f in folds:
                for i, leaf in enumerate(self.per_fold[f].values()):
                    views = (self._view(t, i, f) for t in (self.flat, self.exp_avg, self.exp_avg_sq))
                    self._adam_update(*views, leaf.grad, self.steps[f])
            return
        steps = {self.steps[f] for f in folds}
        if folds == list(range(self.k)) and len(steps) == 1:
            plan = [(slice(None), steps.pop())]  # the usual step: every fold at once
        else:
            plan = [(f, self.steps[f]) for f in folds]
        for rows, step in plan:
            self._adam_update(
                self.flat[rows], self.exp_avg[rows], self.exp_avg_sq[rows], self.grad[rows], step
            )

    def _adam_update(self, p, m, v, g, step: int) -> None:
        """One Adam update in place, in the arithmetic of torch's single-tensor path."""
        cfg, eps = self.cfg, 1e-8
        b1, b2 = cfg.betas
        if cfg.weight_decay:
            g = g.add(p, alpha=cfg.weight_decay)
        m.lerp_(g, 1 - b1)
        v.mul_(b2).addcmul_(g, g, value=1 - b2)
        step_size = cfg.lr / (1 - b1**step)
        denom = (v.sqrt() / (1 - b2**step) ** 0.5).add_(eps)
        p.addcdiv_(m, denom, value=-step_size)

    def fold_grad(self, f: int) -> torch.Tensor:
        """Fold ``f``'s gradient of the last step, flattened (zeros when it had no batch)."""
        if self.forward == "vmap":
            return torch.cat([self._view(self.grad, i, f).flatten() for i in range(len(self.names))])
        leaves = self.per_fold[f].values()
        return torch.cat([(x.grad if x.grad is not None else torch.zeros_like(x)).flatten() for x in leaves])

    @torch.no_grad()
    def logits(self, f: int, x: torch.Tensor, batch_size: int) -> torch.Tensor:
        """Fold ``f``'s eval-mode logits [n] (float32, CPU) on ``x``."""
        self.base.eval()
        params = self._fold_params(f)
        bufs = {n: b[f] for n, b in self.buffers.items()}
        out = [torch.empty(0)]
        for s in range(0, len(x), batch_size):
            with _autocast(self.device, self.cfg.amp):
                xb = _format(x[s : s + batch_size].to(self.device), self.cfg.channels_last)
                out.append(self._call(params, bufs, xb).float().cpu())
        return torch.cat(out)

    def fold_state(self, f: int) -> dict[str, torch.Tensor]:
        """Fold ``f``'s state dict (CPU, contiguous), keys in the module's order."""
        params = {n: self._view(self.flat, i, f) for i, n in enumerate(self.names)}
        out = {}
        for key in self.keys:
            t = params[key] if key in params else self.buffers[key][f]
            out[key] = t.detach().to("cpu", copy=True).contiguous()
        return out

    def state(self) -> dict[str, Any]:
        """Everything a resumed job needs (weights, BatchNorm buffers, Adam state)."""
        return {
            "flat": self.flat.cpu(),
            "exp_avg": self.exp_avg.cpu(),
            "exp_avg_sq": self.exp_avg_sq.cpu(),
            "steps": list(self.steps),
            "buffers": {n: b.cpu() for n, b in self.buffers.items()},
        }

    @torch.no_grad()
    def load(self, state: Mapping[str, Any]) -> None:
        """The inverse of :meth:`state` (in place, so the leaves stay views of the rows)."""
        for name in ("flat", "exp_avg", "exp_avg_sq"):
            getattr(self, name).copy_(state[name])
        self.steps = list(state["steps"])
        for n, b in state["buffers"].items():
            self.buffers[n].copy_(b)


def _job_hash(cfg: TrainConfig, datas: Sequence[FoldData]) -> str:
    return hashlib.sha256("".join(_run_hash(cfg, d) for d in datas).encode()).hexdigest()


def train_folds_stacked(
    patch_files: Mapping[str, Path],
    folds: pd.DataFrame,
    fold_ids: Sequence[int],
    outputs: Mapping[int, FoldOutputs],
    state: Path,
    cfg: TrainConfig,
    *,
    forward: str | None = None,
    on_epoch_end: Callable[[int, dict[int, dict[str, float]]], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> list[dict[str, Any]]:
    """Train the folds ``fold_ids`` together and write each fold's ``outputs`` (the same files and
    contents as :func:`spinefx.learn.train.train_fold`). ``state`` is the job's resumable
    checkpoint (one for all folds), written as ``train_fold``'s is (:class:`CheckpointPolicy`, on
    ``clock``; SIGTERM/SIGUSR1: written at the end of the epoch, then
    :class:`~spinefx.learn.train.TrainingInterrupted`). ``forward`` overrides
    ``cfg.stacked_forward``. ``on_epoch_end(epoch, {fold: history_row})`` runs after each epoch.
    Returns one summary per fold."""
    device = resolve_device(cfg.device)
    pretrained = check_pretrained(cfg)
    missing = sorted(set(fold_ids) - set(outputs))
    if missing or len(set(fold_ids)) != len(fold_ids):
        raise SpinefxError(f"stacked training needs distinct folds, each with outputs (missing {missing}).")
    policy = CheckpointPolicy(cfg.checkpoint_minutes, clock)
    with torch_settings(cfg, device), stop_signals(policy):
        return _train(
            patch_files, folds, list(fold_ids), outputs, Path(state), cfg, device, forward, on_epoch_end,
            policy, pretrained,
        )  # fmt: skip


def _train(
    patch_files, folds, fold_ids, outputs, state_path, cfg, device, forward, on_epoch_end, policy, pretrained
):
    t_start = time.perf_counter()
    k = len(fold_ids)
    datas = load_folds_data(patch_files, folds, fold_ids, cfg.val_fraction, cfg.seed)
    for f, d in zip(fold_ids, datas, strict=True):
        log_fold_data(f, d, device)
    channels = int(datas[0].train.x.shape[1])
    models = [init_model(cfg, f, channels) for f in fold_ids]
    stack = StackedFolds(models, cfg, device, forward or cfg.stacked_forward)
    job_hash = _job_hash(cfg, datas)
    epoch = 0
    histories: list[list[dict[str, float]]] = [[] for _ in fold_ids]
    bests = [
        {"state": stack.fold_state(i), "val_loss": math.inf, "epoch": 0, "bad_epochs": 0} for i in range(k)
    ]
    if state_path.is_file():
        ckpt = torch.load(state_path, map_location="cpu", weights_only=False)
        if ckpt.get("hash") != job_hash:
            _log(fold_ids[0], f"config or inputs changed since {state_path} was written: starting fresh")
            state_path.unlink()
        else:
            stack.load(ckpt["stack"])
            epoch, histories, bests = ckpt["epoch"], ckpt["histories"], ckpt["bests"]
            _set_rng_state(ckpt["rng"])
            _log(
                fold_ids[0],
                f"stacked job of folds {fold_ids}: resuming after epoch {epoch} from {state_path}",
            )
    _log(fold_ids[0], f"stacked job of folds {fold_ids}: forward {stack.forward}")
    if cfg.cuda_graphs and device.type == "cuda":
        _log(fold_ids[0], "train.cuda_graphs applies to one job per fold; the stacked job runs eagerly")

    def save_state() -> None:
        payload = {"hash": job_hash, "epoch": epoch, "stack": stack.state(), "histories": histories}
        _save_torch(payload | {"bests": bests, "rng": _rng_state()}, state_path)
        policy.written()
        _log(fold_ids[0], f"stacked job: checkpoint after epoch {epoch} written to {state_path}")

    train = [(d.train.x.to(device), d.train.y.to(device)) for d in datas]
    images, seconds_training = 0, 0.0
    while epoch < cfg.epochs:
        running = [i for i in range(k) if bests[i]["bad_epochs"] < cfg.patience]
        if not running:
            break
        epoch += 1
        t0 = time.perf_counter()
        orders = {
            i: list(
                batch_indices(
                    len(train[i][1]), cfg.batch_size, _epoch_generator(cfg.seed, fold_ids[i], epoch), 2
                )
            )
            for i in running
        }
        totals = {i: torch.zeros((), device=device) for i in running}
        seen = dict.fromkeys(running, 0)
        for s in range(max(len(o) for o in orders.values())):
            batches = {}
            for i in running:
                if s < len(orders[i]):
                    idx = orders[i][s].to(device, non_blocking=True)
                    batches[i] = (train[i][0].index_select(0, idx), train[i][1].index_select(0, idx))
            for i, loss in stack.step(batches).items():
                totals[i] += loss * len(batches[i][1])
                seen[i] += len(batches[i][1])
        t_train = time.perf_counter() - t0
        images += sum(seen.values())
        seconds_training += t_train
        rows = {}
        for i in running:
            fold, val = fold_ids[i], datas[i].val
            train_loss = totals[i].item() / seen[i] if seen[i] else float("nan")
            val_loss = float("nan")
            if len(val):
                logits = stack.logits(i, val.x, cfg.eval_batch_size)
                val_loss = float(F.binary_cross_entropy_with_logits(logits, val.y.float().cpu()))
            check_finite(fold, epoch, train_loss, val_loss, len(val), state_path)
            improved = update_best(
                bests[i], val_loss, len(val), epoch, cfg.min_delta, lambda i=i: stack.fold_state(i)
            )
            row = {
                "epoch": epoch,
                "train_loss": train_loss,
                "val_loss": val_loss,
                "lr": cfg.lr,
                "seconds": time.perf_counter() - t0,
            }
            histories[i].append(row)
            rows[fold] = dict(row)
            _log(
                fold,
                f"epoch {epoch}/{cfg.epochs} train_loss {train_loss:.4f} val_loss {val_loss:.4f} "
                f"(stacked, {len(running)} folds running)" + (" *best" if improved else ""),
            )
        saved = policy.due()
        if saved:
            save_state()
        if on_epoch_end is not None:
            on_epoch_end(epoch, rows)
        if policy.stop_signal is not None:  # it may have come during on_epoch_end
            if not saved:
                save_state()
            raise policy.interrupted(f"stacked job of folds {fold_ids}", epoch, state_path)
    del train
    summaries = []
    for i, fold in enumerate(fold_ids):
        model = models[i].to(device)
        if cfg.channels_last:
            model.to(memory_format=torch.channels_last)
        summary = finish_fold(
            model, bests[i], histories[i], datas[i], fold, cfg, device, outputs[fold], pretrained=pretrained
        )
        summary["train_images_per_s"] = images / seconds_training if seconds_training else float("nan")
        summaries.append(summary)
        models[i] = model.to("cpu")
    if not cfg.keep_state:
        remove_state(state_path)
    seconds = time.perf_counter() - t_start
    for s in summaries:
        s["seconds"] = seconds
    _log(fold_ids[0], f"stacked job of folds {fold_ids} done in {seconds:.0f} s")
    return summaries
