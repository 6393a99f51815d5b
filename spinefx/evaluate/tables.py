"""Write a result table for machines (TSV, full precision, raw keys) and for people (Markdown, HTML,
readable column names).

The Markdown rounds floats to ``float_digits`` and prints p-values the way journals do
("<0.001"), so a reader never has to open the TSV; the TSV keeps every digit for reanalysis.
"""

from __future__ import annotations

import html
import math
from pathlib import Path

import numpy as np
import pandas as pd

from spinefx.atomic import atomic_path, write_text


def is_p_column(name: str) -> bool:
    """p-value columns are named ``p``, ``p_value``, ``p_holm``, ``p_...`` or ``..._p``."""
    n = name.lower()
    return n == "p" or n.startswith("p_") or n.endswith("_p")


# Raw TSV keys -> what a reader of the Markdown/HTML sees. Keys not listed are spelled out by
# :func:`readable` (underscores to spaces, ``_lo``/``_hi`` as the CI bounds).
COLUMN_LABELS: dict[str, str] = {
    "tp": "TP",
    "tn": "TN",
    "fn": "FN",
    "fp": "FP",
    "n": "N",
    "p_value": "p",
    "p_holm": "p (Holm)",
    "p_exact": "p (exact)",
    "p_midp": "p (mid-p)",
    "p_exact_holm": "p exact (Holm)",
    "p_midp_holm": "p mid-p (Holm)",
    "ppv": "PPV",
    "npv": "NPV",
    "lr_positive": "LR+",
    "lr_negative": "LR-",
    "auc": "AUC",
    "se": "SE",
    "ci_method": "CI method",
    "or_method": "OR method",
    "odds_ratio": "odds ratio",
    "or": "OR",
    "coef": "coefficient",
    "auc_a": "AUC a",
    "auc_b": "AUC b",
}


def readable(name: str) -> str:
    """A column name for people: ``sensitivity_lo`` -> "sensitivity 95% CI low", ``p_holm`` -> "p (Holm)"."""
    if name in COLUMN_LABELS:
        return COLUMN_LABELS[name]
    for suffix, words in (("_lo", "CI low"), ("_hi", "CI high")):
        if name.endswith(suffix) and len(name) > len(suffix):
            return f"{readable(name[: -len(suffix)])} {words}"
    return name.replace("_", " ")


def format_p(p: float, *, floor: float = 0.001) -> str:
    """Journal style: "<0.001" below ``floor``, 3 decimals below 0.1, 2 above; "NA" when missing."""
    if p is None or (isinstance(p, float) and math.isnan(p)):
        return "NA"
    p = float(p)
    if p < floor:
        return f"<{floor:g}"
    return f"{p:.3f}" if p < 0.1 else f"{p:.2f}"


def _cell(value: object, *, p_column: bool, float_digits: int) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return "NA"
    if p_column and isinstance(value, (float, np.floating, int, np.integer)):
        return format_p(float(value))
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        magnitude = abs(value)
        if magnitude != 0 and (magnitude >= 1e6 or magnitude < 10 ** (-float_digits)):
            return f"{value:.{float_digits}g}"
        return f"{value:.{float_digits}f}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def to_markdown(
    df: pd.DataFrame, *, title: str | None = None, float_digits: int = 3, raw_names: bool = False
) -> str:
    """A GitHub-flavoured Markdown table (numbers right-aligned), optionally under a heading, with
    :func:`readable` column names unless ``raw_names``."""
    cols = [str(c) for c in df.columns]
    names = cols if raw_names else [readable(c) for c in cols]
    numeric = [
        pd.api.types.is_numeric_dtype(df[c]) and not pd.api.types.is_bool_dtype(df[c]) for c in df.columns
    ]
    lines = []
    if title:
        lines += [f"## {title}", ""]
    lines.append("| " + " | ".join(c.replace("|", "\\|") for c in names) + " |")
    lines.append("| " + " | ".join("---:" if num else "---" for num in numeric) + " |")
    p_cols = [is_p_column(c) for c in cols]
    for row in df.itertuples(index=False, name=None):
        cells = [_cell(v, p_column=p, float_digits=float_digits) for v, p in zip(row, p_cols, strict=True)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


HTML_STYLE = (
    "body{font-family:sans-serif;margin:1em}table{border-collapse:collapse}"
    "th,td{border:1px solid #ccc;padding:2px 8px}td.num{text-align:right}th{background:#eee}"
)


def to_html(
    df: pd.DataFrame, *, title: str | None = None, float_digits: int = 3, raw_names: bool = False
) -> str:
    """A standalone HTML page with the table formatted as in the Markdown (for the Snakemake report);
    the raw key of each column stays in its header's title attribute."""
    cols = [str(c) for c in df.columns]
    p_cols = [is_p_column(c) for c in cols]
    numeric = [
        pd.api.types.is_numeric_dtype(df[c]) and not pd.api.types.is_bool_dtype(df[c]) for c in df.columns
    ]
    head = "".join(
        f'<th title="{html.escape(c)}">{html.escape(c if raw_names else readable(c))}</th>' for c in cols
    )
    body = []
    for row in df.itertuples(index=False, name=None):
        cells = [
            f'<td class="{"num" if num else "txt"}">'
            f"{html.escape(_cell(v, p_column=p, float_digits=float_digits).replace(chr(92) + '|', '|'))}</td>"
            for v, p, num in zip(row, p_cols, numeric, strict=True)
        ]
        body.append("<tr>" + "".join(cells) + "</tr>")
    heading = f"<h3>{html.escape(title)}</h3>" if title else ""
    return (
        f'<!DOCTYPE html><html><head><meta charset="utf-8"><style>{HTML_STYLE}</style></head><body>'
        f"{heading}<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table></body></html>\n"
    )


def write_table(
    df: pd.DataFrame,
    tsv_path: str | Path,
    *,
    title: str | None = None,
    float_digits: int = 3,
    markdown: bool = True,
    html_page: bool = False,
) -> Path:
    """Write ``df`` as TSV (full precision, "NA" for missing) and, unless ``markdown`` is False, as
    Markdown beside it (.md); with ``html_page`` also as a standalone HTML page (.html) for the report.

    Both files are written atomically; returns the Markdown path (the TSV path without Markdown).
    """
    tsv_path = Path(tsv_path)
    with atomic_path(tsv_path) as tmp:
        df.to_csv(tmp, sep="\t", index=False, na_rep="NA")
    if not markdown:
        return tsv_path
    md_path = tsv_path.with_suffix(".md")
    write_text(md_path, to_markdown(df, title=title, float_digits=float_digits))
    if html_page:
        write_text(tsv_path.with_suffix(".html"), to_html(df, title=title, float_digits=float_digits))
    return md_path
