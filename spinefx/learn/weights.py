"""Where the ImageNet weights of a run come from, and their SHA-256: the provenance that model.pt and
the run info record.

Free of torch on purpose, so that the statistics rules (whose environment has no torch) can say in
the run info which weights file a protocol starts from. The cache folder is torch.hub's own rule
(``$TORCH_HOME/hub/checkpoints``, ``$TORCH_HOME`` defaulting to ``$XDG_CACHE_HOME/torch``, that to
``~/.cache/torch``); tests/learn/test_weights.py checks it against ``torch.hub.get_dir``.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from spinefx.errors import SpinefxError

# File names torchvision uses in $TORCH_HOME/hub/checkpoints for the ImageNet weights of each arch
# (IMAGENET1K_V1 first, then V2 where one exists). Checked in this order.
TORCHVISION_WEIGHT_FILES: dict[str, tuple[str, ...]] = {
    "resnet18": ("resnet18-f37072fd.pth",),
    "resnet34": ("resnet34-b627a593.pth",),
    "resnet50": ("resnet50-0676ba61.pth", "resnet50-11ad3fa6.pth"),
}


def torch_hub_checkpoints() -> Path:
    """The folder torchvision caches its downloaded weights in (torch.hub's rule, without torch)."""
    cache = os.getenv("XDG_CACHE_HOME", os.path.join("~", ".cache"))
    home = os.path.expanduser(os.getenv("TORCH_HOME", os.path.join(cache, "torch")))
    return Path(home) / "hub" / "checkpoints"


def cached_weights_path(arch: str) -> Path | None:
    """The torchvision ImageNet file for ``arch`` in TORCH_HOME's hub/checkpoints, if present."""
    checkpoints = torch_hub_checkpoints()
    for name in TORCHVISION_WEIGHT_FILES.get(arch, ()):
        if (checkpoints / name).is_file():
            return checkpoints / name
    return None


def file_sha256(path: Path, chunk: int = 1 << 22) -> str:
    """Hex SHA-256 of a file, read in chunks (a ResNet50 state dict is ~100 MB)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def pretrained_source(arch: str, pretrained_weights: str | Path | None) -> dict[str, str] | None:
    """``{"path", "sha256"}`` of the weights a model of ``arch`` starts from: the given file, else
    the torchvision cache's; None when there is none (random initialisation). A given file that does
    not exist is an error, not a silent fall-back to random weights."""
    if pretrained_weights is not None:
        path = Path(pretrained_weights)
        if not path.is_file():
            raise SpinefxError(
                "pretrained weights file not found.", path=path, fix="set train.pretrained_weights to a file"
            )
    else:
        path = cached_weights_path(arch)
        if path is None:
            return None
    return {"path": str(path.resolve()), "sha256": file_sha256(path)}
