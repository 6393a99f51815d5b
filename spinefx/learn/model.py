"""The paper's network: a 1x1 convolution that mixes the 6 MRI channels into 3, then a torchvision
ResNet with a single-logit head (optionally with dropout before it: the paper names dropout among
its regularisers without saying where or how much).

ImageNet initialisation comes only from local files (a state-dict path, or the TORCH_HOME cache),
because training nodes are often offline and a silent download would make runs irreproducible.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from spinefx.errors import SpinefxError
from spinefx.learn.weights import (  # noqa: F401 - re-exported: the weights' lookup belongs to the model
    TORCHVISION_WEIGHT_FILES,
    cached_weights_path,
    pretrained_source,
    torch_hub_checkpoints,
)

ARCHS = ("resnet18", "resnet34", "resnet50")


def _log(message: str) -> None:
    print(f"[spinefx.learn.model] {message}", file=sys.stderr, flush=True)


class DropoutLinear(nn.Linear):
    """A linear layer whose input passes through dropout (probability ``p``) in training mode; in
    eval mode it is the plain linear layer. One module, so the state-dict keys (``backbone.fc.*``)
    are those of ``nn.Linear`` whatever ``p`` is, and model files stay interchangeable."""

    def __init__(self, in_features: int, out_features: int, p: float = 0.0) -> None:
        super().__init__(in_features, out_features)
        if not 0.0 <= p <= 1.0:
            raise SpinefxError(f"dropout probability {p} is not in [0, 1].", fix="set train.dropout below 1")
        self.p = float(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Dropout (inverted: kept inputs scaled by 1/(1-p)) while training, then the linear map."""
        if self.p > 0.0 and self.training:
            x = F.dropout(x, self.p, training=True)
        return super().forward(x)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, dropout={self.p}"


class SpinefxResNet(nn.Module):
    """``mix`` (1x1 conv, in_channels -> 3) followed by a torchvision ResNet ``backbone`` whose fc
    gives one logit (malignant = positive class), with dropout ``dropout`` on the fc's input."""

    def __init__(self, arch: str, in_channels: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.arch = arch
        self.in_channels = in_channels
        self.mix = nn.Conv2d(in_channels, 3, kernel_size=1)
        self.backbone = getattr(torchvision.models, arch)(weights=None)
        self.backbone.fc = DropoutLinear(self.backbone.fc.in_features, 1, p=dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[n, in_channels, H, W] -> logits [n]."""
        return self.backbone(self.mix(x)).squeeze(1)


def load_backbone_weights(model: SpinefxResNet, path: Path) -> int:
    """Load a torchvision ResNet state dict into ``model.backbone`` (fc excluded); returns the number
    of tensors loaded. Refuses files that do not fit the architecture rather than loading half."""
    path = Path(path)
    if not path.is_file():
        raise SpinefxError(
            "pretrained weights file not found.", path=path, fix="set train.pretrained_weights to a file"
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the same user problem
        raise SpinefxError(
            f"cannot read pretrained weights ({exc}).",
            path=path,
            fix="give a torchvision ResNet state dict saved with torch.save",
        ) from exc
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    own = model.backbone.state_dict()
    missing = [k for k in own if not k.startswith("fc.") and k not in state]
    unexpected = [k for k in state if k not in own]
    wrong_shape = [k for k in state if k in own and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or wrong_shape:
        raise SpinefxError(
            f"pretrained weights do not fit {model.arch}: {len(missing)} missing, "
            f"{len(unexpected)} unexpected, {len(wrong_shape)} with another shape "
            f"(e.g. {(missing + unexpected + wrong_shape)[:3]}).",
            path=path,
            fix=f"use the torchvision ImageNet state dict of {model.arch}",
        )
    model.backbone.load_state_dict(state, strict=False)
    return len(state)


def build_model(
    arch: str = "resnet50",
    pretrained_weights: Path | None = None,
    in_channels: int = 6,
    *,
    load_pretrained: bool = True,
    dropout: float = 0.0,
) -> nn.Module:
    """The paper's classifier. Backbone initialisation, in order: ``pretrained_weights`` (a torchvision
    state-dict file), the torchvision file for ``arch`` in TORCH_HOME's cache, else random weights
    (said on stderr). Never downloads. ``load_pretrained=False`` skips the lookup (used when a
    trained model.pt is loaded right after). ``dropout``: probability on the final layer's input."""
    if arch not in ARCHS:
        raise SpinefxError(f"unknown architecture {arch!r}.", fix=f"set train.arch to one of {ARCHS}")
    model = SpinefxResNet(arch, in_channels, dropout=dropout)
    if not load_pretrained:
        return model
    source = Path(pretrained_weights) if pretrained_weights is not None else cached_weights_path(arch)
    if source is None:
        _log(f"{arch}: no pretrained weights given or cached; starting from random weights")
    else:
        n = load_backbone_weights(model, source)
        _log(f"{arch}: loaded {n} backbone tensors (fc excluded) from {source}")
    return model
