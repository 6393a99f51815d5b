"""DICOM series -> NIfTI volume + PHI-free JSON sidecar, with the geometry exactly as DICOM states it.

Why not just call a generic reader: scanner folders hold several series, localizers, stray files and
the odd broken file, and a reader that sorts by file name or InstanceNumber, ignores the rescale or
mixes two series produces a volume that looks fine and is wrong. Here every slice is placed by its
ImagePositionPatient projected on the slice normal, each problem found is a ``SpinefxError`` that
names the patient, the file and the fix, and the result is checked against dcm2niix in the tests.

Voxel order (shared convention): image index x = DICOM column, y = DICOM row, z = slice k sorted
along the normal ``row_dir x col_dir``. SimpleITK physical space = DICOM LPS (mm); the NIfTI writer
turns it into the RAS+ affine.
"""

from __future__ import annotations

import json
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pydicom
from pydicom.uid import UID

from spinefx.atomic import atomic_path
from spinefx.dicom.decode import stored_pixels
from spinefx.dicom.nifti import PIXEL_TYPE_NAMES, write_nifti
from spinefx.dicom.plain import check_one_kind, check_unique_instances, plain_stack
from spinefx.errors import SpinefxError

if TYPE_CHECKING:  # SimpleITK costs 0.25 s to import; only read_series needs it
    import SimpleITK as sitk

_ENHANCED_MR = "1.2.840.10008.5.1.4.1.1.4.1"
# Tolerances, in mm (positions) and direction-cosine units (orientations).
_ORIENT_TOL = 1e-4
_DUPLICATE_MM = 1e-3
_SHEAR_MM = 0.01
# Values larger than this are read from disk only when used: the scan parses headers, not pixels.
_DEFER_BYTES = 4096


class ConversionWarning(UserWarning):
    """Something was skipped or looked odd but the volume is still trustworthy."""


@dataclass
class _Frame:
    """One 2-D image of the series: a single-frame file or one frame of an enhanced multi-frame file."""

    path: Path
    ds: pydicom.Dataset  # header, pixel data deferred
    frame: int | None  # 0-based frame index in a multi-frame file, None for a single-frame file
    position: np.ndarray  # ImagePositionPatient, LPS mm
    orientation: np.ndarray  # ImageOrientationPatient, 6 direction cosines
    pixel_spacing: tuple[float, float]  # (between rows, between columns), mm
    rows: int
    cols: int
    number: int | None  # InstanceNumber (single-frame) or frame number 1..n (multi-frame)
    slope: float
    intercept: float
    localizer: bool


# ---------------------------------------------------------------------------------------------
# Folder scan and series choice
# ---------------------------------------------------------------------------------------------


def _has_dicm_magic(path: Path) -> bool:
    with open(path, "rb") as fh:
        head = fh.read(132)
    return len(head) == 132 and head[128:132] == b"DICM"


def _read_header(path: Path, patient: str | None) -> pydicom.Dataset | None:
    """Header of ``path`` (pixels deferred), or None for a file that is not DICOM at all.

    A file with the DICM marker that cannot be parsed is corrupt, which is an error: silently
    dropping it would give a volume with a missing slice.
    """
    if _has_dicm_magic(path):
        try:
            return pydicom.dcmread(path, defer_size=_DEFER_BYTES)
        except Exception as exc:  # pydicom raises many types for broken files
            raise SpinefxError(
                f"cannot read DICOM header ({type(exc).__name__}: {exc}); the file is truncated or corrupt.",
                patient=patient,
                path=path,
                fix="copy the series again from the scanner/PACS, or remove the file if it is not a slice.",
            ) from exc
    # Old files without the 128-byte preamble: accept only if they parse as an image object.
    try:
        ds = pydicom.dcmread(path, defer_size=_DEFER_BYTES, force=True)
    except Exception:
        return None
    if "SOPClassUID" in ds and "SeriesInstanceUID" in ds and "Rows" in ds:
        return ds
    return None


def _is_image(ds: pydicom.Dataset, path: Path, patient: str | None) -> bool:
    """True for an image object; False for DICOMDIR, reports, presentation states.

    An object whose SOP class says "image" but that lacks its matrix size or pixel data was cut
    short (a truncated copy): an error, because skipping it would leave a hole in the volume.
    """
    sop = UID(str(ds.get("SOPClassUID", "")))
    says_image = "Image Storage" in (sop.name if sop.is_valid else "")
    complete = "Rows" in ds and "Columns" in ds and ("PixelData" in ds or "FloatPixelData" in ds)
    if says_image and not complete:
        raise SpinefxError(
            f"{sop.name} object without matrix size or pixel data; the file is truncated or corrupt.",
            patient=patient,
            path=path,
            fix="copy the series again from the PACS/scanner, or remove the file if it is not a slice.",
        )
    return complete


def _image_type(ds: pydicom.Dataset) -> list[str]:
    value = ds.get("ImageType", [])
    if isinstance(value, str):
        value = [value]
    return [str(v).upper() for v in value]


def _scan_folder(
    dicom_dir: Path, patient: str | None
) -> tuple[dict[str, list[tuple[Path, pydicom.Dataset]]], list[str]]:
    """Group the image files under ``dicom_dir`` by SeriesInstanceUID; return also the notes on skips."""
    if not dicom_dir.is_dir():
        raise SpinefxError(
            "DICOM folder not found.",
            patient=patient,
            path=dicom_dir,
            fix="check the t1_dicom/t2_dicom column of the sample sheet (paths are relative to the sheet).",
        )
    files = sorted(p for p in dicom_dir.rglob("*") if p.is_file())
    series: dict[str, list[tuple[Path, pydicom.Dataset]]] = {}
    not_dicom, not_image = [], []
    for path in files:
        if path.name.upper() == "DICOMDIR":
            not_image.append(path)
            continue
        ds = _read_header(path, patient)
        if ds is None:
            not_dicom.append(path)
            continue
        if not _is_image(ds, path, patient):
            not_image.append(path)
            continue
        uid = str(ds.get("SeriesInstanceUID", "")).strip()
        if not uid:
            raise SpinefxError(
                "DICOM image without SeriesInstanceUID; cannot tell which series it belongs to.",
                patient=patient,
                path=path,
                fix="remove the file or repair its header.",
            )
        series.setdefault(uid, []).append((path, ds))
    notes = []
    where = f"patient {patient}: " if patient else ""
    if not_dicom:
        notes.append(f"skipped {len(not_dicom)} non-DICOM file(s)")
        warnings.warn(
            f"{where}{dicom_dir}: skipped {len(not_dicom)} non-DICOM file(s): "
            + ", ".join(p.name for p in not_dicom[:5])
            + (" ..." if len(not_dicom) > 5 else ""),
            ConversionWarning,
            stacklevel=3,
        )
    if not_image:
        notes.append(f"skipped {len(not_image)} DICOM object(s) without pixel data")
        warnings.warn(
            f"{where}{dicom_dir}: skipped {len(not_image)} DICOM object(s) that are not images "
            "(DICOMDIR, reports, presentation states)",
            ConversionWarning,
            stacklevel=3,
        )
    if not series:
        raise SpinefxError(
            f"no DICOM image files found ({len(files)} file(s) looked at).",
            patient=patient,
            path=dicom_dir,
            fix="point the sample sheet at the folder holding the series' .dcm files.",
        )
    return series, notes


def _is_localizer_series(members: list[tuple[Path, pydicom.Dataset]]) -> bool:
    return any("LOCALIZER" in _image_type(ds) for _, ds in members)


def _series_listing(series: dict[str, list[tuple[Path, pydicom.Dataset]]]) -> str:
    lines = []
    for uid, members in series.items():
        ds = members[0][1]
        flag = " [localizer]" if _is_localizer_series(members) else ""
        lines.append(
            f"uid={uid} description={str(ds.get('SeriesDescription', '')).strip()!r} "
            f"series_number={ds.get('SeriesNumber', '')} files={len(members)}{flag}"
        )
    return "; ".join(lines)


def _choose_series(
    series: dict[str, list[tuple[Path, pydicom.Dataset]]],
    series_uid: str | None,
    dicom_dir: Path,
    patient: str | None,
) -> tuple[str, list[tuple[Path, pydicom.Dataset]], list[str]]:
    notes: list[str] = []
    if series_uid:
        if series_uid not in series:
            raise SpinefxError(
                f"series {series_uid} is not in the folder; it holds: {_series_listing(series)}.",
                patient=patient,
                path=dicom_dir,
                fix="correct the series uid in the sample sheet (one of the uids listed).",
            )
        chosen = series_uid
    else:
        candidates = [uid for uid, members in series.items() if not _is_localizer_series(members)]
        if len(series) == 1:
            chosen = next(iter(series))
        elif len(candidates) == 1:
            chosen = candidates[0]
            skipped = len(series) - 1
            notes.append(f"ignored {skipped} localizer series")
            warnings.warn(
                f"{'patient ' + patient + ': ' if patient else ''}{dicom_dir}: ignored {skipped} "
                "localizer series; converting the only other one",
                ConversionWarning,
                stacklevel=3,
            )
        else:
            raise SpinefxError(
                f"the folder holds {len(series)} series and none was chosen: {_series_listing(series)}.",
                patient=patient,
                path=dicom_dir,
                fix="put the wanted uid in the sample sheet's t1_series_uid/t2_series_uid column, "
                "or give each series its own folder.",
            )
    members = series[chosen]
    if _is_localizer_series(members):
        raise SpinefxError(
            f"series {chosen} is a localizer/scout (ImageType LOCALIZER), not a diagnostic series.",
            patient=patient,
            path=dicom_dir,
            fix="choose the sagittal T1W/T2W series instead.",
        )
    return chosen, members, notes


# ---------------------------------------------------------------------------------------------
# Frames: one per 2-D image, single- or multi-frame
# ---------------------------------------------------------------------------------------------


def _floats(value: Any, n: int, what: str, path: Path, patient: str | None) -> np.ndarray:
    try:
        arr = np.asarray([float(v) for v in value], dtype=float)
    except (TypeError, ValueError) as exc:
        raise SpinefxError(
            f"{what} is not numeric ({value!r}).", patient=patient, path=path, fix="repair the header."
        ) from exc
    if arr.shape != (n,):
        raise SpinefxError(
            f"{what} has {arr.size} values, expected {n}.",
            patient=patient,
            path=path,
            fix="repair the header.",
        )
    return arr


def _require(ds: pydicom.Dataset, keyword: str, path: Path, patient: str | None) -> Any:
    if keyword not in ds or ds[keyword].value in (None, ""):
        raise SpinefxError(
            f"DICOM image lacks {keyword}; its voxels cannot be placed in space.",
            patient=patient,
            path=path,
            fix="this file is incomplete or not a cross-sectional image; remove it or re-export the series.",
        )
    return ds[keyword].value


def _single_frame(path: Path, ds: pydicom.Dataset, patient: str | None) -> _Frame:
    position = _floats(
        _require(ds, "ImagePositionPatient", path, patient), 3, "ImagePositionPatient", path, patient
    )
    orient = _floats(
        _require(ds, "ImageOrientationPatient", path, patient), 6, "ImageOrientationPatient", path, patient
    )
    spacing = _floats(_require(ds, "PixelSpacing", path, patient), 2, "PixelSpacing", path, patient)
    number = ds.get("InstanceNumber")
    return _Frame(
        path=path,
        ds=ds,
        frame=None,
        position=position,
        orientation=orient,
        pixel_spacing=(float(spacing[0]), float(spacing[1])),
        rows=int(ds.Rows),
        cols=int(ds.Columns),
        number=None if number in (None, "") else int(number),
        slope=float(ds.get("RescaleSlope", 1.0) or 1.0),
        intercept=float(ds.get("RescaleIntercept", 0.0) or 0.0),
        localizer="LOCALIZER" in _image_type(ds),
    )


def _functional(ds: pydicom.Dataset, i: int, sequence: str) -> pydicom.Dataset | None:
    """Item of functional group ``sequence`` for frame i: per-frame first, then shared."""
    for groups, index in (("PerFrameFunctionalGroupsSequence", i), ("SharedFunctionalGroupsSequence", 0)):
        seq = ds.get(groups)
        if seq is None or len(seq) <= index:
            continue
        items = seq[index].get(sequence)
        if items is not None and len(items):
            return items[0]
    return None


def _multi_frames(path: Path, ds: pydicom.Dataset, patient: str | None) -> list[_Frame]:
    """Frames of an enhanced (multi-frame) MR object, each with its own plane position."""
    n = int(ds.get("NumberOfFrames", 1) or 1)
    frames = []
    for i in range(n):
        pos = _functional(ds, i, "PlanePositionSequence")
        ori = _functional(ds, i, "PlaneOrientationSequence")
        meas = _functional(ds, i, "PixelMeasuresSequence")
        pvt = _functional(ds, i, "PixelValueTransformationSequence")
        if pos is None or ori is None or meas is None:
            raise SpinefxError(
                f"multi-frame object: frame {i + 1} lacks plane position/orientation/pixel measures.",
                patient=patient,
                path=path,
                fix="export the series as classic single-frame MR images (one file per slice).",
            )
        slope = pvt.get("RescaleSlope", 1.0) if pvt is not None else ds.get("RescaleSlope", 1.0)
        intercept = pvt.get("RescaleIntercept", 0.0) if pvt is not None else ds.get("RescaleIntercept", 0.0)
        spacing = _floats(meas.PixelSpacing, 2, "PixelSpacing", path, patient)
        frames.append(
            _Frame(
                path=path,
                ds=ds,
                frame=i,
                position=_floats(pos.ImagePositionPatient, 3, "ImagePositionPatient", path, patient),
                orientation=_floats(ori.ImageOrientationPatient, 6, "ImageOrientationPatient", path, patient),
                pixel_spacing=(float(spacing[0]), float(spacing[1])),
                rows=int(ds.Rows),
                cols=int(ds.Columns),
                number=i + 1,
                slope=float(slope or 1.0),
                intercept=float(intercept or 0.0),
                localizer="LOCALIZER" in _image_type(ds),
            )
        )
    return frames


def _frames_of(members: list[tuple[Path, pydicom.Dataset]], patient: str | None) -> tuple[list[_Frame], bool]:
    multi = [
        (p, ds)
        for p, ds in members
        if int(ds.get("NumberOfFrames", 1) or 1) > 1 or str(ds.get("SOPClassUID", "")) == _ENHANCED_MR
    ]
    if multi:
        if len(members) != 1:
            raise SpinefxError(
                f"series mixes {len(multi)} multi-frame (enhanced) object(s) with "
                f"{len(members) - len(multi)} "
                "other file(s); only a series stored as ONE multi-frame volume or as single-frame slices "
                "is supported.",
                patient=patient,
                path=multi[0][0],
                fix="export the series as classic single-frame MR images (one file per slice).",
            )
        path, ds = multi[0]
        return _multi_frames(path, ds, patient), True
    return [_single_frame(p, ds, patient) for p, ds in members], False


# ---------------------------------------------------------------------------------------------
# Geometry checks and slice order
# ---------------------------------------------------------------------------------------------


def _frame_label(f: _Frame) -> str:
    if f.frame is not None:
        return f"{f.path.name} frame {f.frame + 1}"
    return f"{f.path.name} (InstanceNumber {f.number})"


def _check_consistent(frames: list[_Frame], dicom_dir: Path, patient: str | None) -> None:
    sizes = Counter((f.rows, f.cols) for f in frames)
    if len(sizes) > 1:
        listing = ", ".join(f"{c}x{r} ({n} images)" for (r, c), n in sizes.items())
        raise SpinefxError(
            f"the series mixes matrix sizes (columns x rows): {listing}.",
            patient=patient,
            path=dicom_dir,
            fix="the folder mixes acquisitions (or a localizer); choose one series uid or split the folder.",
        )
    ref = frames[0].orientation
    odd = [f for f in frames if np.max(np.abs(f.orientation - ref)) > _ORIENT_TOL]
    if odd:
        hint = (
            " Some images are localizers (ImageType LOCALIZER)." if any(f.localizer for f in frames) else ""
        )
        raise SpinefxError(
            f"the series mixes slice orientations: {len(odd)} of {len(frames)} images differ from "
            f"{_frame_label(frames[0])} (e.g. {_frame_label(odd[0])}).{hint}",
            patient=patient,
            path=dicom_dir,
            fix="remove the localizer/other-plane images or choose the series uid of one stack.",
        )
    spacings = Counter(f.pixel_spacing for f in frames)
    if len(spacings) > 1:
        raise SpinefxError(
            f"the series mixes pixel spacings: {dict(spacings)}.",
            patient=patient,
            path=dicom_dir,
            fix="choose one series uid or split the folder.",
        )


def _axes(orientation: np.ndarray, path: Path, patient: str | None) -> np.ndarray:
    """Orthonormal [row_dir, col_dir, normal] (as columns) from ImageOrientationPatient."""
    row, col = orientation[:3], orientation[3:]
    if abs(np.linalg.norm(row) - 1) > 1e-3 or abs(np.linalg.norm(col) - 1) > 1e-3 or abs(row @ col) > 1e-3:
        raise SpinefxError(
            f"ImageOrientationPatient {orientation.tolist()} is not two orthogonal unit vectors.",
            patient=patient,
            path=path,
            fix="repair the header; spinefx does not guess orientations.",
        )
    row = row / np.linalg.norm(row)
    col = col - (col @ row) * row
    col = col / np.linalg.norm(col)
    return np.column_stack([row, col, np.cross(row, col)])


PLANES = ("sagittal", "coronal", "axial")  # slice normal mostly along L-R, A-P, S-I (LPS x, y, z)


def slice_plane(normal: np.ndarray) -> str:
    """The anatomical plane of a stack from its slice normal (LPS): the axis it leans on most."""
    return PLANES[int(np.argmax(np.abs(np.asarray(normal, dtype=float))))]


def _sort_and_space(
    frames: list[_Frame], axes: np.ndarray, dicom_dir: Path, patient: str | None
) -> tuple[list[_Frame], float]:
    """Sort frames along the slice normal; check the stack is regular; return frames and spacing (mm)."""
    normal = axes[:, 2]
    proj = np.array([f.position @ normal for f in frames])
    order = np.argsort(proj, kind="stable")
    frames = [frames[i] for i in order]
    proj = proj[order]
    if len(frames) == 1:
        return frames, float("nan")
    gaps = np.diff(proj)
    dup = np.nonzero(gaps < _DUPLICATE_MM)[0]
    if dup.size:
        a, b = frames[dup[0]], frames[dup[0] + 1]
        raise SpinefxError(
            f"{dup.size} duplicate slice position(s) along the normal, e.g. {_frame_label(a)} and "
            f"{_frame_label(b)} both at {proj[dup[0]]:.3f} mm. The series holds repeated slices "
            "(several echoes, time points or a copied file).",
            patient=patient,
            path=dicom_dir,
            fix="remove the duplicate files, or split echoes/time points into separate folders.",
        )
    spacing = float(np.median(gaps))
    tol = max(0.01, 0.01 * spacing)
    bad = np.nonzero(np.abs(gaps - spacing) > tol)[0]
    if bad.size:
        i = bad[0]
        missing = int(round(gaps[i] / spacing)) - 1
        what = f"about {missing} slice(s) missing" if missing >= 1 else "irregular slice spacing"
        raise SpinefxError(
            f"non-uniform slice spacing: gap of {gaps[i]:.3f} mm between {_frame_label(frames[i])} and "
            f"{_frame_label(frames[i + 1])}, while the typical gap is {spacing:.3f} mm ({what}; "
            f"{bad.size} irregular gap(s) in total).",
            patient=patient,
            path=dicom_dir,
            fix="re-export the complete series; spinefx does not interpolate missing slices.",
        )
    # Every slice must lie on the line origin + t * normal (no in-plane shift between slices).
    offsets = np.array([f.position - frames[0].position for f in frames])
    inplane = offsets - np.outer(offsets @ normal, normal)
    shear = float(np.max(np.linalg.norm(inplane, axis=1)))
    if shear > max(_SHEAR_MM, 0.01 * spacing):
        raise SpinefxError(
            f"slices are shifted in-plane by up to {shear:.3f} mm (sheared stack / gantry tilt); "
            "spinefx does not reslice.",
            patient=patient,
            path=dicom_dir,
            fix="reslice the series to an orthogonal grid (e.g. with dcm2niix's tilt correction) first.",
        )
    return frames, spacing


# ---------------------------------------------------------------------------------------------
# Pixels
# ---------------------------------------------------------------------------------------------


def _pixels(frame: _Frame, n_frames: int, patient: str | None) -> np.ndarray:
    """Stored pixel values of the frame's file as [frames, rows, cols] (no rescale yet).

    The header was parsed once during the scan with the pixel data deferred; reading the value
    now seeks straight to it, so each file is parsed once.
    """
    ds, path = frame.ds, frame.path
    if "PixelData" not in ds:
        raise SpinefxError(
            "DICOM image has no pixel data; the file is truncated or corrupt.",
            patient=patient,
            path=path,
            fix="copy the series again from the PACS/scanner.",
        )
    if int(ds.get("SamplesPerPixel", 1)) != 1:
        raise SpinefxError(
            f"colour image (SamplesPerPixel={ds.SamplesPerPixel}); MR magnitude series are greyscale.",
            patient=patient,
            path=path,
            fix="choose the original magnitude series, not a screenshot/colour map.",
        )
    return stored_pixels(ds, path, n_frames, patient)


def _volume(frames: list[_Frame], multi: bool, patient: str | None) -> np.ndarray:
    """Real-world values [k, rows, cols] with each slice's own rescale applied.

    int16 when the rescale is integral and the values fit (like the stored data), else float32.
    """
    if multi:
        stored = _pixels(frames[0], len(frames), patient)
        stored = stored[[f.frame for f in frames]]
    else:
        stored = np.stack([_pixels(f, 1, patient)[0] for f in frames])
    slopes = np.array([f.slope for f in frames])
    intercepts = np.array([f.intercept for f in frames])
    if np.all(slopes == np.round(slopes)) and np.all(intercepts == np.round(intercepts)):
        if np.all(slopes == 1) and np.all(intercepts == 0):
            values = stored
        else:
            values = stored.astype(np.int64) * slopes.astype(np.int64)[:, None, None]
            values += intercepts.astype(np.int64)[:, None, None]
        info = np.iinfo(np.int16)
        if values.size and values.min() >= info.min and values.max() <= info.max:
            return values.astype(np.int16)
        return values.astype(np.float32)
    return (stored * slopes[:, None, None] + intercepts[:, None, None]).astype(np.float32)


# ---------------------------------------------------------------------------------------------
# Sidecar
# ---------------------------------------------------------------------------------------------


def affine_ras(image: sitk.Image) -> np.ndarray:
    """4x4 voxel-index -> RAS mm affine of an image (what the NIfTI header holds)."""
    return _affine_lps_to_ras(image.GetSpacing(), image.GetOrigin(), image.GetDirection())


def _num(ds: pydicom.Dataset, keyword: str) -> float | None:
    value = ds.get(keyword)
    if value in (None, ""):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _enhanced_value(ds: pydicom.Dataset, sequence: str, keyword: str) -> float | None:
    item = _functional(ds, 0, sequence)
    return None if item is None else _num(item, keyword)


def _str(ds: pydicom.Dataset, keyword: str) -> str | None:
    value = ds.get(keyword)
    if value in (None, ""):
        return None
    if isinstance(value, pydicom.multival.MultiValue):
        return "\\".join(str(v) for v in value)
    return str(value).strip()


def _affine_lps_to_ras(spacing, origin, direction) -> np.ndarray:
    lps = np.eye(4)
    lps[:3, :3] = np.asarray(direction, float).reshape(3, 3) * np.asarray(spacing, float)
    lps[:3, 3] = origin
    return np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps


def _sidecar(
    geometry: tuple[tuple, tuple, tuple, tuple, str],
    frames: list[_Frame],
    ds: pydicom.Dataset,
    multi: bool,
    n_files: int,
    spacing_mm: float,
    notes: list[str],
) -> dict:
    """Allow-listed facts only: nothing that identifies the patient, the site or the study."""
    tr = _num(ds, "RepetitionTime")
    te = _num(ds, "EchoTime")
    thickness = _num(ds, "SliceThickness")
    if multi:
        tr = (
            tr
            if tr is not None
            else _enhanced_value(ds, "MRTimingAndRelatedParametersSequence", "RepetitionTime")
        )
        te = te if te is not None else _enhanced_value(ds, "MREchoSequence", "EffectiveEchoTime")
        thickness = (
            thickness
            if thickness is not None
            else _enhanced_value(ds, "PixelMeasuresSequence", "SliceThickness")
        )
    slopes = sorted({f.slope for f in frames})
    intercepts = sorted({f.intercept for f in frames})
    size, spacing, origin, direction, data_type = geometry
    return {
        "size": list(size),
        "spacing": list(spacing),
        "origin_lps": list(origin),
        "direction_lps": list(direction),
        "affine_ras": _affine_lps_to_ras(spacing, origin, direction).tolist(),
        "instance_numbers": [f.number for f in frames],
        "instance_numbers_are_frame_numbers": multi,
        "n_files": n_files,
        "n_slices": len(frames),
        "slice_spacing_mm": None if np.isnan(spacing_mm) else spacing_mm,
        "repetition_time": tr,
        "echo_time": te,
        "field_strength": _num(ds, "MagneticFieldStrength"),
        "slice_thickness": thickness,
        "series_description": _str(ds, "SeriesDescription"),
        "series_number": None if ds.get("SeriesNumber") in (None, "") else int(ds.SeriesNumber),
        "modality": _str(ds, "Modality"),
        "manufacturer": _str(ds, "Manufacturer"),
        "manufacturer_model": _str(ds, "ManufacturerModelName"),
        "mr_acquisition_type": _str(ds, "MRAcquisitionType"),
        "scanning_sequence": _str(ds, "ScanningSequence"),
        "image_type": _str(ds, "ImageType"),
        "multi_frame": multi,
        "rescale_slopes": slopes,
        "rescale_intercepts": intercepts,
        "data_type": data_type,
        "converter": "spinefx.dicom.convert",
        "notes": notes,
    }


# ---------------------------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------------------------


def _read(
    dicom_dir: Path | str,
    *,
    series_uid: str | None = None,
    patient: str | None = None,
    expect_plane: str | None = None,
    echo: int | None = None,
    allow_derived: bool | None = None,
) -> tuple[np.ndarray, dict]:
    """The series' volume [k, rows, cols] (real-world values) and its sidecar; ``read_series`` says how."""
    dicom_dir = Path(dicom_dir)
    series, notes = _scan_folder(dicom_dir, patient)
    uid, members, choice_notes = _choose_series(series, series_uid, dicom_dir, patient)
    notes += choice_notes
    members, stack_notes = plain_stack(
        members, dicom_dir, patient=patient, echo=echo, allow_derived=allow_derived
    )
    notes += stack_notes
    frames, multi = _frames_of(members, patient)
    check_one_kind(members, patient)
    _check_consistent(frames, dicom_dir, patient)
    axes = _axes(frames[0].orientation, frames[0].path, patient)
    plane = slice_plane(axes[:, 2])
    if expect_plane is not None and plane != expect_plane:
        raise SpinefxError(
            f"the series is {plane} (slice normal {np.round(axes[:, 2], 3).tolist()} in LPS), "
            f"not {expect_plane}.",
            patient=patient,
            path=dicom_dir,
            fix=f"point the sheet at the {expect_plane} series "
            "(or choose it with t1_series_uid/t2_series_uid).",
        )
    frames, spacing = _sort_and_space(frames, axes, dicom_dir, patient)
    check_unique_instances(members, patient)
    first_ds = members[0][1]
    if np.isnan(spacing):  # one slice: the thickness is the best depth we have
        spacing = float(_num(first_ds, "SpacingBetweenSlices") or _num(first_ds, "SliceThickness") or 1.0)
        notes.append("single-slice series")
    volume = _volume(frames, multi, patient)
    row_mm, col_mm = frames[0].pixel_spacing
    geometry = (
        (volume.shape[2], volume.shape[1], volume.shape[0]),
        (float(col_mm), float(row_mm), float(spacing)),
        tuple(float(v) for v in frames[0].position),
        tuple(float(v) for v in axes.flatten()),
        PIXEL_TYPE_NAMES[volume.dtype],
    )
    meta = _sidecar(
        geometry, frames, first_ds, multi, len(members), spacing if len(frames) > 1 else float("nan"), notes
    )
    meta["plane"] = plane
    return volume, meta


def read_series(
    dicom_dir: Path | str,
    *,
    series_uid: str | None = None,
    patient: str | None = None,
    expect_plane: str | None = None,
    echo: int | None = None,
    allow_derived: bool | None = None,
) -> tuple[sitk.Image, dict]:
    """Read one series from ``dicom_dir`` into a SimpleITK image (LPS) and its PHI-free sidecar dict.

    The series is ``series_uid`` if given, else the only (non-localizer) series in the folder.
    Slices are ordered by position along the slice normal; the sidecar's ``instance_numbers`` gives
    the InstanceNumber of each slice k so sheet annotations map to voxel indices. With
    ``expect_plane`` (sagittal, coronal, axial) a stack in another plane is refused: the study's
    boxes and neighbour slices only make sense on the sagittal series. ``echo`` picks one echo of a
    multi-echo series; ``allow_derived`` accepts a DERIVED series (both: ``convert`` config block).
    """
    import SimpleITK as sitk

    volume, meta = _read(
        dicom_dir,
        series_uid=series_uid,
        patient=patient,
        expect_plane=expect_plane,
        echo=echo,
        allow_derived=allow_derived,
    )
    image = sitk.GetImageFromArray(volume)
    image.SetSpacing(meta["spacing"])
    image.SetOrigin(meta["origin_lps"])
    image.SetDirection(meta["direction_lps"])
    return image, meta


def convert_series(
    dicom_dir: Path | str,
    out_nii: Path | str,
    out_json: Path | str,
    *,
    series_uid: str | None = None,
    patient: str | None = None,
    expect_plane: str | None = None,
    compression_level: int = 1,
    echo: int | None = None,
    allow_derived: bool | None = None,
) -> dict:
    """Convert one DICOM series to ``out_nii`` (NIfTI, gzip if the name ends .gz) and ``out_json``.

    ``compression_level`` (1 fastest .. 9 smallest) trades file size for speed; level 1 keeps the
    conversion within dcm2niix's time on typical series. Returns the sidecar dict.
    """
    volume, meta = _read(
        dicom_dir,
        series_uid=series_uid,
        patient=patient,
        expect_plane=expect_plane,
        echo=echo,
        allow_derived=allow_derived,
    )
    out_nii, out_json = Path(out_nii), Path(out_json)
    with atomic_path(out_nii) as tmp:
        write_nifti(tmp, volume, np.asarray(meta["affine_ras"]), compression_level=compression_level)
    with atomic_path(out_json) as tmp:
        tmp.write_text(json.dumps(meta, indent=2) + "\n")
    return meta


__all__ = ["ConversionWarning", "affine_ras", "convert_series", "read_series"]
