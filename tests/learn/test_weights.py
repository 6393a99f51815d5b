"""spinefx.learn.weights: torch.hub's cache folder without torch, and the weights' provenance."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch

from spinefx.errors import SpinefxError
from spinefx.learn.weights import cached_weights_path, file_sha256, pretrained_source, torch_hub_checkpoints


@pytest.mark.parametrize(
    "env",
    [{"TORCH_HOME": "th"}, {"XDG_CACHE_HOME": "xdg"}, {}],
    ids=["TORCH_HOME", "XDG_CACHE_HOME", "home"],
)
def test_cache_folder_is_torch_hubs(tmp_path, monkeypatch, env):
    """Oracle: torch.hub.get_dir() under the same environment."""
    for name in ("TORCH_HOME", "XDG_CACHE_HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    for name, value in env.items():
        monkeypatch.setenv(name, str(tmp_path / value))
    assert torch_hub_checkpoints() == Path(torch.hub.get_dir()) / "checkpoints"


def test_source_and_sha256(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "th"))
    assert cached_weights_path("resnet50") is None and pretrained_source("resnet50", None) is None
    data = bytes(range(256)) * 40_000  # 10 MB: more than one read chunk
    cache = tmp_path / "th" / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    (cache / "resnet50-11ad3fa6.pth").write_bytes(data)  # the V2 file, found when V1 is absent
    found = pretrained_source("resnet50", None)
    assert found == {"path": str(cache / "resnet50-11ad3fa6.pth"), "sha256": hashlib.sha256(data).hexdigest()}
    mine = tmp_path / "mine.pth"
    mine.write_bytes(b"weights")
    assert pretrained_source("resnet50", mine)["sha256"] == hashlib.sha256(b"weights").hexdigest()
    assert file_sha256(mine, chunk=3) == hashlib.sha256(b"weights").hexdigest()
    with pytest.raises(SpinefxError, match="not found"):
        pretrained_source("resnet50", tmp_path / "missing.pth")
