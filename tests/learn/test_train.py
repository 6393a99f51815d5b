"""train_fold: outputs, determinism, kill-and-resume, NaN handling, config validation."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from spinefx.errors import SpinefxError
from spinefx.learn.train import (
    CheckpointPolicy,
    FoldOutputs,
    TrainConfig,
    TrainingInterrupted,
    load_model,
    recalibrate_batchnorm,
    resolve_device,
    train_fold,
)

try:
    from tests.test_dataset import write_cohort
except ImportError:
    from test_dataset import write_cohort

ROOT = Path(__file__).resolve().parents[2]
TINY = {
    "arch": "resnet18",
    "epochs": 2,
    "val_fraction": 0.25,
    "threads": 1,
    "seed": 4,
    "device": "cpu",
    "patience": 10,
    "bn_recalibrate": True,
    "require_pretrained": False,
    "checkpoint_minutes": 0,  # after every epoch: the kill tests below rely on it
}


@pytest.fixture(autouse=True)
def no_torch_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))


@pytest.fixture
def cohort(tmp_path):
    return write_cohort(tmp_path / "patches", n_benign=3, n_malignant=3, k=3, copies=(1, 2))


def outputs_in(d: Path) -> FoldOutputs:
    """The workflow's file names for one fold, under ``d`` (the rule passes each path itself)."""
    d = Path(d)
    return FoldOutputs(
        d / "model.pt", d / "history.tsv", d / "predictions.tsv", d / "curve.png", d / "state/checkpoint.pt"
    )


def _state_dict(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=False)["state_dict"]


def _same_model(a: Path, b: Path) -> bool:
    sa, sb = _state_dict(a), _state_dict(b)
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_config_from_dict_rejects_unknown_keys_and_reads_the_default_config():
    with pytest.raises(SpinefxError, match="unknown train config keys \\['epoch'\\]"):
        TrainConfig.from_dict({"epoch": 3})
    with pytest.raises(SpinefxError, match="arch"):
        TrainConfig.from_dict({"arch": "resnet51"})
    cfg_file = ROOT / "config" / "config.yaml"
    if cfg_file.is_file():
        block = yaml.safe_load(cfg_file.read_text())["train"]
        cfg = TrainConfig.from_dict(block)
        assert cfg.betas == (0.5, 0.999) and cfg.batch_size == 32
    # every key of paper.yaml's train block (each speed setting included) reaches TrainConfig as written
    paper_block = yaml.safe_load((ROOT / "config" / "paper.yaml").read_text())["train"]
    from_paper = TrainConfig.from_dict(paper_block).to_dict()
    assert {k: from_paper[k] for k in paper_block} == {
        k: list(v) if isinstance(v, tuple) else v for k, v in paper_block.items()
    }
    assert from_paper["device"] == "cuda" and from_paper["require_pretrained"] is True
    paper = TrainConfig()
    assert (paper.arch, paper.lr, paper.betas, paper.batch_size, paper.epochs) == (
        "resnet50",
        1e-4,
        (0.5, 0.999),
        32,
        100,
    )


def test_outputs_and_determinism(tmp_path, cohort):
    files, folds = cohort
    cfg = TrainConfig.from_dict(TINY)
    outs = [tmp_path / "run_a", tmp_path / "run_b"]
    summaries = [train_fold(files, folds, 2, outputs_in(out), cfg) for out in outs]
    a, b = outs
    for out in outs:
        for name in ("model.pt", "history.tsv", "predictions.tsv", "curve.png"):
            assert (out / name).stat().st_size > 0, name
        assert not (out / "state").exists()  # resumable state is dropped after success
    hist = pd.read_csv(a / "history.tsv", sep="\t")
    assert list(hist.columns) == ["epoch", "train_loss", "val_loss", "lr", "seconds"]
    assert hist["epoch"].tolist() == [1, 2] and (hist["lr"] == 1e-4).all()
    preds = pd.read_csv(a / "predictions.tsv", sep="\t")
    held = folds.loc[folds["fold"] == 2, "patient_id"]
    assert list(preds.columns) == ["patient_id", "slice", "prob"]
    assert sorted(preds["patient_id"].unique()) == sorted(held) and len(preds) == 3 * len(held)
    assert sorted(preds["slice"].unique()) == [10, 11, 12]
    assert preds["prob"].between(0, 1).all()
    assert summaries[0]["n_test"] == len(preds)
    # same seed, same everything
    assert (a / "predictions.tsv").read_bytes() == (b / "predictions.tsv").read_bytes()
    assert _same_model(a / "model.pt", b / "model.pt")
    # model.pt reloads and reproduces the predictions
    model, meta = load_model(a / "model.pt")
    assert meta["arch"] == "resnet18" and meta["fold"] == 2
    test_x = torch.stack([torch.zeros(6, 64, 64)])
    assert model(test_x).shape == (1,)


_RUN = textwrap.dedent(
    """
    import json, os, sys
    from pathlib import Path
    import pandas as pd
    from spinefx.learn.train import FoldOutputs, TrainConfig, train_fold
    files = {k: Path(v) for k, v in json.loads(sys.argv[1]).items()}
    folds = pd.read_csv(sys.argv[2], sep="\\t")
    kill = int(sys.argv[4])
    def hook(epoch, row):
        if epoch == kill:
            os._exit(9)  # as abrupt as SIGKILL: no cleanup, no flushing
        if kill < 0 and epoch == -kill:
            print("EPOCH_DONE", flush=True)  # the parent signals the process on this line
    d = Path(sys.argv[3])
    outs = FoldOutputs(d / "model.pt", d / "history.tsv", d / "predictions.tsv", d / "curve.png",
                       d / "state" / "checkpoint.pt")
    train_fold(files, folds, 1, outs, TrainConfig.from_dict(json.loads(sys.argv[5])), on_epoch_end=hook)
    """
)


def _run(files, folds_tsv, out, kill, cfg) -> subprocess.CompletedProcess:
    """Train fold 1 in a fresh process; ``kill`` > 0 exits abruptly after that epoch, < 0 has this
    process send SIGTERM once that epoch is done (0: neither)."""
    args = [sys.executable, "-c", _RUN, json.dumps({k: str(v) for k, v in files.items()})]
    args += [str(folds_tsv), str(out), str(kill), json.dumps(cfg)]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    if kill >= 0:
        return subprocess.run(args, capture_output=True, text=True, env=env, timeout=300)
    with subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env) as proc:
        for line in proc.stdout:
            if "EPOCH_DONE" in line:
                proc.send_signal(signal.SIGTERM)
        stderr = proc.stderr.read()
        proc.wait(timeout=300)
    return subprocess.CompletedProcess(args, proc.returncode, "", stderr)


def test_killed_job_resumes_to_the_same_result(tmp_path, cohort):
    files, folds = cohort
    folds_tsv = tmp_path / "folds.tsv"
    folds.to_csv(folds_tsv, sep="\t", index=False)
    cfg = dict(TINY, epochs=3)
    ref = _run(files, folds_tsv, tmp_path / "ref", 0, cfg)
    assert ref.returncode == 0, ref.stderr
    killed = _run(files, folds_tsv, tmp_path / "job", 1, cfg)
    assert killed.returncode == 9
    assert not (tmp_path / "job" / "model.pt").exists()
    state = torch.load(tmp_path / "job" / "state" / "checkpoint.pt", weights_only=False)
    assert state["epoch"] == 1
    resumed = _run(files, folds_tsv, tmp_path / "job", 0, cfg)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming after epoch 1" in resumed.stderr
    assert "epoch 1/3" not in resumed.stderr and "epoch 2/3" in resumed.stderr
    assert _same_model(tmp_path / "ref" / "model.pt", tmp_path / "job" / "model.pt")
    ref_preds = (tmp_path / "ref" / "predictions.tsv").read_bytes()
    assert ref_preds == (tmp_path / "job" / "predictions.tsv").read_bytes()
    ref_hist = pd.read_csv(tmp_path / "ref" / "history.tsv", sep="\t")
    job_hist = pd.read_csv(tmp_path / "job" / "history.tsv", sep="\t")
    pd.testing.assert_frame_equal(ref_hist.drop(columns="seconds"), job_hist.drop(columns="seconds"))

    # SIGUSR1 (SLURM's warning before a time limit) during epoch 2, with no checkpoint due by time
    # (checkpoint_minutes is not part of the run's hash, so the reference above still applies): the
    # job writes the checkpoint at the end of that epoch, stops with a clear error, and its rerun
    # ends with the uninterrupted run's model and predictions.
    sig_cfg = TrainConfig.from_dict(dict(cfg, checkpoint_minutes=600))
    out = outputs_in(tmp_path / "sig")

    def send_usr1(epoch, row):
        if epoch == 1:
            os.kill(os.getpid(), signal.SIGUSR1)  # arrives in the callback: acted on at once

    before = signal.getsignal(signal.SIGUSR1)
    with pytest.raises(TrainingInterrupted, match="stopped by SIGUSR1 after epoch 1") as stopped:
        train_fold(files, folds, 1, out, sig_cfg, on_epoch_end=send_usr1)
    assert isinstance(stopped.value, SpinefxError) and "resumes after epoch 1" in str(stopped.value)
    assert signal.getsignal(signal.SIGUSR1) is before  # the handler is removed after training
    assert torch.load(out.state, weights_only=False)["epoch"] == 1 and not out.model.exists()
    train_fold(files, folds, 1, out, sig_cfg)
    assert _same_model(tmp_path / "ref" / "model.pt", out.model)
    assert ref_preds == out.predictions.read_bytes()


def test_a_signal_in_a_separate_process_checkpoints_and_exits_non_zero(tmp_path, cohort):
    """The job as SLURM sees it: SIGTERM from outside, mid-run; the process exits non-zero with the
    message, leaving a checkpoint of the epoch in which the signal came."""
    files, folds = cohort
    folds_tsv = tmp_path / "folds.tsv"
    folds.to_csv(folds_tsv, sep="\t", index=False)
    cfg = dict(TINY, epochs=3, checkpoint_minutes=600)
    job = _run(files, folds_tsv, tmp_path / "job", -1, cfg)  # -1: the parent sends SIGTERM after epoch 1
    assert job.returncode == 1, job.stderr
    assert "TrainingInterrupted" in job.stderr and "stopped by SIGTERM after epoch" in job.stderr
    state = torch.load(tmp_path / "job" / "state" / "checkpoint.pt", weights_only=False)
    assert state["epoch"] in (1, 2, 3) and f"after epoch {state['epoch']}" in job.stderr
    assert not (tmp_path / "job" / "model.pt").exists()


class _Stop(Exception):
    pass


def test_changed_config_starts_fresh(tmp_path, cohort, capfd):
    files, folds = cohort

    def stop(epoch, row):
        raise _Stop

    cfg = TrainConfig.from_dict(TINY)
    with pytest.raises(_Stop):
        train_fold(files, folds, 3, outputs_in(tmp_path), cfg, on_epoch_end=stop)
    assert (tmp_path / "state" / "checkpoint.pt").is_file()
    capfd.readouterr()
    train_fold(files, folds, 3, outputs_in(tmp_path), TrainConfig.from_dict(dict(TINY, lr=2e-4)))
    err = capfd.readouterr().err
    assert "config or inputs changed" in err and "starting fresh" in err and "epoch 1/2" in err


def test_nan_loss_stops_with_a_clear_error_and_keeps_the_last_checkpoint(tmp_path, cohort):
    files, folds = cohort

    def poison(epoch, row):
        model_param = poison.model_param
        with torch.no_grad():
            model_param.fill_(float("nan"))

    # reach the model through the optimiser hook: the first Adam created in train_fold
    original_adam = torch.optim.Adam

    def spy_adam(params, **kw):
        params = list(params)
        poison.model_param = params[0]
        return original_adam(params, **kw)

    torch.optim.Adam = spy_adam
    try:
        with pytest.raises(SpinefxError, match=r"fold 1, epoch 2: loss is not finite"):
            train_fold(
                files, folds, 1, outputs_in(tmp_path), TrainConfig.from_dict(TINY), on_epoch_end=poison
            )
    finally:
        torch.optim.Adam = original_adam
    state = torch.load(tmp_path / "state" / "checkpoint.pt", weights_only=False)
    assert state["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())
    assert not (tmp_path / "model.pt").exists()


def test_checkpoint_policy_is_time_based():
    """Due once the interval has passed since the last write (an injected clock, no sleeping), at
    every epoch with 0 minutes, and at once after a stop signal."""
    now = [100.0]
    policy = CheckpointPolicy(2, clock=lambda: now[0])
    assert not policy.due()
    now[0] += 119.9
    assert not policy.due()
    now[0] += 0.1
    assert policy.due()
    policy.written()
    now[0] += 60
    assert not policy.due()
    policy.request_stop(signal.SIGUSR1)
    assert policy.due() and policy.stop_signal == signal.SIGUSR1
    assert CheckpointPolicy(0, clock=lambda: 5.0).due()
    with pytest.raises(SpinefxError, match="checkpoint_minutes"):
        TrainConfig(checkpoint_minutes=-1)


def test_train_fold_writes_checkpoints_by_the_clock(tmp_path, cohort):
    """Each epoch takes 40 s of injected time (the callback advances the clock, so epoch e ends at
    40 (e - 1) s); with checkpoint_minutes 1 a checkpoint is due 60 s after the last one: after
    epoch 3 (80 s) and epoch 5 (160 s), not after every epoch."""
    files, folds = cohort
    now = [0.0]
    out = outputs_in(tmp_path)
    seen = {}

    def tick(epoch, row):
        seen[epoch] = torch.load(out.state, weights_only=False)["epoch"] if out.state.exists() else None
        now[0] += 40.0

    cfg = TrainConfig.from_dict(dict(TINY, epochs=5, checkpoint_minutes=1, bn_recalibrate=False))
    train_fold(files, folds, 2, out, cfg, on_epoch_end=tick, clock=lambda: now[0])
    assert seen == {1: None, 2: None, 3: 3, 4: 3, 5: 5}
    assert not out.state.exists()  # dropped after success (keep_state false)


def test_device_cuda_without_a_gpu_fails_at_the_start(monkeypatch, tmp_path):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    with pytest.raises(SpinefxError) as err:
        resolve_device("cuda")
    text = str(err.value)
    for words in ("CUDA_VISIBLE_DEVICES=''", "torch.cuda.is_available() is false", "nvidia-smi", "--nv"):
        assert words in text, words
    assert "train.device: auto" in text
    assert resolve_device("auto").type == "cpu"
    # the training job stops before it reads a single patch file
    cfg = TrainConfig.from_dict(dict(TINY, device="cuda"))
    with pytest.raises(SpinefxError, match="no usable CUDA GPU"):
        train_fold({"p": tmp_path / "missing.h5"}, pd.DataFrame(), 1, outputs_in(tmp_path), cfg)


def test_required_imagenet_weights_missing_fail_at_the_start(tmp_path):
    cfg = TrainConfig.from_dict(dict(TINY, require_pretrained=True))
    with pytest.raises(SpinefxError) as err:
        train_fold({"p": tmp_path / "missing.h5"}, pd.DataFrame(), 1, outputs_in(tmp_path), cfg)
    text = str(err.value)
    assert "train.pretrained_weights" in text and "train.require_pretrained: false" in text
    assert str(tmp_path / "torch_home" / "hub" / "checkpoints") in text and "resnet18-f37072fd.pth" in text
    given = TrainConfig.from_dict(dict(TINY, pretrained_weights=str(tmp_path / "nope.pth")))
    with pytest.raises(SpinefxError, match="pretrained weights file not found"):
        train_fold({}, pd.DataFrame(), 1, outputs_in(tmp_path), given)


def test_the_weights_path_and_sha256_are_recorded_in_model_pt(tmp_path, cohort):
    import torchvision

    files, folds = cohort
    torch.manual_seed(3)
    weights = tmp_path / "imagenet_resnet18.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), weights)
    cfg = dict(TINY, epochs=1, bn_recalibrate=False, require_pretrained=True, pretrained_weights=str(weights))
    train_fold(files, folds, 1, outputs_in(tmp_path / "out"), TrainConfig.from_dict(cfg))
    meta = torch.load(tmp_path / "out" / "model.pt", weights_only=False)
    assert meta["pretrained"] == {
        "path": str(weights.resolve()),
        "sha256": hashlib.sha256(weights.read_bytes()).hexdigest(),
    }


def test_recalibrate_batchnorm_is_an_equal_weight_average_over_its_batches():
    """Oracle by hand: after recalibration a BatchNorm's running mean/var are the plain averages of
    the per-batch means and unbiased variances of its input, over the seeded batches of >= 2."""
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(2, 3, 1)
    model = torch.nn.Sequential(conv, torch.nn.BatchNorm2d(3, momentum=0.1))
    x = torch.randn(23, 2, 5, 5) * 3 + 1
    used = recalibrate_batchnorm(
        model, x, batch_size=4, max_samples=21, seed=7, device=torch.device("cpu"), amp=False,
        channels_last=False,
    )  # fmt: skip
    order = torch.randperm(23, generator=torch.Generator().manual_seed(7))[:21]
    batches = [order[s : s + 4] for s in range(0, 21, 4)][:-1]  # the last holds 1 sample: dropped
    assert used == 20 and not model.training and model[1].momentum == 0.1
    with torch.no_grad():
        feats = [conv(x[idx]).transpose(0, 1).reshape(3, -1) for idx in batches]
    mean = torch.stack([f.mean(1) for f in feats]).mean(0)
    var = torch.stack([f.var(1, unbiased=True) for f in feats]).mean(0)
    torch.testing.assert_close(model[1].running_mean, mean, rtol=0, atol=1e-5)
    torch.testing.assert_close(model[1].running_var, var, rtol=0, atol=1e-4)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_graphed_steps_agree_with_eager_steps():
    """train.cuda_graphs replays the very step train_step takes: after warm-up, capture and replays
    (and a partial batch run eagerly) the losses and weights equal eager training's to float32
    rounding (TF32 off, no autocast, so both run the same kernels' arithmetic)."""
    from spinefx.learn.model import build_model
    from spinefx.learn.train import GraphedStep, make_optimizer, train_step

    device = torch.device("cuda")
    prev = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        kw = {"device": device, "amp": False, "channels_last": True}
        runs = []
        for graphs in (False, True):
            torch.manual_seed(0)
            model = (
                build_model("resnet18", load_pretrained=False)
                .to(device)
                .to(memory_format=torch.channels_last)
            )
            cfg = TrainConfig(arch="resnet18", device="cuda", cuda_graphs=graphs, amp=False)
            opt = make_optimizer(model, cfg, device)
            step = GraphedStep(model, opt, 8, **kw) if graphs else None
            g = torch.Generator(device="cpu").manual_seed(1)
            model.train()
            losses = []
            for i in range(7):
                n = 8 if i < 6 else 5  # the last batch is partial: eager in both
                xb = torch.randn(n, 6, 64, 64, generator=g).to(device)
                yb = (torch.rand(n, generator=g) < 0.5).float().to(device)
                loss = step(xb, yb) if graphs else train_step(model, opt, xb, yb, **kw)
                losses.append(float(loss))
            runs.append((losses, {k: v.detach().cpu() for k, v in model.state_dict().items()}))
        (eager_losses, eager), (graph_losses, graphed) = runs
        np_close = torch.testing.assert_close
        np_close(torch.tensor(graph_losses), torch.tensor(eager_losses), rtol=1e-4, atol=1e-5)
        for k in eager:
            if eager[k].is_floating_point() and "running" not in k:
                np_close(graphed[k], eager[k], rtol=0, atol=2e-4 * 7)  # Adam: |step| <~ lr per step
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = prev
