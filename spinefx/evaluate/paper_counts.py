"""A paper recomputed from its printed counts: which printed numbers the counts give, and which not.

A folder of TSV files transcribed from the paper (``table1.tsv``, ``table2.tsv``,
``mcnemar_claims.tsv``, ``error_analysis.tsv``, ``text.tsv``; config/paper_counts/ holds Yeh et al.
2022) goes through the same functions as a cohort's rows. Every printed percentage and p-value is
compared with the value the counts give, at the paper's own rounding; a McNemar claim, whose
paired table the paper does not print, is checked against the smallest p-value any paired table
with the printed margins allows (:func:`spinefx.evaluate.paired.mcnemar_bounds`).
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import pandas as pd

from spinefx.errors import SpinefxError
from spinefx.evaluate.error_analysis import error_analysis_from_counts
from spinefx.evaluate.paired import mcnemar_bounds
from spinefx.evaluate.stats import diagnostic_from_counts, table1_from_counts

FILES = ("table1", "table2", "mcnemar_claims", "error_analysis", "text")
COLUMNS = ["table", "item", "printed", "recomputed", "consistent", "note"]
FRACTION = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*\(\s*([\d.]+)\s*%\s*\)\s*$")
P_PRINTED = re.compile(r"^\s*(?:p\s*)?(<=|≤|<|=)?\s*([\d.]+)\s*$", re.IGNORECASE)


def load_paper_counts(folder: str | Path) -> dict[str, pd.DataFrame]:
    """Read the transcribed tables (``#`` lines are comments; every cell is kept as printed)."""
    folder = Path(folder)
    out = {}
    for name in FILES:
        path = folder / f"{name}.tsv"
        if not path.is_file():
            raise SpinefxError(
                "paper counts file not found", path=path, fix=f"write {name}.tsv (see config/paper_counts/)"
            )
        out[name] = pd.read_csv(path, sep="\t", comment="#", dtype=str, keep_default_na=False)
    for name in ("table1", "error_analysis"):
        for col in out[name].columns:
            if col.endswith(("_positive", "_total")):
                out[name][col] = out[name][col].astype(int)
    for col in ("tp", "tn", "fn", "fp"):
        out["table2"][col] = out["table2"][col].astype(int)
    return out


def _decimals(text: str) -> int:
    return len(text.split(".")[1]) if "." in text else 0


def pct_consistent(printed_pct: float, k: int, n: int) -> bool:
    """A whole-percent cell is consistent when 100 k / n rounds to it (either way at .5)."""
    return n > 0 and abs(100 * k / n - printed_pct) <= 0.5 + 1e-9


def p_consistent(printed: str, p: float) -> bool:
    """ "<0.001", "p < 0.01", "p <= 0.001", "0.18", "p = 0.01", "1": is p what was printed, at the
    printed number of decimals?"""
    m = P_PRINTED.match(printed)
    if not m:
        raise SpinefxError(
            f"cannot read the printed p-value {printed!r}", fix='write it as "<0.001", "0.18" or "p = 0.01"'
        )
    op, value = m.group(1) or "=", float(m.group(2))
    if op == "<":
        return p < value
    if op in ("<=", "≤"):
        return round(p, _decimals(m.group(2))) <= value
    return round(p, _decimals(m.group(2))) == value


def _fraction_rows(table: str, item: str, printed: str, k: int, n: int) -> dict:
    m = FRACTION.match(printed)
    if not m:
        raise SpinefxError(f"{table}, {item}: cannot read {printed!r}", fix='write it as "17/50 (34%)"')
    pk, pn, pct = int(m.group(1)), int(m.group(2)), float(m.group(3))
    ok = (pk, pn) == (k, n) and pct_consistent(pct, k, n)
    note = "" if (pk, pn) == (k, n) else f"the printed fraction {pk}/{pn} is not the counts' {k}/{n}"
    if not pct_consistent(pct, pk, pn):
        note = f"{pk}/{pn} is {100 * pk / pn:.1f}%, not {pct:g}%"
    return {
        "table": table,
        "item": item,
        "printed": printed,
        "recomputed": f"{k}/{n} ({100 * k / n:.1f}%)",
        "consistent": ok,
        "note": note,
    }


def _p_row(table: str, item: str, printed: str, p: float, note: str = "") -> dict:
    ok = p_consistent(printed, p)
    return {
        "table": table,
        "item": item,
        "printed": printed,
        "recomputed": f"{p:.3g}",
        "consistent": ok,
        "note": note if ok or note else "Fisher's exact p from the printed counts differs",
    }


def recompute_paper(counts: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """Table 1, Table 2, the McNemar bounds and the error analysis rebuilt from the counts."""
    t1 = table1_from_counts(counts["table1"])
    t2 = diagnostic_from_counts(counts["table2"])
    pos = t2.set_index("reader")
    rows = []
    for r in counts["mcnemar_claims"].itertuples(index=False):
        a, b = pos.loc[r.reader_a], pos.loc[r.reader_b]
        key, n = ("tp", a.tp + a.fn) if r.measure == "sensitivity" else ("tn", a.tn + a.fp)
        bound = mcnemar_bounds(int(a[key]), int(b[key]), int(n))
        rows.append(
            {
                "claim": r.claim,
                "measure": r.measure,
                "reader_a": r.reader_a,
                "reader_b": r.reader_b,
                "n": int(n),
                "correct_a": int(a[key]),
                "correct_b": int(b[key]),
                **bound,
                "printed": r.printed,
                "method": "exact McNemar over every paired table with these margins",
            }
        )
    ea = error_analysis_from_counts(counts["error_analysis"])
    return {"table1": t1, "table2": t2, "mcnemar_bounds": pd.DataFrame(rows), "error_analysis": ea}


def printed_vs_recomputed(counts: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """One row per printed value: table, item, printed, recomputed, consistent (+ a note saying why)."""
    re_ = recompute_paper(counts)
    rows: list[dict] = []
    t1 = re_["table1"].set_index("feature")
    for r in counts["table1"].itertuples(index=False):
        rows.append(
            _fraction_rows(
                "Table 1",
                f"{r.feature}: malignant",
                r.malignant_printed,
                r.malignant_positive,
                r.malignant_total,
            )
        )
        rows.append(
            _fraction_rows(
                "Table 1", f"{r.feature}: benign", r.benign_printed, r.benign_positive, r.benign_total
            )
        )
        rows.append(_p_row("Table 1", f"{r.feature}: p-value", r.p_printed, t1.loc[r.feature, "p_value"]))
    for r in counts["table2"].itertuples(index=False):
        for measure, k, n in (
            ("sensitivity", r.tp, r.tp + r.fn),
            ("specificity", r.tn, r.tn + r.fp),
            ("accuracy", r.tp + r.tn, r.tp + r.tn + r.fn + r.fp),
        ):
            rows.append(
                _fraction_rows("Table 2", f"{r.reader}: {measure}", getattr(r, f"{measure}_printed"), k, n)
            )
    for r in re_["mcnemar_bounds"].itertuples(index=False):
        ok = p_consistent(r.printed, r.p_min)
        rows.append(
            {
                "table": "McNemar",
                "item": f"{r.claim} ({r.measure}: {r.correct_a} vs {r.correct_b} of {r.n})",
                "printed": r.printed,
                "recomputed": f"p >= {r.p_min:.3g}",
                "consistent": ok,
                "note": f"{r.min_discordant} to {r.max_discordant} discordant patients: exact p between "
                f"{r.p_min:.3g} and {r.p_max:.3g}",
            }
        )
    ea = re_["error_analysis"]
    for r, p in zip(counts["error_analysis"].itertuples(index=False), ea["p_value"], strict=True):
        item = f"{r.reader}, {r.comparison}: {r.feature}"
        rows.append(
            _fraction_rows(
                "Error analysis", f"{item} (errors)", r.error_printed, r.error_positive, r.error_total
            )
        )
        rows.append(
            _fraction_rows(
                "Error analysis", f"{item} (correct)", r.correct_printed, r.correct_positive, r.correct_total
            )
        )
        rows.append(_p_row("Error analysis", f"{item}: p-value", r.p_printed, p))
    for r in counts["text"].itertuples(index=False):
        rows.append(_text_row(r, counts, re_))
    return pd.DataFrame(rows, columns=COLUMNS)


def _numbers(text: str) -> list[float]:
    return [float(x) for x in re.findall(r"\d+(?:\.\d+)?", text)]


def _text_row(r, counts: dict[str, pd.DataFrame], re_: dict[str, pd.DataFrame]) -> dict:
    kind, _, arg = r.kind.partition(":")
    row = {"table": "Text", "item": f"{r.item} [{r.source}]", "printed": r.printed}
    t1, t2 = re_["table1"].set_index("feature"), re_["table2"].set_index("reader")
    if kind in ("n_features_p_le_0.001", "n_features_p_lt_0.001"):
        strict = (
            int((t1["p_value"] < 0.001).sum())
            if kind.endswith("lt_0.001")
            else int((t1["p_value"] <= 0.001).sum())
        )
        rounded = int((t1["p_value"].round(3) <= 0.001).sum())
        want = int(_numbers(r.printed)[0])
        ok = strict == want or (kind.endswith("le_0.001") and rounded == want)
        near = t1.index[(t1["p_value"] > 0.001) & (t1["p_value"].round(3) <= 0.001)]
        return row | {
            "recomputed": f"{strict} ({rounded} with p rounded to 3 decimals)",
            "consistent": ok,
            "note": "; ".join(f"{f}: p = {t1.loc[f, 'p_value']:.5f}" for f in near),
        }
    if kind in (
        "accuracy_pct",
        "sensitivity_pct",
        "specificity_pct",
        "fp_rate_pct",
        "sensitivity_specificity_pct",
    ):
        readers = arg.split(",")
        measures = ["sensitivity", "specificity"] if kind == "sensitivity_specificity_pct" else [kind[:-4]]
        got = []
        for reader in readers:
            for m in measures:
                v = 1 - t2.loc[reader, "specificity"] if m == "fp_rate" else t2.loc[reader, m]
                got.append(100 * float(v))
        printed = _numbers(r.printed)
        ok = len(printed) == len(got) and all(
            abs(g - p) <= 0.5 + 1e-9 for g, p in zip(got, printed, strict=True)
        )
        bad = [f"{p:g} vs {g:.1f}" for g, p in zip(got, printed, strict=False) if abs(g - p) > 0.5 + 1e-9]
        return row | {
            "recomputed": ", ".join(f"{g:.1f}" for g in got),
            "consistent": ok,
            "note": ("printed " + "; ".join(bad)) if bad else "",
        }
    if kind == "table1_pct":
        c = t1.loc[arg]
        got = [100 * c.malignant_positive / c.malignant_total, 100 * c.benign_positive / c.benign_total]
        printed = _numbers(r.printed)
        ok = all(abs(g - p) <= 0.5 + 1e-9 for g, p in zip(got, printed, strict=True))
        return row | {"recomputed": ", ".join(f"{g:.1f}" for g in got), "consistent": ok, "note": ""}
    if kind == "error_analysis_margins":
        ea = counts["error_analysis"]
        parts, ok = [], True
        for e in ea.itertuples(index=False):
            total = e.error_positive + e.correct_positive
            ok &= (
                total == t1.loc[e.feature, "benign_positive"]
                and e.error_total + e.correct_total == t1.loc[e.feature, "benign_total"]
            )
            parts.append(
                f"{e.feature} {total}/{e.error_total + e.correct_total} vs Table 1 "
                f"{t1.loc[e.feature, 'benign_positive']}/{t1.loc[e.feature, 'benign_total']}"
            )
        return row | {
            "recomputed": "; ".join(parts),
            "consistent": bool(ok),
            "note": "the two tables agree" if ok else "",
        }
    if kind == "not_recomputable":
        return row | {
            "recomputed": "NA",
            "consistent": math.nan,
            "note": "needs patient-level data the paper does not print",
        }
    raise SpinefxError(f"text.tsv: unknown kind {r.kind!r}", fix="see spinefx/evaluate/paper_counts.py")
