"""The report's "What was run" table describes the config it is given, without patient-level rows."""

from __future__ import annotations

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
