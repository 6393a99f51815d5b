"""Series selection in a study folder: default rules pick T1W and T2W; none or several is a clear error."""

from __future__ import annotations

import time
from pathlib import Path

import pydicom
import pytest
from study_fixtures import STUDY, write_study

from spinefx.dicom import select
from spinefx.errors import SpinefxError
from spinefx.settings import section_defaults


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    folder = tmp_path_factory.mktemp("study")
    (folder / "README.txt").write_text("not DICOM")  # exports carry such files; the scan skips them
    return folder, write_study(folder)


def test_scan_lists_every_series_with_its_facts(study: tuple[Path, dict[str, str]]) -> None:
    folder, uids = study
    found = select.scan_study(folder)
    assert [s.uid for s in found] == [uids[n] for n in STUDY]  # sorted by series number
    by_uid = {s.uid: s for s in found}
    for name, (desc, number, _, tr, te, n) in STUDY.items():
        s = by_uid[uids[name]]
        facts = (s.description, s.number, s.tr, s.te, s.slices, s.matrix)
        assert facts == (desc, number, tr, te, n, (32, 32))
        # oracle: pydicom's own reading of one file of the series
        one = pydicom.dcmread(folder / f"{name}_000.dcm")
        assert s.transfer_syntax == str(one.file_meta.TransferSyntaxUID)
    planes = {name: by_uid[uids[name]].plane for name in STUDY}
    assert planes == {"loc": "coronal", "t1": "sagittal", "t2": "sagittal", "stir": "sagittal", "ax": "axial"}


def test_default_rules_pick_t1w_and_t2w(study: tuple[Path, dict[str, str]]) -> None:
    folder, uids = study
    rules = section_defaults("series")
    assert select.select_uid(folder, rules["t1"], name="t1") == uids["t1"]
    assert select.select_uid(folder, rules["t2"], name="t2") == uids["t2"]


def test_ambiguous_rule_lists_the_candidates(study: tuple[Path, dict[str, str]]) -> None:
    folder, uids = study
    with pytest.raises(SpinefxError) as err:
        select.select_uid(folder, {"plane": "sagittal", "tr": [1500, None]}, name="t2", patient="p1")
    text = str(err.value)
    assert "2 series match" in text and uids["t2"] in text and uids["stir"] in text
    assert uids["t1"] not in text and "patient p1" in text and "t2_series_uid" in text


def test_no_match_lists_every_series(study: tuple[Path, dict[str, str]]) -> None:
    folder, uids = study
    with pytest.raises(SpinefxError, match="no series matches") as err:
        select.select_uid(folder, {"description": "FLAIR"}, name="t1")
    assert all(uid in str(err.value) for uid in uids.values())
    assert "SAG STIR" in str(err.value) and "TR=4000" in str(err.value)


def test_rule_criteria() -> None:
    s = select.SeriesSummary("1.2", 3, "SAG T2 TSE", "t2_tse_sag", "sagittal", 3500.0, 100.0, 15, (9, 9), "")
    assert select.matches(s, {})
    assert select.matches(s, {"description": "t2_tse"})  # ProtocolName counts too
    assert not select.matches(s, {"exclude": "tse"})
    assert select.matches(s, {"tr": [3500, 3500], "te": [None, 100]})  # ranges are inclusive
    assert not select.matches(s, {"te": [None, 99.9]})
    assert not select.matches(s, {"plane": "axial"})
    assert not select.matches(s, {"min_slices": 16})
    no_tr = select.SeriesSummary("1.3", 4, "x", "", "sagittal", None, None, 15, (8, 8), "")
    assert not select.matches(no_tr, {"tr": [None, 5000]})  # unknown TR never meets a range


def test_missing_folder_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(SpinefxError, match="is not a folder"):
        select.scan_study(tmp_path / "nope")
    with pytest.raises(SpinefxError, match="no DICOM image series"):
        select.scan_study(tmp_path)


def test_scan_reads_headers_only_fast(tmp_path: Path) -> None:
    """A folder of 1,000 files (headers only read) scans well under 10 s on one slow core."""
    import shutil

    write_study(tmp_path / "src")
    files = sorted((tmp_path / "src").glob("t2_*.dcm"))
    big = tmp_path / "big"
    big.mkdir()
    for i in range(1000):
        shutil.copy(files[i % len(files)], big / f"f{i:04d}.dcm")
    start = time.perf_counter()
    found = select.scan_study(big)
    elapsed = time.perf_counter() - start
    assert len(found) == 1 and found[0].slices == 1000
    assert elapsed < 10, elapsed
