"""Statistics-only runs (`cohort: null`): the paper from its printed counts; any model's per-patient table."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from spinefx.demo.cohort import assign_labels, draw_features, draw_reader_calls
from spinefx.evaluate import paper_counts, report_tables

from workflow_run import REPO, snakemake


def test_paper_counts_example_recomputes_the_paper(tmp_path: Path) -> None:
    """config/paper_counts.yaml as the README runs it writes printed_vs_recomputed equal to the library's."""
    snakemake(
        tmp_path,
        "--cores",
        "1",
        "--configfile",
        str(REPO / "config" / "paper_counts.yaml"),
        "--config",
        f"stats={{paper_counts: {REPO / 'config' / 'paper_counts'}}}",
    )
    tables = tmp_path / "results" / "tables"
    for name in report_tables.table_names(per_patient=False, paper=True):
        for ext in ("tsv", "md", "html"):
            assert (tables / f"{name}.{ext}").is_file(), f"{name}.{ext}"
    got = pd.read_csv(tables / "printed_vs_recomputed.tsv", sep="\t", dtype=str, keep_default_na=False)
    assert list(got.columns)[:5] == ["table", "item", "printed", "recomputed", "consistent"]
    want = paper_counts.printed_vs_recomputed(
        paper_counts.load_paper_counts(REPO / "config" / "paper_counts")
    )
    assert list(got["item"]) == list(want["item"])
    assert list(got["consistent"] == "False") == list(want["consistent"] == False)  # noqa: E712
    assert (got["consistent"] == "False").sum() == 9
    assert not (tmp_path / "results" / "predictions").exists()  # no images, no training


def test_any_models_per_patient_table_gets_every_table(tmp_path: Path) -> None:
    """A model's probabilities with readers and features, no DICOM: the tables and figures of a full run."""
    labels = assign_labels(40, seed=5, malignant_fraction=0.4)
    rng = np.random.default_rng(5)
    features = {pid: draw_features(rng, lab) for pid, lab in labels.items()}
    pd.DataFrame([{"patient_id": p, **f} for p, f in features.items()]).to_csv(
        tmp_path / "features.tsv", sep="\t", index=False
    )
    draw_reader_calls(labels, features, seed=5).to_csv(tmp_path / "readers.tsv", sep="\t", index=False)
    y = np.array([lab == "malignant" for lab in labels.values()])
    prob = np.clip(0.5 + 0.35 * (2 * y - 1) + rng.normal(0, 0.25, len(y)), 0.01, 0.99)
    pd.DataFrame({"patient_id": list(labels), "label": list(labels.values()), "prob": prob}).to_csv(
        tmp_path / "model.tsv", sep="\t", index=False
    )
    (tmp_path / "stats_only.yaml").write_text(
        "cohort: null\n"
        f"readers: {tmp_path / 'readers.tsv'}\n"
        f"features: {tmp_path / 'features.tsv'}\n"
        f"stats: {{per_patient: {tmp_path / 'model.tsv'}, model_reader: my model,"
        " feature_model_repeats: 2}\n"
    )
    snakemake(tmp_path, "--cores", "1", "--configfile", str(tmp_path / "stats_only.yaml"))
    tables = tmp_path / "results" / "tables"
    for name in report_tables.table_names(has_prob=True, readers=True, features=True):
        assert (tables / f"{name}.tsv").is_file(), name
    for fig in ("decision_curve", "roc", "confusion"):
        assert (tmp_path / "results" / "figures" / f"{fig}.png").stat().st_size > 1000, fig
    t2 = pd.read_csv(tables / "table2_diagnostic.tsv", sep="\t").set_index("reader")
    call = prob >= 0.5
    assert t2.loc["my model", "tp"] == int((call & y).sum())
    assert t2.loc["my model", "tn"] == int((~call & ~y).sum())
