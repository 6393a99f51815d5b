"""Load and check the sheets a user fills in (patients.tsv, readers.tsv, features.tsv).

The workflow calls these when the Snakefile loads, so a bad row fails the dry run with a message that
names the row's patient, the sheet and the fix — not a job three hours later.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from spinefx.errors import SpinefxError
from spinefx.features import FEATURES, LABELS

PATIENT_ID = re.compile(r"^[A-Za-z0-9_-]+$")
BASE_PATIENT_COLUMNS = ("patient_id", "label", "box_x0", "box_y0", "box_x1", "box_y1")
# A row gives its images one of two ways (issue 14 item 4): DICOM series, or NIfTI files already converted.
DICOM_COLUMNS = ("t1_dicom", "t2_dicom", "lesion_instance")
NIFTI_COLUMNS = ("t1_nifti", "t2_nifti", "lesion_slice")
PATIENT_COLUMNS = (*BASE_PATIENT_COLUMNS[:2], *DICOM_COLUMNS, *BASE_PATIENT_COLUMNS[2:])  # a DICOM sheet
OPTIONAL_PATIENT_COLUMNS = ("t1_series_uid", "t2_series_uid")
INT_COLUMNS = ("lesion_instance", "box_x0", "box_y0", "box_x1", "box_y1")
BOX_COLUMNS = ("box_x0", "box_y0", "box_x1", "box_y1")
NIFTI_SUFFIXES = (".nii", ".nii.gz")
READER_COLUMNS = ("patient_id", "reader", "call")


def read_tsv(path: str | Path) -> pd.DataFrame:
    """Read a tab-separated sheet as strings (no type guessing); lines starting with # are comments."""
    path = Path(path)
    if not path.is_file():
        raise SpinefxError("sheet not found.", path=path, fix="check the path in config/config.yaml.")
    try:
        df = pd.read_csv(path, sep="\t", dtype=str, comment="#", keep_default_na=False)
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise SpinefxError(f"cannot be parsed as a tab-separated sheet ({exc}).", path=path) from exc
    df.columns = [str(c).strip() for c in df.columns]
    return df.apply(lambda col: col.str.strip())


def _require_columns(df: pd.DataFrame, required: Iterable[str], path: Path) -> None:
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise SpinefxError(
            f"missing column(s) {', '.join(missing)}; found {', '.join(df.columns) or 'none'}.",
            path=path,
            fix=f"the sheet needs the tab-separated columns {', '.join(required)}.",
        )


def _check_ids(df: pd.DataFrame, path: Path) -> None:
    for i, pid in enumerate(df["patient_id"], start=2):
        if not PATIENT_ID.match(pid):
            raise SpinefxError(
                f"row {i}: patient_id {pid!r} has characters other than letters, digits, _ and -.",
                path=path,
                fix="use a pseudonymous id such as P017; it becomes part of file names.",
            )


def _check_labels(df: pd.DataFrame, path: Path, column: str) -> None:
    bad = df[~df[column].isin(LABELS)]
    if len(bad):
        pid, value = bad.iloc[0]["patient_id"], bad.iloc[0][column]
        raise SpinefxError(
            f"unknown {column} {value!r} ({len(bad)} row(s) in all).",
            patient=pid,
            path=path,
            fix=f"{column} must be one of {', '.join(LABELS)}.",
        )


UNLABELLED = "unknown"  # the label of a patient of the `predict:` sheet (new patients, truth unknown)


def _require_input_columns(df: pd.DataFrame, path: Path) -> None:
    """The sheet holds every DICOM column or every NIfTI column (or both, each row filling one kind)."""
    if all(c in df.columns for c in DICOM_COLUMNS) or all(c in df.columns for c in NIFTI_COLUMNS):
        return
    nifti_only = any(c in df.columns for c in NIFTI_COLUMNS) and not any(
        c in df.columns for c in DICOM_COLUMNS
    )
    wanted, other = (NIFTI_COLUMNS, DICOM_COLUMNS) if nifti_only else (DICOM_COLUMNS, NIFTI_COLUMNS)
    missing = [c for c in wanted if c not in df.columns]
    raise SpinefxError(
        f"missing column(s) {', '.join(missing)}; found {', '.join(df.columns) or 'none'}.",
        path=path,
        fix=f"give each patient's images as DICOM ({', '.join(DICOM_COLUMNS)}) or as NIfTI "
        f"({', '.join(NIFTI_COLUMNS)}); the sheet needs all the columns of the kind it uses "
        f"(here {', '.join(wanted)}; the other kind is {', '.join(other)}).",
    )


def _whole_number(pid: str, col: str, value: str, path: Path, what: str) -> int:
    if not re.fullmatch(r"-?\d+", value):
        raise SpinefxError(
            f"{col} is {value!r}, not a whole number.",
            patient=pid,
            path=path,
            fix=f"write {col} as an integer ({what}).",
        )
    return int(value)


def _row_source(row: pd.Series, path: Path) -> str:
    """'dicom' or 'nifti': which kind of input a row fills; a row mixing both or with neither is refused."""
    pid = row["patient_id"]
    dicom = [c for c in (*DICOM_COLUMNS, *OPTIONAL_PATIENT_COLUMNS) if row[c]]
    nifti = [c for c in NIFTI_COLUMNS if row[c]]
    if dicom and nifti:
        raise SpinefxError(
            f"the row fills both DICOM ({', '.join(dicom)}) and NIfTI ({', '.join(nifti)}) columns.",
            patient=pid,
            path=path,
            fix=f"give this patient's images one way: either {', '.join(DICOM_COLUMNS)} or "
            f"{', '.join(NIFTI_COLUMNS)}, and leave the other columns empty.",
        )
    if not dicom and not nifti:
        raise SpinefxError(
            f"the row has no images: {', '.join(DICOM_COLUMNS + NIFTI_COLUMNS)} are all empty.",
            patient=pid,
            path=path,
            fix=f"fill {', '.join(DICOM_COLUMNS)} (DICOM series) or {', '.join(NIFTI_COLUMNS)} "
            "(NIfTI files already converted).",
        )
    source, needed = ("nifti", NIFTI_COLUMNS) if nifti else ("dicom", DICOM_COLUMNS)
    missing = [c for c in needed if not row[c]]
    if missing:
        raise SpinefxError(
            f"{'NIfTI' if nifti else 'DICOM'} input without {', '.join(missing)}.",
            patient=pid,
            path=path,
            fix=f"a {'NIfTI' if nifti else 'DICOM'} row needs all of {', '.join(needed)}.",
        )
    return source


def _input_paths(df: pd.DataFrame, path: Path, check_files: bool) -> None:
    """Add t1_path/t2_path: the row's DICOM folder or NIfTI file, resolved relative to the sheet."""
    base = path.parent
    for series in ("t1", "t2"):
        resolved = []
        for pid, source, dicom, nifti in zip(
            df["patient_id"], df["source"], df[f"{series}_dicom"], df[f"{series}_nifti"], strict=True
        ):
            target = (base / (nifti if source == "nifti" else dicom)).resolve()
            if source == "nifti":
                if not target.name.endswith(NIFTI_SUFFIXES):
                    raise SpinefxError(
                        f"{series}_nifti {target} is not a .nii or .nii.gz file.",
                        patient=pid,
                        path=path,
                        fix=f"set {series}_nifti to the NIfTI file of the {series.upper()}W volume "
                        "(e.g. BIDS sub-*/anat/*_T1w.nii.gz), relative to the sheet.",
                    )
                if check_files and not target.is_file():
                    raise SpinefxError(
                        f"{series}_nifti file {target} does not exist.",
                        patient=pid,
                        path=path,
                        fix=f"set {series}_nifti to the NIfTI file of the {series.upper()}W volume, "
                        "relative to the sheet.",
                    )
            elif check_files and not target.is_dir():
                raise SpinefxError(
                    f"{series}_dicom folder {target} does not exist.",
                    patient=pid,
                    path=path,
                    fix=f"set {series}_dicom to the folder of the {series.upper()}W series, "
                    "relative to the sheet.",
                )
            resolved.append(str(target))
        df[f"{series}_path"] = resolved


def _int_column(values: list[int | None]) -> pd.Series | list[int]:
    """Whole numbers as an int column; with gaps (the other kind's rows) as objects holding None."""
    return values if None not in values else pd.Series(values, dtype=object)


def load_patients(
    path: str | Path, *, check_files: bool = True, labelled: bool | None = True
) -> pd.DataFrame:
    """Read patients.tsv, check every row, and return it typed, indexed by patient_id.

    A row gives its images as DICOM (``t1_dicom``, ``t2_dicom``, ``lesion_instance``) or as NIfTI
    files already converted (``t1_nifti``, ``t2_nifti``, ``lesion_slice``, the 0-based index along the
    T2W file's third voxel axis); ``source`` says which (``dicom`` / ``nifti``), and the other kind's
    columns are None. Adds ``t1_path`` and ``t2_path``: the DICOM folders or NIfTI files resolved
    relative to the sheet.
    ``labelled=False`` reads a `predict:` sheet of new patients: the same columns without ``label``
    (a label there is refused, so truth cannot reach the prediction), every label ``unknown``;
    ``None`` accepts either.
    """
    path = Path(path)
    df = read_tsv(path)
    if labelled is False and "label" in df.columns:
        raise SpinefxError(
            "the predict sheet has a label column.",
            path=path,
            fix="remove the label column: new patients are predicted without their truth.",
        )
    if labelled is not True and "label" not in df.columns:
        df["label"] = UNLABELLED
        labelled = False
    _require_columns(df, BASE_PATIENT_COLUMNS, path)
    _require_input_columns(df, path)
    if df.empty:
        raise SpinefxError("the sheet has no patients.", path=path)
    _check_ids(df, path)
    dup = df["patient_id"][df["patient_id"].duplicated()].unique()
    if len(dup):
        raise SpinefxError(
            f"duplicate patient_id(s): {', '.join(dup)}.",
            path=path,
            fix="each patient must appear once; give the second a different id.",
        )
    if labelled is not False:
        _check_labels(df, path, "label")
    for col in (*OPTIONAL_PATIENT_COLUMNS, *DICOM_COLUMNS, *NIFTI_COLUMNS):
        if col not in df.columns:
            df[col] = ""
    df["source"] = [_row_source(row, path) for _, row in df.iterrows()]
    for col in BOX_COLUMNS:
        df[col] = [
            _whole_number(p, col, v, path, "pixels") for p, v in zip(df["patient_id"], df[col], strict=True)
        ]
    instances = []
    slices = []
    for pid, source, inst, k in zip(
        df["patient_id"], df["source"], df["lesion_instance"], df["lesion_slice"], strict=True
    ):
        if source == "dicom":
            instances.append(
                _whole_number(pid, "lesion_instance", inst, path, "InstanceNumber for the lesion")
            )
            slices.append(None)
            continue
        k = _whole_number(pid, "lesion_slice", k, path, "the 0-based T2W slice index")
        if k < 0:
            raise SpinefxError(
                f"lesion_slice is {k}; slice indices start at 0.",
                patient=pid,
                path=path,
                fix="lesion_slice is the 0-based index of the lesion slice along the T2W NIfTI's third "
                "voxel axis (the first slice is 0).",
            )
        instances.append(None)
        slices.append(k)
    df["lesion_instance"] = _int_column(instances)
    df["lesion_slice"] = _int_column(slices)
    for row in df.itertuples():
        if row.box_x0 < 0 or row.box_y0 < 0:
            raise SpinefxError(
                f"box starts at negative pixel ({row.box_x0}, {row.box_y0}).",
                patient=row.patient_id,
                path=path,
                fix="box columns are 0-based pixel columns (x) and rows (y).",
            )
        if row.box_x1 <= row.box_x0 or row.box_y1 <= row.box_y0:
            raise SpinefxError(
                f"box ({row.box_x0}, {row.box_y0}, {row.box_x1}, {row.box_y1}) is empty or inverted.",
                patient=row.patient_id,
                path=path,
                fix="box_x1/box_y1 are exclusive and must be larger than box_x0/box_y0.",
            )
    _input_paths(df, path, check_files)
    for col in (*OPTIONAL_PATIENT_COLUMNS, "t1_dicom", "t2_dicom", "t1_nifti", "t2_nifti"):
        df[col] = pd.Series([v or None for v in df[col]], index=df.index, dtype=object)
    return df.set_index("patient_id", drop=False)


def check_fold_counts(patients: pd.DataFrame, k: int, *, path: str | Path | None = None) -> None:
    """Stratified k-fold needs at least k patients of each class."""
    counts = patients["label"].value_counts().reindex(list(LABELS), fill_value=0)
    short = {lab: int(n) for lab, n in counts.items() if n < k}
    if short:
        have = ", ".join(f"{n} {lab}" for lab, n in counts.items())
        raise SpinefxError(
            f"too few patients for {k} folds: have {have}; each class needs at least {k}.",
            path=path,
            fix=f"set folds.k to at most {int(counts.min())} (and at least 2), or add patients.",
        )


def _check_known(df: pd.DataFrame, patient_ids: Iterable[str], path: Path) -> None:
    unknown = sorted(set(df["patient_id"]) - set(patient_ids))
    if unknown:
        raise SpinefxError(
            f"{len(unknown)} row(s) for patients not in patients.tsv: {', '.join(unknown[:10])}.",
            path=path,
            fix="remove those rows or add the patients to patients.tsv.",
        )


def load_readers(path: str | Path, patient_ids: Iterable[str]) -> pd.DataFrame:
    """Read readers.tsv (patient_id, reader, call) and check it against the patients."""
    path = Path(path)
    df = read_tsv(path)
    _require_columns(df, READER_COLUMNS, path)
    _check_ids(df, path)
    _check_labels(df, path, "call")
    _check_known(df, patient_ids, path)
    dup = df.duplicated(["patient_id", "reader"])
    if dup.any():
        row = df[dup].iloc[0]
        raise SpinefxError(
            f"reader {row['reader']!r} has more than one call.",
            patient=row["patient_id"],
            path=path,
            fix="keep one call per patient and reader.",
        )
    return df[list(READER_COLUMNS)].reset_index(drop=True)


def load_features(path: str | Path, patient_ids: Iterable[str]) -> pd.DataFrame:
    """Read features.tsv (patient_id + the 15 Table 1 features as 0/1)."""
    path = Path(path)
    df = read_tsv(path)
    _require_columns(df, ("patient_id", *FEATURES), path)
    _check_ids(df, path)
    _check_known(df, patient_ids, path)
    if df["patient_id"].duplicated().any():
        pid = df["patient_id"][df["patient_id"].duplicated()].iloc[0]
        raise SpinefxError("patient has two feature rows.", patient=pid, path=path)
    for feature in FEATURES:
        bad = df[~df[feature].isin(["0", "1"])]
        if len(bad):
            raise SpinefxError(
                f"feature {feature} is {bad.iloc[0][feature]!r}; features are 0 or 1.",
                patient=bad.iloc[0]["patient_id"],
                path=path,
            )
        df[feature] = df[feature].astype(int)
    return df[["patient_id", *FEATURES]].reset_index(drop=True)


def patient_record(patients: pd.DataFrame, patient: str) -> dict:
    """The plain-value row of one patient (what per-patient jobs receive as params)."""
    if patient not in patients.index:
        raise SpinefxError("patient is not in the sheet.", patient=patient)
    row = patients.loc[patient]
    source = str(row["source"]) if "source" in row.index else "dicom"
    return {
        "patient_id": patient,
        "label": str(row["label"]),
        "t1_path": str(row["t1_path"]),
        "t2_path": str(row["t2_path"]),
        "t1_series_uid": row["t1_series_uid"],
        "t2_series_uid": row["t2_series_uid"],
        "source": source,
        # A NIfTI's slice k carries the number k + 1 in its sidecar (spinefx.dicom.nifti_input), so every
        # later step finds the lesion slice the same way for both kinds of input.
        "lesion_instance": int(row["lesion_slice"]) + 1 if source == "nifti" else int(row["lesion_instance"]),
        "lesion_slice": int(row["lesion_slice"]) if source == "nifti" else None,
        "box": [int(row["box_x0"]), int(row["box_y0"]), int(row["box_x1"]), int(row["box_y1"])],
    }


def resolve_record(record: dict, sheet: str | Path | None, patient: str) -> dict:
    """The plain-value sheet row of ``patient``: from params (real cohort) or the demo's sheet file."""
    if record:
        return dict(record)
    if sheet is None:
        raise ValueError(f"no sheet row for patient {patient}: neither params.record nor input.sheet given")
    return patient_record(load_patients(sheet, labelled=None), patient)
