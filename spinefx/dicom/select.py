"""Pick the T1W and T2W series out of a study folder by rules, the way dcm2bids/heudiconv configs do.

A real export holds a whole study (localizers, T1W, T2W, STIR, axials); the sheet may point both
``t1_dicom`` and ``t2_dicom`` at it and leave the series uids empty. Only headers are read
(``stop_before_pixels`` and a short tag list), so a folder of thousands of files is scanned in seconds.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.errors import InvalidDicomError

from spinefx.errors import SpinefxError

PLANES = ("sagittal", "coronal", "axial")  # LPS axis x, y, z: the slice normal leans on one of them
# The header tags a listing needs; reading only these keeps the scan fast.
_TAGS = [
    "SeriesInstanceUID",
    "SeriesNumber",
    "SeriesDescription",
    "ProtocolName",
    "ImageOrientationPatient",
    "RepetitionTime",
    "EchoTime",
    "Rows",
    "Columns",
    "NumberOfFrames",
]


@dataclass(frozen=True)
class SeriesSummary:
    """One series of a study folder, as a user needs it to tell series apart."""

    uid: str
    number: int | None
    description: str
    protocol: str
    plane: str | None
    tr: float | None  # RepetitionTime, ms
    te: float | None  # EchoTime, ms
    slices: int
    matrix: tuple[int, int]  # (rows, columns)
    transfer_syntax: str

    def line(self) -> str:
        """A one-line description for listings and error messages."""
        tr = "-" if self.tr is None else f"{self.tr:g}"
        te = "-" if self.te is None else f"{self.te:g}"
        return (
            f"{self.uid}  #{self.number if self.number is not None else '-'}  '{self.description}'  "
            f"{self.plane or '-'}  TR={tr}  TE={te}  slices={self.slices}  "
            f"matrix={self.matrix[0]}x{self.matrix[1]}  {self.transfer_syntax}"
        )


def _plane(iop: Any) -> str | None:
    if iop is None or len(iop) != 6:
        return None
    normal = np.cross(np.asarray(iop[:3], dtype=float), np.asarray(iop[3:], dtype=float))
    return PLANES[int(np.argmax(np.abs(normal)))]


def _float(value: Any) -> float | None:
    try:
        return None if value is None or value == "" else float(value)
    except (TypeError, ValueError):
        return None


def scan_study(folder: str | Path, *, patient: str | None = None) -> list[SeriesSummary]:
    """Every image series under ``folder`` (recursively), sorted by series number then uid."""
    folder = Path(folder)
    if not folder.is_dir():
        raise SpinefxError(
            "is not a folder.", patient=patient, path=folder, fix="point the sheet at a DICOM study folder."
        )
    found: dict[str, dict[str, Any]] = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=_TAGS)
        except (InvalidDicomError, OSError, ValueError):
            continue  # DICOMDIR-less exports carry README, .txt, thumbnails: skip what is not DICOM
        uid = str(ds.get("SeriesInstanceUID", ""))
        if not uid or "Rows" not in ds:
            continue  # not an image (presentation state, structured report, ...)
        entry = found.setdefault(uid, {"ds": ds, "frames": 0, "ts": ""})
        entry["frames"] += int(ds.get("NumberOfFrames", 1) or 1)
        meta = getattr(ds, "file_meta", None)
        entry["ts"] = entry["ts"] or str(getattr(meta, "TransferSyntaxUID", "") or "")
    series = []
    for uid, entry in found.items():
        ds = entry["ds"]
        number = ds.get("SeriesNumber")
        series.append(
            SeriesSummary(
                uid=uid,
                number=None if number in (None, "") else int(number),
                description=str(ds.get("SeriesDescription", "")),
                protocol=str(ds.get("ProtocolName", "")),
                plane=_plane(ds.get("ImageOrientationPatient")),
                tr=_float(ds.get("RepetitionTime")),
                te=_float(ds.get("EchoTime")),
                slices=entry["frames"],
                matrix=(int(ds.Rows), int(ds.Columns)),
                transfer_syntax=entry["ts"],
            )
        )
    if not series:
        raise SpinefxError(
            "holds no DICOM image series.", patient=patient, path=folder, fix="check the folder in the sheet."
        )
    return sorted(series, key=lambda s: (s.number is None, s.number or 0, s.uid))


def _in_range(value: float | None, bounds: Any) -> bool:
    if bounds is None:
        return True
    lo, hi = bounds
    return value is not None and (lo is None or value >= lo) and (hi is None or value <= hi)


def matches(series: SeriesSummary, rule: Mapping[str, Any]) -> bool:
    """Whether ``series`` meets every criterion ``rule`` states (an empty rule matches everything).

    ``description``: regex searched (case-insensitive) in SeriesDescription or ProtocolName;
    ``exclude``: regex that rules a series out; ``plane``; ``tr``/``te``: ``[min, max]`` in ms
    (either may be null);
    ``min_slices``: fewer slices is a localizer.
    """
    text = f"{series.description}\n{series.protocol}"
    if rule.get("description") and not re.search(rule["description"], text, re.IGNORECASE):
        return False
    if rule.get("exclude") and re.search(rule["exclude"], text, re.IGNORECASE):
        return False
    if rule.get("plane") and series.plane != rule["plane"]:
        return False
    if rule.get("min_slices") and series.slices < rule["min_slices"]:
        return False
    return _in_range(series.tr, rule.get("tr")) and _in_range(series.te, rule.get("te"))


def choose(
    series: list[SeriesSummary],
    rule: Mapping[str, Any],
    *,
    name: str,
    folder: str | Path,
    patient: str | None = None,
) -> SeriesSummary:
    """The one series ``rule`` picks; none or several is an error that lists every candidate."""
    hits = [s for s in series if matches(s, rule)]
    if len(hits) == 1:
        return hits[0]
    listing = "\n  ".join(s.line() for s in (hits or series))
    what = "no series matches" if not hits else f"{len(hits)} series match"
    raise SpinefxError(
        f"{what} the `series: {name}` rule {dict(rule)}; "
        f"{'candidates' if hits else 'series in the folder'}:\n  "
        f"{listing}\n",
        patient=patient,
        path=folder,
        fix=f"set {name}_series_uid in the sheet, or tighten/loosen `series: {name}` in the config "
        "(`spinefx series FOLDER` shows what the rules choose).",
    )


def select_uid(folder: str | Path, rule: Mapping[str, Any], *, name: str, patient: str | None = None) -> str:
    """The SeriesInstanceUID that ``rule`` picks in ``folder``."""
    return choose(scan_study(folder, patient=patient), rule, name=name, folder=folder, patient=patient).uid
