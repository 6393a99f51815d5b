"""The PHI scanner the workflow tests rely on finds what it must and nothing else."""

import base64
import gzip
from pathlib import Path

from privacy import phi_needles, scan


def test_scan_finds_whole_words_in_every_layer_and_nothing_inside_words(tmp_path: Path) -> None:
    needles = phi_needles(
        {"PatientName": "Doe^Jane", "PatientBirthDate": "19500101", "PatientID": "MRN12345"}
    )
    (tmp_path / "a.log").write_bytes(b"hello JANE DOE here")
    (tmp_path / "b.bin").write_bytes(b"xmrn12345y and 1950010199")  # only inside longer words
    (tmp_path / "c.nii.gz").write_bytes(gzip.compress(b"..19500101.."))
    (tmp_path / "d.html").write_bytes(b"<img src='" + base64.b64encode(b"z" * 300 + b" Doe, Jane ") + b"'>")
    (tmp_path / "e.txt").write_bytes(b"Mrn12345")
    hits = scan([tmp_path], needles)
    assert sorted(hits) == sorted(
        [
            f"{tmp_path / 'a.log'}: Jane Doe",
            f"{tmp_path / 'c.nii.gz'}: 19500101",
            f"{tmp_path / 'd.html'}: Doe, Jane",
            f"{tmp_path / 'e.txt'}: MRN12345",
        ]
    )
    assert scan([tmp_path], needles, exclude=[tmp_path]) == []
