"""Small glue shared by the workflow scripts: which sheet row a job works on."""

from __future__ import annotations

from pathlib import Path

from spinefx import sheets


def resolve_record(record: dict, sheet: str | Path | None, patient: str) -> dict:
    """The plain-value sheet row of ``patient``: from params (real cohort) or the demo's sheet file."""
    if record:
        return dict(record)
    if sheet is None:
        raise ValueError(f"no sheet row for patient {patient}: neither params.record nor input.sheet given")
    table = sheets.load_patients(sheet)
    return sheets.patient_record(table, patient)
