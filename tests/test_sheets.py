"""Sheet loading: every bad row is refused with the patient, the sheet and the fix."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from spinefx import sheets
from spinefx.errors import SpinefxError
from spinefx.features import FEATURES

HEADER = "patient_id\tlabel\tt1_dicom\tt2_dicom\tlesion_instance\tbox_x0\tbox_y0\tbox_x1\tbox_y1\n"


def write_sheet(tmp_path: Path, rows: list[str], header: str = HEADER) -> Path:
    for pid in ("P1", "P2", "P3", "P4"):
        for s in ("t1", "t2"):
            (tmp_path / "dicom" / pid / s).mkdir(parents=True, exist_ok=True)
    path = tmp_path / "patients.tsv"
    path.write_text(header + "".join(r + "\n" for r in rows))
    return path


def row(pid: str = "P1", label: str = "benign", box: str = "10\t20\t50\t60", inst: str = "6") -> str:
    return f"{pid}\t{label}\tdicom/{pid}/t1\tdicom/{pid}/t2\t{inst}\t{box}"


def test_good_sheet_is_typed_and_resolved(tmp_path: Path) -> None:
    path = write_sheet(tmp_path, [row("P1"), row("P2", "malignant")])
    df = sheets.load_patients(path)
    assert list(df.index) == ["P1", "P2"]
    assert df.loc["P2", "label"] == "malignant"
    assert df["box_x1"].dtype.kind == "i"
    assert Path(df.loc["P1", "t1_path"]) == (tmp_path / "dicom/P1/t1").resolve()
    assert df.loc["P1", "t1_series_uid"] is None
    rec = sheets.patient_record(df, "P2")
    assert rec["box"] == [10, 20, 50, 60] and rec["lesion_instance"] == 6


@pytest.mark.parametrize(
    ("rows", "header", "needle"),
    [
        ([row()], HEADER.replace("\tlabel", "\tdiagnosis"), "missing column(s) label"),
        ([row(label="metastasis")], HEADER, "unknown label 'metastasis'"),
        ([row("P1"), row("P1")], HEADER, "duplicate patient_id(s): P1"),
        ([row("P 1")], HEADER, "characters other than"),
        ([row(box="50\t20\t10\t60")], HEADER, "empty or inverted"),
        ([row(box="10\t20\t10\t60")], HEADER, "empty or inverted"),
        ([row(box="-3\t20\t10\t60")], HEADER, "negative pixel"),
        ([row(inst="six")], HEADER, "not a whole number"),
        ([row("P9")], HEADER, "does not exist"),
        ([], HEADER, "no patients"),
    ],
)
def test_bad_rows_are_refused_clearly(tmp_path: Path, rows: list[str], header: str, needle: str) -> None:
    path = write_sheet(tmp_path, rows, header)
    with pytest.raises(SpinefxError) as info:
        sheets.load_patients(path)
    message = str(info.value)
    assert needle in message
    assert str(path) in message


def test_bad_row_names_the_patient(tmp_path: Path) -> None:
    path = write_sheet(tmp_path, [row("P1"), row("P2", box="9\t9\t1\t1")])
    with pytest.raises(SpinefxError, match="patient P2"):
        sheets.load_patients(path)


def test_missing_sheet(tmp_path: Path) -> None:
    with pytest.raises(SpinefxError, match="sheet not found"):
        sheets.load_patients(tmp_path / "nope.tsv")


def test_fold_counts(tmp_path: Path) -> None:
    path = write_sheet(tmp_path, [row("P1"), row("P2"), row("P3", "malignant")])
    df = sheets.load_patients(path)
    sheets.check_fold_counts(df, 1)
    with pytest.raises(SpinefxError, match=r"1 malignant.*set folds.k to at most 1"):
        sheets.check_fold_counts(df, 2)


def test_readers_sheet(tmp_path: Path) -> None:
    path = tmp_path / "readers.tsv"
    path.write_text("patient_id\treader\tcall\nP1\tr1\tmalignant\nP2\tr1\tbenign\n")
    df = sheets.load_readers(path, ["P1", "P2"])
    assert list(df["call"]) == ["malignant", "benign"]
    with pytest.raises(SpinefxError, match="not in patients.tsv: P2"):
        sheets.load_readers(path, ["P1"])
    path.write_text("patient_id\treader\tcall\nP1\tr1\tmaybe\n")
    with pytest.raises(SpinefxError, match="unknown call 'maybe'"):
        sheets.load_readers(path, ["P1"])
    path.write_text("patient_id\treader\tcall\nP1\tr1\tbenign\nP1\tr1\tmalignant\n")
    with pytest.raises(SpinefxError, match="more than one call"):
        sheets.load_readers(path, ["P1"])


def test_features_sheet(tmp_path: Path) -> None:
    path = tmp_path / "features.tsv"
    df = pd.DataFrame({"patient_id": ["P1", "P2"], **{f: [0, 1] for f in FEATURES}})
    df.to_csv(path, sep="\t", index=False)
    loaded = sheets.load_features(path, ["P1", "P2"])
    assert loaded.loc[1, FEATURES[0]] == 1
    with pytest.raises(SpinefxError, match="not in patients.tsv"):
        sheets.load_features(path, ["P1"])
    df[FEATURES[3]] = [0, 2]
    df.to_csv(path, sep="\t", index=False)
    with pytest.raises(SpinefxError, match=f"{FEATURES[3]} is '2'"):
        sheets.load_features(path, ["P1", "P2"])
    df.drop(columns=[FEATURES[0]]).to_csv(path, sep="\t", index=False)
    with pytest.raises(SpinefxError, match=f"missing column.*{FEATURES[0]}"):
        sheets.load_features(path, ["P1", "P2"])


def test_both_columns_may_name_one_study_folder(tmp_path: Path) -> None:
    """A study export holds T1W and T2W in one folder; the `series:` rules pick each (issue 14 item 3)."""
    path = write_sheet(tmp_path, ["P1\tbenign\tdicom/P1\tdicom/P1\t6\t10\t20\t50\t60"])
    df = sheets.load_patients(path)
    assert df.loc["P1", "t1_path"] == df.loc["P1", "t2_path"] == str((tmp_path / "dicom" / "P1").resolve())
    assert not df.loc["P1", "t1_series_uid"] and not df.loc["P1", "t2_series_uid"]


def test_predict_sheet_has_no_label_and_refuses_one(tmp_path: Path) -> None:
    """The `predict:` sheet of new patients (issue 17): the same columns without label."""
    unlabelled = HEADER.replace("\tlabel", "")
    path = write_sheet(
        tmp_path, ["\t".join(c for i, c in enumerate(row("P3").split("\t")) if i != 1)], unlabelled
    )
    df = sheets.load_patients(path, labelled=False)
    assert sheets.patient_record(df, "P3")["label"] == sheets.UNLABELLED
    assert sheets.resolve_record({}, path, "P3")["box"] == [10, 20, 50, 60]
    with pytest.raises(SpinefxError, match="predict sheet has a label column"):
        sheets.load_patients(write_sheet(tmp_path / "labelled", [row("P3")]), labelled=False)
    with pytest.raises(SpinefxError, match="missing column"):
        sheets.load_patients(path)  # a cohort sheet still needs its labels


NIFTI_HEADER = "patient_id\tlabel\tt1_nifti\tt2_nifti\tlesion_slice\tbox_x0\tbox_y0\tbox_x1\tbox_y1\n"


def nifti_row(pid: str = "N1", label: str = "benign", k: str = "4", ext: str = ".nii.gz") -> str:
    anat = f"bids/sub-{pid}/anat/sub-{pid}"
    return f"{pid}\t{label}\t{anat}_T1w{ext}\t{anat}_T2w{ext}\t{k}\t1\t2\t30\t40"


def write_nifti_files(tmp_path: Path, pids=("N1", "N2")) -> None:
    for pid in pids:
        anat = tmp_path / "bids" / f"sub-{pid}" / "anat"
        anat.mkdir(parents=True, exist_ok=True)
        for s in ("T1w", "T2w"):
            (anat / f"sub-{pid}_{s}.nii.gz").write_bytes(b"")  # the sheet checks presence; the rule the rest


def _mixed_row(r: str) -> str:
    """A NIfTI row in a sheet of both kinds of column (HEADER + the NIfTI columns): DICOM cells empty."""
    pid, label, t1, t2, k, *box = r.split("\t")
    return "\t".join([pid, label, "", "", "", *box, t1, t2, k])


def test_nifti_rows_are_typed_and_resolved(tmp_path: Path) -> None:
    """NIfTI input (issue 14 item 4): files instead of folders, a 0-based T2 slice instead of an
    InstanceNumber; a sheet may hold both kinds of row."""
    write_nifti_files(tmp_path)
    header = HEADER.rstrip("\n") + "\tt1_nifti\tt2_nifti\tlesion_slice\n"
    rows = [
        row("P1") + "\t\t\t",
        _mixed_row(nifti_row("N1")),
        _mixed_row(nifti_row("N2", "malignant", k="0")),
    ]
    path = write_sheet(tmp_path, rows, header)
    df = sheets.load_patients(path)
    assert list(df["source"]) == ["dicom", "nifti", "nifti"]
    assert Path(df.loc["N1", "t2_path"]) == (tmp_path / "bids/sub-N1/anat/sub-N1_T2w.nii.gz").resolve()
    assert Path(df.loc["P1", "t2_path"]) == (tmp_path / "dicom/P1/t2").resolve()
    assert df.loc["N1", "lesion_instance"] is None and df.loc["P1", "lesion_slice"] is None
    assert df.loc["N1", "t1_dicom"] is None and df.loc["P1", "t1_nifti"] is None
    rec = sheets.patient_record(df, "N2")
    assert rec["source"] == "nifti" and rec["lesion_slice"] == 0
    assert rec["lesion_instance"] == 1  # slice k is number k + 1 in the NIfTI sidecar
    assert sheets.patient_record(df, "P1")["lesion_instance"] == 6
    assert sheets.patient_record(df, "P1")["source"] == "dicom"
    only = tmp_path / "only.tsv"  # a sheet with the NIfTI columns only
    only.write_text(NIFTI_HEADER + nifti_row("N1") + "\n" + nifti_row("N2", k="3", ext=".nii.gz") + "\n")
    df = sheets.load_patients(only)
    assert list(df["lesion_slice"]) == [4, 3] and df["lesion_slice"].dtype.kind == "i"
    assert sheets.resolve_record({}, only, "N2")["lesion_instance"] == 4


@pytest.mark.parametrize(
    ("cells", "needle"),
    [
        ({"t1_dicom": "dicom/P1/t1"}, "fills both DICOM (t1_dicom) and NIfTI"),
        ({"lesion_instance": "6"}, "fills both DICOM (lesion_instance)"),
        ({"t2_series_uid": "1.2.3"}, "fills both DICOM (t2_series_uid)"),
        ({"t1_nifti": "", "t2_nifti": "", "lesion_slice": ""}, "has no images"),
        ({"lesion_slice": ""}, "NIfTI input without lesion_slice"),
        ({"t2_nifti": ""}, "NIfTI input without t2_nifti"),
        ({"lesion_slice": "-1"}, "slice indices start at 0"),
        ({"lesion_slice": "4.5"}, "lesion_slice is '4.5', not a whole number"),
        ({"t2_nifti": "bids/sub-N1/anat/sub-N1_T2w.mha"}, "is not a .nii or .nii.gz file"),
        ({"t2_nifti": "bids/sub-N9/anat/sub-N9_T2w.nii.gz"}, "t2_nifti file"),
    ],
)
def test_bad_nifti_rows_are_refused_clearly(tmp_path: Path, cells: dict, needle: str) -> None:
    write_nifti_files(tmp_path)
    columns = [*HEADER.split(), "t1_series_uid", "t2_series_uid", "t1_nifti", "t2_nifti", "lesion_slice"]
    values = dict.fromkeys(columns, "")
    values.update(patient_id="N1", label="benign", box_x0="1", box_y0="2", box_x1="30", box_y1="40")
    values.update(
        t1_nifti="bids/sub-N1/anat/sub-N1_T1w.nii.gz", t2_nifti="bids/sub-N1/anat/sub-N1_T2w.nii.gz"
    )
    values["lesion_slice"] = "4"
    values.update(cells)
    path = write_sheet(tmp_path, ["\t".join(values[c] for c in columns)], "\t".join(columns) + "\n")
    with pytest.raises(SpinefxError) as info:
        sheets.load_patients(path)
    message = str(info.value)
    assert needle in message, message
    assert "patient N1" in message and str(path) in message


def test_sheet_without_either_kind_of_columns_names_both(tmp_path: Path) -> None:
    path = write_sheet(
        tmp_path, ["P1\tbenign\t1\t2\t3\t4"], "patient_id\tlabel\tbox_x0\tbox_y0\tbox_x1\tbox_y1\n"
    )
    with pytest.raises(
        SpinefxError, match=r"missing column\(s\) t1_dicom, t2_dicom, lesion_instance.*t1_nifti"
    ):
        sheets.load_patients(path)
    path = write_sheet(tmp_path, [], NIFTI_HEADER.replace("\tlesion_slice", ""))
    with pytest.raises(SpinefxError, match=r"missing column\(s\) lesion_slice;"):
        sheets.load_patients(path)
