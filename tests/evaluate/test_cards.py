"""Case card: where the patient falls on the ROC by hand, and a card with no identity in it."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from spinefx.evaluate.cards import case_card, operating_point
from spinefx.learn.final import predict_patients, write_ensemble

sys.path.insert(0, str(Path(__file__).parents[1] / "learn"))  # the learn tests' fixtures
from test_dataset import write_cohort  # noqa: E402
from test_final import fold_models  # noqa: E402


def oof() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "label": ["malignant", "malignant", "benign", "benign", "benign"],
            "prob_calibrated": [0.9, 0.4, 0.6, 0.2, 0.1],
        }
    )


def test_operating_point_by_hand():
    # cut at 0.5: malignant 0.9 above (1 of 2), benign 0.6 above (1 of 3)
    assert operating_point(oof(), 0.5) == pytest.approx((1 / 3, 0.5))
    assert operating_point(oof(), 0.05) == (1.0, 1.0)


def test_case_card_is_written_without_identity(tmp_path):
    files, _ = write_cohort(tmp_path / "patches", 1, 1, k=1, copies=(0, 0))
    final = tmp_path / "model.pt"
    write_ensemble(fold_models(tmp_path / "folds", k=2), final)
    pred, _ = predict_patients(final, files)
    pid = pred["patient_id"].iloc[0]
    vol = sitk.GetImageFromArray(np.random.default_rng(0).random((12, 80, 60)).astype(np.float32))
    vol.SetSpacing((0.8, 0.8, 4.0))
    for name in ("t2", "t1"):
        sitk.WriteImage(vol, str(tmp_path / f"{name}.nii.gz"))
    (tmp_path / "t2.json").write_text(json.dumps({"instance_numbers": list(range(1, 13))}))
    png, page = tmp_path / "cards" / f"{pid}.png", tmp_path / "cards" / f"{pid}.html"
    case_card(
        pid,
        t2_nii=tmp_path / "t2.nii.gz",
        t1_in_t2_nii=tmp_path / "t1.nii.gz",
        t2_sidecar=tmp_path / "t2.json",
        lesion_instance=6,
        box=(10, 20, 40, 50),
        patch_file=files[pid],
        model_path=final,
        prediction=pred.set_index("patient_id").loc[pid].to_dict() | {"prob_calibrated": 0.3},
        oof=oof(),
        threshold=0.5,
        out_png=png,
        out_html=page,
        saliency_steps=4,
    )
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 30_000
    text = page.read_text()
    assert f"Case card: {pid}" in text and "data:image/png;base64," in text and "not a diagnosis" in text
