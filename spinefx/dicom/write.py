"""Write a 3-D volume as a DICOM MR series the way a scanner does: one file per slice.

Used by the demo cohort and by the converter tests (shuffled file names, reversed instance
numbers, oblique planes, non-unit rescale), so both exercise the same, realistic files.
Geometry is in DICOM patient coordinates (LPS, millimetres).
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

# Root for UIDs made by spinefx; generate_uid(prefix, entropy_srcs) makes them reproducible.
UID_PREFIX = "1.2.826.0.1.3680043.8.498."


def make_uid(*parts: object) -> str:
    """A valid, reproducible DICOM UID derived from ``parts`` (same parts, same UID)."""
    return generate_uid(prefix=UID_PREFIX, entropy_srcs=[str(p) for p in parts])


@dataclass(frozen=True)
class SeriesGeometry:
    """Where the voxels of a series sit in patient space (LPS, mm): the one index-to-point geometry of
    spinefx, used to write DICOM and (by the demo phantom) to sample anatomy on the same voxels.

    ``row_dir`` is the direction of increasing column index (along a row, DICOM's first
    ImageOrientationPatient vector); ``col_dir`` of increasing row index. Voxel (k, r, c) sits at
    ``origin + c * pixel_spacing[1] * row_dir + r * pixel_spacing[0] * col_dir + k * slice_spacing *
    normal`` with ``normal = row_dir x col_dir`` unless given. ``shape`` (slices, rows, columns) is
    needed only to sample points or find the centre.
    """

    origin: tuple[float, float, float]
    row_dir: tuple[float, float, float]
    col_dir: tuple[float, float, float]
    pixel_spacing: tuple[float, float]  # (between rows, between columns), as DICOM PixelSpacing
    slice_spacing: float
    slice_thickness: float | None = None
    normal: tuple[float, float, float] | None = None
    shape: tuple[int, int, int] | None = None  # slices, rows, columns

    @property
    def thickness(self) -> float:
        """Slice thickness (mm): as given, else the slice spacing (contiguous slices)."""
        return float(self.slice_thickness or self.slice_spacing)

    def slice_normal(self) -> np.ndarray:
        if self.normal is not None:
            return np.asarray(self.normal, float)
        return np.cross(np.asarray(self.row_dir, float), np.asarray(self.col_dir, float))

    def slice_position(self, k: int) -> np.ndarray:
        return np.asarray(self.origin, float) + k * self.slice_spacing * self.slice_normal()

    def _shape(self) -> tuple[int, int, int]:
        if self.shape is None:
            raise ValueError("this SeriesGeometry has no shape (slices, rows, columns)")
        return self.shape

    def points(self, k: float, sub: np.ndarray | None = None) -> np.ndarray:
        """Physical points of slice k (+ sub-slice offsets in mm along the normal): [n_sub, R, C, 3]."""
        sub = np.zeros(1) if sub is None else np.asarray(sub, float)
        _, nr, nc = self._shape()
        normal = self.slice_normal()
        o = np.asarray(self.origin) + k * self.slice_spacing * normal
        r = np.arange(nr) * self.pixel_spacing[0]
        c = np.arange(nc) * self.pixel_spacing[1]
        return (
            o
            + sub[:, None, None, None] * normal
            + r[None, :, None, None] * np.asarray(self.col_dir)
            + c[None, None, :, None] * np.asarray(self.row_dir)
        )

    def centre(self) -> np.ndarray:
        """Physical centre of the field of view (LPS mm)."""
        k, r, c = (np.asarray(self._shape()) - 1) / 2
        return (
            np.asarray(self.origin)
            + k * self.slice_spacing * self.slice_normal()
            + r * self.pixel_spacing[0] * np.asarray(self.col_dir)
            + c * self.pixel_spacing[1] * np.asarray(self.row_dir)
        )

    def index_of(self, point: np.ndarray) -> np.ndarray:
        """Continuous (k, r, c) index of a physical point (orthonormal axes)."""
        d = np.asarray(point, float) - np.asarray(self.origin)
        return np.array(
            [
                d @ self.slice_normal() / self.slice_spacing,
                d @ np.asarray(self.col_dir) / self.pixel_spacing[0],
                d @ np.asarray(self.row_dir) / self.pixel_spacing[1],
            ]
        )


@dataclass
class SeriesInfo:
    """Acquisition facts and identity written into every slice header."""

    series_description: str
    series_number: int
    study_uid: str
    frame_of_reference_uid: str
    series_uid: str | None = None
    repetition_time: float | None = None
    echo_time: float | None = None
    field_strength: float = 1.5
    scanning_sequence: str = "SE"
    patient: Mapping[str, str] = field(default_factory=dict)  # PHI tags: PatientName, PatientID, ...
    acquisition_matrix: tuple[int, int] | None = None  # (frequency rows, phase columns)
    manufacturer: str = "spinefx phantom"
    study_date: str = "20200101"


def _quantise(volume: np.ndarray, slope: float, intercept: float) -> np.ndarray:
    stored = np.rint((np.asarray(volume, float) - intercept) / slope)
    if stored.min() < 0 or stored.max() > 65535:
        raise ValueError("volume does not fit uint16 with this rescale slope/intercept")
    return stored.astype(np.uint16)


def write_series(
    volume: np.ndarray,
    out_dir: str | Path,
    geometry: SeriesGeometry,
    info: SeriesInfo,
    *,
    rescale_slope: float = 1.0,
    rescale_intercept: float = 0.0,
    instance_numbers: Sequence[int] | None = None,
    file_names: Sequence[str] | None = None,
) -> list[Path]:
    """Write ``volume`` [slices, rows, columns] (real-world values) as one DICOM file per slice.

    Stored pixel values are ``(value - intercept) / slope`` as uint16. ``instance_numbers`` and
    ``file_names`` default to 1..n and ``IM0001.dcm``...; tests pass others (reversed, shuffled)
    to prove the reader sorts by position and not by name or number.
    """
    volume = np.asarray(volume)
    if volume.ndim != 3:
        raise ValueError(f"volume must be [slices, rows, columns], got shape {volume.shape}")
    n_slices, rows, cols = volume.shape
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stored = _quantise(volume, rescale_slope, rescale_intercept)
    series_uid = info.series_uid or make_uid(info.study_uid, info.series_number, info.series_description)
    numbers = list(instance_numbers) if instance_numbers is not None else list(range(1, n_slices + 1))
    names = list(file_names) if file_names is not None else [f"IM{i + 1:04d}.dcm" for i in range(n_slices)]
    if len(numbers) != n_slices or len(names) != n_slices:
        raise ValueError("instance_numbers and file_names need one entry per slice")
    orientation = [float(v) for v in (*geometry.row_dir, *geometry.col_dir)]
    thickness = geometry.thickness
    paths = []
    for k in range(n_slices):
        sop_uid = make_uid(series_uid, k)
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = MRImageStorage
        meta.MediaStorageSOPInstanceUID = sop_uid
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        meta.ImplementationClassUID = make_uid("spinefx-implementation")
        path = out_dir / names[k]
        ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID = MRImageStorage
        ds.SOPInstanceUID = sop_uid
        ds.Modality = "MR"
        ds.Manufacturer = info.manufacturer
        ds.StudyInstanceUID = info.study_uid
        ds.SeriesInstanceUID = series_uid
        ds.FrameOfReferenceUID = info.frame_of_reference_uid
        ds.StudyDate = info.study_date
        ds.SeriesDate = info.study_date
        ds.StudyTime = "120000"
        ds.SeriesNumber = info.series_number
        ds.InstanceNumber = int(numbers[k])
        ds.SeriesDescription = info.series_description
        ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "ND"]
        ds.ScanningSequence = info.scanning_sequence
        ds.SequenceVariant = "NONE"
        ds.MRAcquisitionType = "2D"
        ds.MagneticFieldStrength = info.field_strength
        if info.repetition_time is not None:
            ds.RepetitionTime = info.repetition_time
        if info.echo_time is not None:
            ds.EchoTime = info.echo_time
        if info.acquisition_matrix is not None:
            fr, ph = info.acquisition_matrix
            ds.AcquisitionMatrix = [fr, 0, 0, ph]
        for tag, value in info.patient.items():
            setattr(ds, tag, value)
        ds.ImagePositionPatient = [float(round(v, 6)) for v in geometry.slice_position(k)]
        ds.ImageOrientationPatient = [round(v, 8) for v in orientation]
        ds.PixelSpacing = [float(geometry.pixel_spacing[0]), float(geometry.pixel_spacing[1])]
        ds.SliceThickness = float(thickness)
        ds.SpacingBetweenSlices = float(geometry.slice_spacing)
        ds.SliceLocation = float(np.dot(geometry.slice_position(k), geometry.slice_normal()))
        ds.Rows = rows
        ds.Columns = cols
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated = 16
        ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 0
        ds.RescaleSlope = f"{rescale_slope:g}"
        ds.RescaleIntercept = f"{rescale_intercept:g}"
        ds.RescaleType = "US"
        ds.ContentDate = info.study_date
        ds.InstanceCreationDate = _dt.date(2020, 1, 1).strftime("%Y%m%d")
        ds.PixelData = stored[k].tobytes()
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


__all__ = ["SeriesGeometry", "SeriesInfo", "make_uid", "write_series"]
