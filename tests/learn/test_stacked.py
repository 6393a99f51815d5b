"""Stacked fold training: each fold's weights, history and predictions equal what a job of its own
(train_fold) gives from the same seeds. Stated tolerance: bitwise (exact equality) with the CPU's
per-fold loop; with vmap (a vmapped convolution is a grouped one, which rounds differently) each
step's gradients agree to 1e-3 in relative norm and BatchNorm statistics to 1e-4."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from spinefx.errors import SpinefxError
from spinefx.imaging.patchfile import write_patch_file
from spinefx.learn.model import build_model
from spinefx.learn.stacked import StackedFolds, train_folds_stacked
from spinefx.learn.train import FoldOutputs, TrainConfig, TrainingInterrupted, make_optimizer, train_fold

K = 3
# 32x32 patches (ResNet18 reaches 1x1 at its last stage): the smallest input that keeps every layer,
# so the three trainings of this module take seconds. patience 1 lets folds stop at different epochs.
CFG = {
    "arch": "resnet18",
    "epochs": 3,
    "patience": 1,
    "batch_size": 4,
    "val_fraction": 0.25,
    "threads": 1,
    "seed": 4,
    "device": "cpu",
    "bn_recalibrate": True,
    "bn_recalibrate_samples": 8,
    "eval_batch_size": 5,
    "require_pretrained": False,
}


@pytest.fixture(autouse=True)
def no_torch_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))


def outputs_in(d: Path) -> FoldOutputs:
    return FoldOutputs(
        d / "model.pt", d / "history.tsv", d / "predictions.tsv", d / "curve.png", d / "state.pt"
    )


def small_cohort(root: Path, n_per_class: int = 4, size: int = 32) -> tuple[dict[str, Path], pd.DataFrame]:
    """Patch files of ``size`` pixels; malignant ones carry a bright square. Class sizes differ by
    fold (4 per class over 3 folds), so the folds' training sets have different lengths."""
    rng = np.random.default_rng(1)
    files, rows = {}, []
    for i in range(2 * n_per_class):
        pid, label = f"p{i:02d}", ("malignant" if i % 2 else "benign")
        x = rng.normal(size=(2 + 2 * (1 + i % 2), 6, size, size)).astype(np.float32)
        if label == "malignant":
            x[:, :, 8:20, 8:20] += 1.0
        files[pid] = root / f"{pid}.h5"
        write_patch_file(
            files[pid], original=x[:2], augmented=x[2:], label=label, slices=[3, 4], box=[0, 0, 9, 9],
            patient_id=pid, dtype="float32",
        )  # fmt: skip
        rows.append((pid, label, 1 + (i // 2) % K))
    return files, pd.DataFrame(rows, columns=["patient_id", "label", "fold"])


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The cohort, and the same folds trained one job each and stacked (per-fold loop)."""
    root = tmp_path_factory.mktemp("stacked")
    files, folds = small_cohort(root / "patches")
    cfg = TrainConfig.from_dict(CFG)
    for f in range(1, K + 1):
        train_fold(files, folds, f, outputs_in(root / f"alone_{f}"), cfg)
    stacked = {f: outputs_in(root / f"loop_{f}") for f in range(1, K + 1)}
    epochs = []
    summaries = train_folds_stacked(
        files, folds, range(1, K + 1), stacked, root / "state" / "job.pt", cfg, forward="loop",
        on_epoch_end=lambda epoch, rows: epochs.append(sorted(rows)),
    )  # fmt: skip
    return root, files, folds, cfg, summaries, epochs


def _model(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=False)["state_dict"]


def _history(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, sep="\t").drop(columns="seconds")


def test_stacked_loop_equals_one_job_per_fold_bitwise(runs):
    root, _, folds, _, summaries, epochs = runs
    lengths = []
    for f in range(1, K + 1):
        alone, stacked = outputs_in(root / f"alone_{f}"), outputs_in(root / f"loop_{f}")
        a, b = _model(alone.model), _model(stacked.model)
        assert list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a), f"fold {f} weights"
        assert alone.predictions.read_bytes() == stacked.predictions.read_bytes(), f"fold {f} predictions"
        pd.testing.assert_frame_equal(_history(alone.history), _history(stacked.history))
        assert stacked.curve.stat().st_size > 0
        meta = torch.load(stacked.model, weights_only=False)
        assert meta["fold"] == f and meta["arch"] == "resnet18"
        lengths.append(len(_history(stacked.history)))
    # training sets differ in size (so do the folds' step counts) ...
    assert len({s["n_train"] for s in summaries}) > 1
    # ... and the fixture's early stopping reached folds at different epochs when it stopped any
    assert epochs[0] == list(range(1, K + 1)) and [len(e) for e in epochs] == [
        sum(n > e for n in lengths) for e in range(len(epochs))
    ]
    assert not (root / "state" / "job.pt").exists()  # resumable state dropped after success


def test_stacked_job_stopped_by_sigterm_resumes_to_the_same_folds(runs, tmp_path):
    """SIGTERM during the stacked job: one checkpoint for all folds at the end of that epoch (none
    was due by time), a clear error, and the rerun's folds equal the uninterrupted job's bitwise."""
    root, files, folds, cfg, _, _ = runs
    cfg = TrainConfig.from_dict(dict(CFG, checkpoint_minutes=600))
    out = {f: outputs_in(tmp_path / f"fold_{f}") for f in range(1, K + 1)}
    state = tmp_path / "state" / "job.pt"

    def send_term(epoch, rows):
        if epoch == 1:
            os.kill(os.getpid(), signal.SIGTERM)

    with pytest.raises(TrainingInterrupted, match=r"stacked job of folds \[1, 2, 3\]: stopped by SIGTERM"):
        train_folds_stacked(
            files, folds, range(1, K + 1), out, state, cfg, forward="loop", on_epoch_end=send_term
        )
    assert torch.load(state, weights_only=False)["epoch"] == 1 and not out[1].model.exists()
    train_folds_stacked(files, folds, range(1, K + 1), out, state, cfg, forward="loop")
    for f in range(1, K + 1):
        ref = outputs_in(root / f"loop_{f}")
        a, b = _model(ref.model), _model(out[f].model)
        assert all(torch.equal(a[k], b[k]) for k in a), f"fold {f} weights"
        assert ref.predictions.read_bytes() == out[f].predictions.read_bytes()


@pytest.mark.parametrize("forward", ["loop", pytest.param("vmap", marks=pytest.mark.slow)])
def test_stacked_training_runs_with_dropout(runs, tmp_path, forward):
    """train.dropout > 0 keeps the stacked path working (vmap draws a mask per fold: randomness
    "different"), and model.pt says which rate trained it."""
    root, files, folds, _, _, _ = runs
    cfg = TrainConfig.from_dict(dict(CFG, epochs=1, dropout=0.5, bn_recalibrate=False))
    out = {f: outputs_in(tmp_path / f"d_{f}") for f in (1, 2)}
    train_folds_stacked(files, folds, [1, 2], out, tmp_path / "job.pt", cfg, forward=forward)
    preds = pd.read_csv(out[1].predictions, sep="\t")
    assert preds["prob"].between(0, 1).all() and len(preds) > 0
    assert torch.load(out[1].model, weights_only=False)["config"]["dropout"] == 0.5


@pytest.mark.slow
def test_stacked_vmap_writes_the_same_files(runs, tmp_path):
    """End to end with vmap: the same files, rows and first-epoch losses as the per-fold loop. Its
    per-step agreement is checked below on gradients: after a few Adam steps the weights of two
    runs that round differently are not comparable at this toy size (Adam's division by sqrt(v)
    turns rounding in near-zero gradients into steps of ~lr)."""
    root, files, folds, _, _, _ = runs
    cfg = TrainConfig.from_dict(dict(CFG, epochs=1, bn_recalibrate=False))
    out = {f: outputs_in(tmp_path / f"vmap_{f}") for f in range(1, K + 1)}
    train_folds_stacked(files, folds, [1, 2, 3], out, tmp_path / "job.pt", cfg, forward="vmap")
    for f in range(1, K + 1):
        ref = outputs_in(root / f"loop_{f}")
        pa, pb = (pd.read_csv(o.predictions, sep="\t") for o in (ref, out[f]))
        assert (pa[["patient_id", "slice"]] == pb[["patient_id", "slice"]]).all().all()
        assert pb["prob"].between(0, 1).all()
        ha, hb = _history(ref.history), _history(out[f].history)
        assert len(hb) == 1 and abs(ha["train_loss"][0] - hb["train_loss"][0]) < 0.01
        assert list(_model(ref.model)) == list(_model(out[f].model))


def _grads(stack: StackedFolds, f: int) -> torch.Tensor:
    return stack.fold_grad(f)


@pytest.mark.parametrize("forward", ["loop", "vmap"])
def test_a_fold_without_a_batch_is_left_exactly_as_it_was(forward):
    """The masked step: fold 1 gets no batch and keeps its weights, BatchNorm buffers and Adam state;
    folds 0 and 2 (batches of 4 and 3: vmapped in two groups) get the gradients and the step of a
    lone model with torch.optim.Adam: bitwise in the loop, to 1e-3 (relative norm) with vmap."""
    cfg = TrainConfig(arch="resnet18", device="cpu", channels_last=False, amp=False)
    models = []
    for seed in range(3):
        torch.manual_seed(seed)
        models.append(build_model("resnet18", load_pretrained=False))
    stack = StackedFolds(models, cfg, torch.device("cpu"), forward)
    before = {f: stack.fold_state(f) for f in range(3)}
    g = torch.Generator().manual_seed(0)
    x = torch.randn(7, 6, 32, 32, generator=g)
    y = torch.tensor([0, 1, 0, 1, 1, 0, 1], dtype=torch.float32)
    batches = {0: (x[:4], y[:4]), 2: (x[4:], y[4:])}
    losses = stack.step(batches)
    assert sorted(losses) == [0, 2] and stack.steps == [1, 0, 1]
    after = stack.fold_state(1)
    assert all(torch.equal(before[1][k], after[k]) for k in after)
    assert not stack.exp_avg[1].any() and not stack.exp_avg_sq[1].any() and not _grads(stack, 1).any()
    for f in (0, 2):
        ref = models[f]
        ref.train()
        opt = make_optimizer(ref, cfg, torch.device("cpu"))
        loss = torch.nn.functional.binary_cross_entropy_with_logits(ref(batches[f][0]), batches[f][1])
        opt.zero_grad()
        loss.backward()
        want_grad = torch.cat([p.grad.flatten() for p in ref.parameters()])
        opt.step()
        got, want = stack.fold_state(f), {k: v.detach() for k, v in ref.state_dict().items()}
        if forward == "loop":
            assert torch.equal(_grads(stack, f), want_grad)
            assert all(torch.equal(got[k], want[k]) for k in want), f"fold {f}"
            assert torch.equal(losses[f], loss.detach())
        else:
            assert (_grads(stack, f) - want_grad).norm() / want_grad.norm() < 1e-3
            for k in [k for k in want if "running" in k]:  # the fold's own batch statistics
                torch.testing.assert_close(got[k], want[k], rtol=1e-4, atol=1e-5)
            torch.testing.assert_close(losses[f], loss.detach(), rtol=1e-4, atol=1e-5)


def test_folds_need_their_outputs(tmp_path):
    cfg = TrainConfig.from_dict(CFG)
    with pytest.raises(SpinefxError, match="missing \\[2\\]"):
        train_folds_stacked({}, pd.DataFrame(), [1, 2], {1: outputs_in(tmp_path)}, tmp_path / "s.pt", cfg)
    with pytest.raises(SpinefxError, match="folds_per_job must be 1 or all"):
        TrainConfig.from_dict(dict(CFG, folds_per_job=3))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_stacked_vmap_on_cuda_matches_the_per_fold_loop_on_one_step():
    """The GPU path (vmap, bf16 autocast) against the per-fold loop on the same device and batches:
    losses to bf16 rounding, gradients to 2% in relative norm."""
    device = torch.device("cuda")
    cfg = TrainConfig(arch="resnet18", device="cuda")
    models = []
    for seed in range(3):
        torch.manual_seed(seed)
        models.append(build_model("resnet18", load_pretrained=False))
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 16, 6, 64, 64, generator=g).to(device)
    y = (torch.rand(3, 16, generator=g) < 0.5).float().to(device)
    results = []
    for forward in ("loop", "vmap"):
        stack = StackedFolds(models, cfg, device, forward)
        losses = stack.step({f: (x[f], y[f]) for f in range(3)})
        results.append(
            (torch.stack([losses[f] for f in range(3)]).cpu(), [_grads(stack, f).cpu() for f in range(3)])
        )
    (la, ga), (lb, gb) = results
    torch.testing.assert_close(lb, la, rtol=2e-2, atol=1e-2)
    for a, b in zip(ga, gb, strict=True):
        assert (a - b).norm() / a.norm() < 0.02
