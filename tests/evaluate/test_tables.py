"""TSV keeps every digit, Markdown reads like a journal table."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from spinefx.evaluate.tables import format_p, to_markdown, write_table


def table() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "feature": ["a|b", "c", "d"],
            "malignant_positive": [17, 0, 5],
            "sensitivity": [0.94, 2 / 3, np.nan],
            "p_value": [8.37e-9, 0.0123456, 0.5],
            "p_holm": [1.2e-7, 0.1, 1.0],
        }
    )


def test_format_p() -> None:
    assert format_p(8.37e-9) == "<0.001"
    assert format_p(0.000999) == "<0.001"
    assert format_p(0.001) == "0.001"
    assert format_p(0.0123456) == "0.012"
    assert format_p(0.5) == "0.50"
    assert format_p(float("nan")) == "NA"


def test_write_table_tsv_full_precision_and_markdown(tmp_path: Path) -> None:
    tsv = tmp_path / "tables" / "table1_features.tsv"
    md = write_table(table(), tsv, title="Table 1: features")
    assert md == tsv.with_suffix(".md") and md.exists() and tsv.exists()
    back = pd.read_csv(tsv, sep="\t")
    assert list(back.columns) == list(table().columns)
    assert back.loc[1, "sensitivity"] == 2 / 3  # every digit survives the round trip
    assert back.loc[0, "p_value"] == 8.37e-9
    assert np.isnan(back.loc[2, "sensitivity"])
    text = md.read_text()
    lines = text.splitlines()
    assert lines[0] == "## Table 1: features"
    # readable names for people, the raw keys in the TSV
    assert lines[2] == "| feature | malignant positive | sensitivity | p | p (Holm) |"
    assert lines[3] == "| --- | ---: | ---: | ---: | ---: |"
    assert lines[4] == "| a\\|b | 17 | 0.940 | <0.001 | <0.001 |"
    assert lines[5] == "| c | 0 | 0.667 | 0.012 | 0.10 |"
    assert lines[6] == "| d | 5 | NA | 0.50 | 1.00 |"
    # nothing temporary left behind
    assert sorted(p.name for p in tsv.parent.iterdir()) == ["table1_features.md", "table1_features.tsv"]


def test_float_digits_and_extremes() -> None:
    df = pd.DataFrame(
        {"term": ["x", "y", "z"], "odds_ratio": [122043.625, 1.79e-9, 3.2e7], "coef": [1.23456, -2.0, np.inf]}
    )
    md = to_markdown(df, float_digits=2)
    assert "| x | 122043.62 | 1.23 |" in md
    assert "| y | 1.8e-09 | -2.00 |" in md  # tiny odds ratios (separation) stay readable
    assert "| z | 3.2e+07 | inf |" in md
    assert not md.startswith("##")


def test_failed_write_leaves_nothing(tmp_path: Path) -> None:
    class Boom(pd.DataFrame):
        def to_csv(self, *a, **k):  # type: ignore[override]
            raise OSError("disk full")

    with pytest.raises(OSError):
        write_table(Boom(table()), tmp_path / "t.tsv")
    assert list(tmp_path.iterdir()) == []


def test_readable_names_and_raw_keys_in_html() -> None:
    from spinefx.evaluate.tables import readable, to_html

    assert readable("sensitivity_lo") == "sensitivity CI low"
    assert readable("lr_positive_hi") == "LR+ CI high"
    assert readable("tp") == "TP" and readable("p_midp_holm") == "p mid-p (Holm)"
    page = to_html(table())
    assert '<th title="p_holm">p (Holm)</th>' in page
    assert "| p_value |" in to_markdown(table(), raw_names=True)
