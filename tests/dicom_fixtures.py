"""Small, realistic DICOM series for the converter tests, written with spinefx.dicom.write.

Each helper returns the real-world volume that the files hold (after uint16 quantisation and the
rescale), so a test can compare a reader's output with what was written, voxel for voxel.
"""

from __future__ import annotations

import gzip
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from scipy import ndimage

from spinefx.dicom.write import SeriesGeometry, SeriesInfo, make_uid, write_series

# Identity fields written into every fixture file: none of them may reach an output.
PHI = {
    "PatientName": "Doe^Jane^Secret",
    "PatientID": "PHI-ID-778899",
    "PatientBirthDate": "19610203",
    "AccessionNumber": "ACC-445566",
    "InstitutionName": "Hospital Of Secrets",
    "ReferringPhysicianName": "Who^Doctor",
}


@dataclass
class FixtureSeries:
    """What was written: the folder, the files, the volume [k, rows, cols] and the geometry."""

    folder: Path
    paths: list[Path]
    volume: np.ndarray  # real-world values (stored * slope + intercept), slice k along the normal
    geometry: SeriesGeometry
    info: SeriesInfo
    series_uid: str
    instance_numbers: list[int]  # InstanceNumber of slice k


def structured_volume(shape: tuple[int, int, int], seed: int = 0, max_value: float = 2000.0) -> np.ndarray:
    """Smooth blobs plus a gradient, non-negative: every voxel differs from its neighbours, so a
    flipped or shuffled axis cannot compare equal by accident."""
    rng = np.random.default_rng(seed)
    noise = ndimage.gaussian_filter(rng.random(shape), sigma=(1.0, 3.0, 3.0))
    noise = (noise - noise.min()) / (np.ptp(noise) + 1e-12)
    k, r, c = np.meshgrid(*(np.linspace(0, 1, n) for n in shape), indexing="ij")
    vol = 0.6 * noise + 0.25 * r + 0.1 * c + 0.05 * k
    return (vol / vol.max() * max_value).astype(float)


def rotation(deg_about_lr: float = 0.0, deg_about_si: float = 0.0) -> np.ndarray:
    """Rotation matrix (LPS): first about the left-right (x) axis, then about the head-foot (z) axis."""
    a, b = np.radians(deg_about_lr), np.radians(deg_about_si)
    rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    rz = np.array([[np.cos(b), -np.sin(b), 0], [np.sin(b), np.cos(b), 0], [0, 0, 1]])
    return rz @ rx


def sagittal_geometry(
    shape: tuple[int, int, int],
    pixel_spacing: tuple[float, float] = (1.0, 1.0),
    slice_spacing: float = 4.0,
    tilt_deg: tuple[float, float] = (0.0, 0.0),
    centre: tuple[float, float, float] = (3.0, -12.0, 40.0),
) -> SeriesGeometry:
    """A sagittal stack centred on ``centre`` (LPS mm): columns run anterior->posterior, rows head->foot,
    optionally tilted (degrees about left-right, then head-foot) to make it oblique."""
    rot = rotation(*tilt_deg)
    row_dir = rot @ np.array([0.0, 1.0, 0.0])  # +P
    col_dir = rot @ np.array([0.0, 0.0, -1.0])  # -S (rows go down)
    normal = np.cross(row_dir, col_dir)
    n_k, n_r, n_c = shape
    half = (
        (n_c - 1) * pixel_spacing[1] / 2 * row_dir
        + (n_r - 1) * pixel_spacing[0] / 2 * col_dir
        + (n_k - 1) * slice_spacing / 2 * normal
    )
    origin = np.asarray(centre, float) - half
    return SeriesGeometry(
        origin=tuple(float(v) for v in origin),
        row_dir=tuple(float(v) for v in row_dir),
        col_dir=tuple(float(v) for v in col_dir),
        pixel_spacing=pixel_spacing,
        slice_spacing=slice_spacing,
        slice_thickness=slice_spacing * 0.9,
    )


def make_info(
    description: str = "T2 SAG TSE", series_number: int = 2, study: str = "study-1", **kw
) -> SeriesInfo:
    return SeriesInfo(
        series_description=description,
        series_number=series_number,
        study_uid=make_uid(study),
        frame_of_reference_uid=make_uid(study, "frame"),
        repetition_time=kw.pop("repetition_time", 3000.0),
        echo_time=kw.pop("echo_time", 100.0),
        field_strength=kw.pop("field_strength", 1.5),
        patient=dict(PHI),
        **kw,
    )


def write_fixture(
    folder: Path,
    shape: tuple[int, int, int] = (10, 40, 32),
    *,
    pixel_spacing: tuple[float, float] = (1.0, 1.0),
    slice_spacing: float = 4.0,
    tilt_deg: tuple[float, float] = (0.0, 0.0),
    slope: float = 1.0,
    intercept: float = 0.0,
    shuffle_names: bool = False,
    reverse_instances: bool = False,
    seed: int = 0,
    info: SeriesInfo | None = None,
    geometry: SeriesGeometry | None = None,
    name_prefix: str = "IM",
) -> FixtureSeries:
    """Write one series; options reproduce what real exports do to file names and numbers."""
    folder = Path(folder)
    info = info or make_info()
    geometry = geometry or sagittal_geometry(shape, pixel_spacing, slice_spacing, tilt_deg)
    real = structured_volume(shape, seed)
    stored = np.rint((real - intercept) / slope)
    volume = stored * slope + intercept
    n = shape[0]
    numbers = list(range(n, 0, -1)) if reverse_instances else list(range(1, n + 1))
    rng = np.random.default_rng(seed + 1)
    if shuffle_names:
        names = [f"{name_prefix}{v:06d}" for v in rng.permutation(900000)[:n] + 100000]
    else:
        names = [f"{name_prefix}{i + 1:04d}.dcm" for i in range(n)]
    paths = write_series(
        volume,
        folder,
        geometry,
        info,
        rescale_slope=slope,
        rescale_intercept=intercept,
        instance_numbers=numbers,
        file_names=names,
    )
    series_uid = str(pydicom.dcmread(paths[0], stop_before_pixels=True).SeriesInstanceUID)
    return FixtureSeries(folder, paths, volume, geometry, info, series_uid, numbers)


def philips_enhanced_mr() -> Path | None:
    """Path of nibabel's real Philips enhanced (multi-frame) MR test file, if the wheel ships it."""
    try:
        import nibabel
    except ImportError:
        return None
    path = Path(nibabel.__file__).parent / "nicom" / "tests" / "data" / "philips_mprage.dcm.gz"
    return path if path.is_file() else None


def gunzip_to(src: Path, dst: Path) -> Path:
    dst.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(src, "rb") as fin, open(dst, "wb") as fout:
        shutil.copyfileobj(fin, fout)
    return dst


def dcm2niix_binary() -> str | None:
    """The dcm2niix executable (the Python package ships it next to the interpreter)."""
    import sys

    exe = Path(sys.executable).parent / "dcm2niix"
    if exe.is_file():
        return str(exe)
    return shutil.which("dcm2niix")


def run_dcm2niix(
    dicom_dir: Path, out_dir: Path, *, compress: bool = False, extra: tuple[str, ...] = ()
) -> list[Path]:
    """Convert with dcm2niix (no sidecar, Philips precise scaling off so values are display values)."""
    exe = dcm2niix_binary()
    if exe is None:
        raise RuntimeError("dcm2niix not found")
    out_dir.mkdir(parents=True, exist_ok=True)
    cmd = [
        exe,
        "-z",
        "y" if compress else "n",
        "-b",
        "n",
        "-p",
        "n",
        "-f",
        "%s_%d",
        "-o",
        str(out_dir),
        *extra,
    ]
    subprocess.run([*cmd, str(dicom_dir)], check=True, capture_output=True, text=True)
    return sorted(out_dir.glob("*.nii*"))


def write_enhanced_mr(
    path: Path,
    volume: np.ndarray,
    geometry: SeriesGeometry,
    info: SeriesInfo,
    *,
    frame_order: list[int] | None = None,
    n_volumes: int = 1,
    slope: float = 1.0,
    intercept: float = 0.0,
) -> Path:
    """One Enhanced MR Image Storage file holding ``volume`` [k, rows, cols] as frames.

    ``frame_order`` lists which slice k each frame holds (frames need not be stored in spatial order);
    ``n_volumes`` > 1 repeats the stack (like several echoes), which the converter must refuse.
    """
    from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
    from pydicom.sequence import Sequence
    from pydicom.uid import ExplicitVRLittleEndian

    enhanced = "1.2.840.10008.5.1.4.1.1.4.1"
    n_k, rows, cols = volume.shape
    order = list(frame_order) if frame_order is not None else list(range(n_k))
    order = order * n_volumes
    stored = np.rint((volume - intercept) / slope).astype(np.uint16)
    series_uid = info.series_uid or make_uid(info.study_uid, info.series_number, "enhanced")
    sop_uid = make_uid(series_uid, "enhanced-instance")
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = enhanced
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = make_uid("spinefx-implementation")
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = enhanced
    ds.SOPInstanceUID = sop_uid
    ds.Modality = "MR"
    ds.Manufacturer = info.manufacturer
    ds.StudyInstanceUID = info.study_uid
    ds.SeriesInstanceUID = series_uid
    ds.FrameOfReferenceUID = info.frame_of_reference_uid
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = info.study_date
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = "120000"
    ds.AcquisitionDateTime = info.study_date + "120000"
    ds.SeriesNumber = info.series_number
    ds.InstanceNumber = 1
    ds.SeriesDescription = info.series_description
    ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "NONE"]
    ds.MagneticFieldStrength = info.field_strength
    ds.MRAcquisitionType = "2D"
    for tag, value in info.patient.items():
        setattr(ds, tag, value)
    ds.NumberOfFrames = len(order)
    ds.Rows, ds.Columns = rows, cols
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0

    shared = Dataset()
    meas = Dataset()
    meas.PixelSpacing = [float(geometry.pixel_spacing[0]), float(geometry.pixel_spacing[1])]
    meas.SliceThickness = float(geometry.slice_thickness or geometry.slice_spacing)
    meas.SpacingBetweenSlices = float(geometry.slice_spacing)
    shared.PixelMeasuresSequence = Sequence([meas])
    ori = Dataset()
    ori.ImageOrientationPatient = [round(float(v), 8) for v in (*geometry.row_dir, *geometry.col_dir)]
    shared.PlaneOrientationSequence = Sequence([ori])
    pvt = Dataset()
    pvt.RescaleSlope = f"{slope:g}"
    pvt.RescaleIntercept = f"{intercept:g}"
    pvt.RescaleType = "US"
    shared.PixelValueTransformationSequence = Sequence([pvt])
    timing = Dataset()
    timing.RepetitionTime = info.repetition_time or 0.0
    shared.MRTimingAndRelatedParametersSequence = Sequence([timing])
    ds.SharedFunctionalGroupsSequence = Sequence([shared])

    per_frame = []
    for i, k in enumerate(order):
        item = Dataset()
        pos = Dataset()
        pos.ImagePositionPatient = [float(round(v, 6)) for v in geometry.slice_position(k)]
        item.PlanePositionSequence = Sequence([pos])
        content = Dataset()
        content.StackID = "1"
        content.InStackPositionNumber = k + 1
        content.TemporalPositionIndex = i // n_k + 1
        content.DimensionIndexValues = [i // n_k + 1, k + 1]
        item.FrameContentSequence = Sequence([content])
        echo = Dataset()
        echo.EffectiveEchoTime = info.echo_time or 0.0
        item.MREchoSequence = Sequence([echo])
        per_frame.append(item)
    ds.PerFrameFunctionalGroupsSequence = Sequence(per_frame)
    ds.PixelData = np.ascontiguousarray(stored[order]).tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path
