"""The paper recomputed from its printed counts: what agrees, what the counts contradict (pinned)."""

from __future__ import annotations

from pathlib import Path

import pytest

from spinefx.evaluate import paper_counts as pc
from spinefx.features import PAPER_TABLE1, PAPER_TABLE2

FOLDER = Path(__file__).resolve().parents[2] / "config" / "paper_counts"


@pytest.fixture(scope="module")
def counts() -> dict:
    return pc.load_paper_counts(FOLDER)


def test_transcription_agrees_with_the_library_copy(counts: dict) -> None:
    t1 = counts["table1"].set_index("feature")
    for f, v in PAPER_TABLE1.items():
        assert (t1.loc[f, "malignant_positive"], t1.loc[f, "malignant_total"]) == v["malignant"]
        assert (t1.loc[f, "benign_positive"], t1.loc[f, "benign_total"]) == v["benign"]
    t2 = counts["table2"].set_index("reader")
    for reader, c in PAPER_TABLE2.items():
        assert {k: int(t2.loc[reader, k]) for k in c} == c


def test_printed_vs_recomputed_is_pinned(counts: dict) -> None:
    t = pc.printed_vs_recomputed(counts)
    assert list(t.columns)[:5] == ["table", "item", "printed", "recomputed", "consistent"]
    assert len(t) == 89
    bad = t[t["consistent"] == False]  # noqa: E712  (NaN = not recomputable)
    assert sorted(bad["item"]) == sorted(
        [
            "homogeneous_marrow_signal: benign",  # 48/140 is 34%, printed 41%
            "fluid_or_necrotic_cleft: p-value",  # Fisher 0.449, printed 0.045
            "vertebral_body_protrusion: p-value",  # Fisher 0.0058, printed 0.07
            "R1 sensitivity worse than MSK (sensitivity: 39 vs 47 of 50)",
            "R1 sensitivity worse than R4 (sensitivity: 39 vs 47 of 50)",
            "R1 sensitivity worse than model (model improved sensitivity 78 to 94%) "
            "(sensitivity: 39 vs 47 of 50)",
            "model specificity worse than R4 (specificity: 128 vs 135 of 140)",
            "features with p < 0.001 (Table 1) [Abstract]",  # 9: pedicle involvement is 0.00108
            "specificity of MSK, R4, R1, model (%) [Results]",  # "910%"
        ]
    )
    assert t["consistent"].isna().sum() == 3  # feature-model accuracy, per-slice AUC, "3 features"
    row = t.set_index("item").loc["R1 sensitivity worse than R4 (sensitivity: 39 vs 47 of 50)"]
    assert row["recomputed"] == "p >= 0.00781"  # 8 discordant patients at best: 2 * 0.5**8
    # every count-derived number of Tables 1 and 2 is reproduced
    table2 = t[t["table"] == "Table 2"]
    assert len(table2) == 12 and table2["consistent"].all()
    le = t.set_index("item").loc["features with p <= 0.001 (Table 1) [Results]"]
    assert le["consistent"] and le["recomputed"].startswith("9 (10 with p rounded")


def test_recomputed_tables(counts: dict) -> None:
    r = pc.recompute_paper(counts)
    t2 = r["table2"].set_index("reader")
    assert round(100 * t2.loc["Resident R1", "accuracy"]) == 66
    b = r["mcnemar_bounds"].set_index("claim")
    assert b.loc["model specificity worse than MSK", "p_min"] == pytest.approx(2 * 0.5**11)
    assert len(r["table1"]) == 15 and r["table1"]["or_lo"].notna().all()


@pytest.mark.parametrize(
    "printed,p,ok",
    [
        ("<0.001", 0.0009, True),
        ("<0.001", 0.00108, False),
        ("0.18", 0.1826, True),
        ("1", 1.0, True),
        ("p = 0.01", 0.0145, True),
        ("p < 0.01", 0.0142, False),
        ("0.045", 0.449, False),
        ("p <= 0.001", 0.00108, True),
    ],
)
def test_p_consistent(printed: str, p: float, ok: bool) -> None:
    assert pc.p_consistent(printed, p) is ok
