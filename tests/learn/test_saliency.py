"""Integrated gradients: shape, completeness, and the figure."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from spinefx.learn.model import build_model
from spinefx.learn.saliency import integrated_gradients, saliency_figure, saliency_maps

try:
    from tests.test_dataset import write_cohort
except ImportError:
    from test_dataset import write_cohort


@pytest.fixture
def model():
    torch.manual_seed(0)
    return build_model("resnet18", load_pretrained=False).eval()


def test_saliency_shape_and_sign(model):
    x = torch.randn(2, 6, 64, 64)
    sal = saliency_maps(model, x, steps=8)
    assert sal.shape == (2, 64, 64) and sal.dtype == np.float32
    assert np.isfinite(sal).all() and (sal >= 0).all() and sal.max() > 0


def test_integrated_gradients_completeness(model):
    """Attributions add up to logit(x) - logit(0), up to the Riemann-sum error."""
    torch.manual_seed(1)
    x = torch.randn(2, 6, 64, 64)
    attr = integrated_gradients(model, x, steps=64)
    with torch.no_grad():
        delta = model(x) - model(torch.zeros_like(x))
    total = attr.sum(dim=(1, 2, 3))
    assert torch.allclose(total, delta, rtol=0.05, atol=0.05 * delta.abs().max().item())


def test_saliency_figure(tmp_path, model):
    files, folds = write_cohort(tmp_path / "patches", 2, 2, k=2, copies=(0, 0))
    model_path = tmp_path / "model.pt"
    meta = {"arch": "resnet18", "in_channels": 6, "fold": 1}
    torch.save({"state_dict": model.state_dict(), **meta}, model_path)
    out = tmp_path / "fig" / "saliency.png"
    saliency_figure(model_path, files, list(files)[:4], out, steps=4)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 10_000


def test_saliency_figure_per_fold_models(tmp_path, model):
    files, folds = write_cohort(tmp_path / "patches", 3, 3, k=2, copies=(0, 0))
    models = {}
    for fold in (1, 2):
        models[fold] = tmp_path / f"fold_{fold}" / "model.pt"
        models[fold].parent.mkdir()
        meta = {"arch": "resnet18", "in_channels": 6, "fold": fold}
        torch.save({"state_dict": model.state_dict(), **meta}, models[fold])
    out = tmp_path / "saliency.png"
    saliency_figure(models, folds, files, out, per_class=1, steps=2)
    assert out.read_bytes()[:4] == b"\x89PNG"
