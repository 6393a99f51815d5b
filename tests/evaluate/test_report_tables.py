"""The one list of tables a run plans, and the tables built for it: planned = made, per input."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from spinefx.demo.cohort import assign_labels, draw_features, draw_reader_calls
from spinefx.errors import SpinefxError
from spinefx.evaluate import report_tables
from spinefx.settings import section_defaults

PAPER_COUNTS = Path(__file__).resolve().parents[2] / "config" / "paper_counts"


@pytest.fixture(scope="module")
def cohort() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    labels = assign_labels(40, seed=2, malignant_fraction=0.4)
    rng = np.random.default_rng(2)
    feats = {p: draw_features(rng, lab) for p, lab in labels.items()}
    y = np.array([lab == "malignant" for lab in labels.values()])
    prob = np.clip(0.5 + 0.3 * (2 * y - 1) + rng.normal(0, 0.25, len(y)), 0.01, 0.99)
    per_patient = pd.DataFrame({"patient_id": list(labels), "label": list(labels.values()), "prob": prob})
    features = pd.DataFrame([{"patient_id": p, **f} for p, f in feats.items()])
    return per_patient, draw_reader_calls(labels, feats, seed=2), features


def test_table_names_follow_the_inputs() -> None:
    base = report_tables.table_names()
    assert base[:4] == ["table2_diagnostic", "operating_characteristics", "mcnemar", "paired_differences"]
    assert "model_auc" in base and "reader_agreement" not in base and "table1_features" not in base
    calls_only = report_tables.table_names(has_prob=False, features=True)
    assert "model_auc" not in calls_only and "decision_curve" not in calls_only
    assert "model_comparison" not in calls_only and "feature_model" in calls_only
    assert report_tables.table_names(per_patient=False, paper=True) == [
        *report_tables.PAPER_TABLES,
        "printed_vs_recomputed",
    ]
    assert "per_slice_auc" in report_tables.table_names(per_slice=True)


@pytest.mark.parametrize(
    ("has_prob", "readers", "features"), list(itertools.product([True, False], repeat=3))
)
def test_tables_made_are_the_tables_planned(cohort, has_prob: bool, readers: bool, features: bool) -> None:
    per_patient, reader_calls, feats = cohort
    pp = per_patient.copy()
    pp["call"] = np.where(pp["prob"] >= 0.5, "malignant", "benign")  # as read_per_patient gives it
    if not has_prob:
        pp = pp.drop(columns="prob")
    settings = {**section_defaults("stats"), "feature_model_repeats": 1}
    made = report_tables.build_tables(
        pp,
        settings=settings,
        model="net",
        k=5,
        readers=reader_calls if readers else None,
        features=feats if features else None,
    )
    planned = report_tables.table_names(has_prob=has_prob, readers=readers, features=features)
    report_tables.check_names(made, planned)  # raises on any difference
    t2 = made["table2_diagnostic"][0].set_index("reader")
    y = pp["label"] == "malignant"
    called = (per_patient["prob"] >= 0.5).to_numpy()
    assert t2.loc["net", "tp"] == int((called & y).sum())
    assert t2.loc["net", "fp"] == int((called & ~y).sum())


def test_check_names_refuses_a_mismatch() -> None:
    with pytest.raises(SpinefxError, match="differ from those planned"):
        report_tables.check_names({"mcnemar": (pd.DataFrame(), "")}, ["mcnemar", "model_auc"])


def test_read_per_patient_derives_calls_and_refuses_bad_tables(tmp_path: Path) -> None:
    path = tmp_path / "pp.tsv"
    pd.DataFrame({"patient_id": ["a", "b"], "label": ["benign", "malignant"], "prob": [0.2, 0.7]}).to_csv(
        path, sep="\t", index=False
    )
    df = report_tables.read_per_patient(path, threshold=0.5)
    assert list(df["call"]) == ["benign", "malignant"]
    assert list(report_tables.read_per_patient(path, threshold=0.8)["call"]) == ["benign", "benign"]
    assert report_tables.has_prob_column(path)
    pd.DataFrame({"patient_id": ["a"], "label": ["benign"], "prob": [1.5]}).to_csv(
        path, sep="\t", index=False
    )
    with pytest.raises(SpinefxError, match="not in \\[0, 1\\]"):
        report_tables.read_per_patient(path, threshold=0.5)
    pd.DataFrame({"patient_id": ["a"], "label": ["benign"]}).to_csv(path, sep="\t", index=False)
    with pytest.raises(SpinefxError, match="prob or call"):
        report_tables.read_per_patient(path, threshold=0.5)
    with pytest.raises(SpinefxError, match="not found"):
        report_tables.read_per_patient(tmp_path / "missing.tsv", threshold=0.5)


def test_paper_tables_are_the_planned_ones() -> None:
    tables = report_tables.paper_tables(PAPER_COUNTS)
    report_tables.check_names(tables, report_tables.table_names(per_patient=False, paper=True))
    assert len(tables["printed_vs_recomputed"][0]) == 89
