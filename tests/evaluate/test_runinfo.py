"""The report's "What was run" table describes the config it is given, without patient-level rows."""

from __future__ import annotations

import hashlib

import pandas as pd

from spinefx import settings
from spinefx.evaluate.runinfo import run_info


def test_run_info_reflects_the_config_and_the_folds() -> None:
    config = {"cohort": "demo", **settings.defaults()}
    folds = pd.DataFrame(
        {"patient_id": ["a", "b", "c"], "label": ["benign", "malignant", "benign"], "fold": [1, 2, 1]}
    )
    table = run_info(config, folds).set_index("item")["value"]
    assert table["patients"] == "3" and table["malignant"] == "1" and table["benign"] == "2"
    assert table["network"] == "resnet50" and table["epochs (most)"] == "100"
    assert table["augmentation copies"] == "benign x20, malignant x40"
    config["train"] = dict(config["train"], arch="resnet18", epochs=6)
    changed = run_info(config, folds).set_index("item")["value"]
    assert changed["network"] == "resnet18" and changed["epochs (most)"] == "6"
    assert not set(run_info(config, folds)["value"]) & {"a", "b", "c"}


def test_run_info_names_the_imagenet_weights_and_their_sha256(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "th"))
    config = {"cohort": "demo", **settings.defaults()}
    folds = pd.DataFrame({"patient_id": ["a", "b"], "label": ["benign", "malignant"], "fold": [1, 2]})
    table = run_info(config, folds).set_index("item")["value"]
    assert table["ImageNet weights"] == "none found: random initialisation"
    weights = tmp_path / "imagenet.pth"
    weights.write_bytes(b"not really a state dict")
    config["train"] = dict(config["train"], pretrained_weights=str(weights))
    table = run_info(config, folds).set_index("item")["value"]
    assert table["ImageNet weights"] == str(weights.resolve())
    assert table["ImageNet weights SHA-256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    config["train"]["pretrained_weights"] = str(tmp_path / "gone.pth")
    assert "not found" in run_info(config, folds).set_index("item")["value"]["ImageNet weights"]
