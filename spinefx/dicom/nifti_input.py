"""A NIfTI the user already has (e.g. BIDS ``sub-*/anat/*_T2w.nii.gz``) -> the results/nifti/ contract.

Why a step of its own rather than a copy: the later steps read the volume *and* its sidecar, whose
``instance_numbers`` turn the sheet's lesion slice into a voxel index. A NIfTI has no InstanceNumbers,
so slice k gets the number k + 1 (``source: nifti`` says so) and the sheet's 0-based ``lesion_slice``
becomes ``lesion_instance = lesion_slice + 1`` (``spinefx.sheets.patient_record``): every later step
runs unchanged. The file is checked the way a DICOM series is (one 3-D greyscale volume with an
orientation, sagittal slices along the third voxel axis) and written again by spinefx's
own writer, so every volume under results/nifti/ has one form (int16 or float32, RAS+ qform = sform,
gzip level 1) whichever route it came by. The voxel grid is kept as stored, never reoriented: the
sheet's box and lesion slice are indices of the user's file.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from spinefx.atomic import atomic_path
from spinefx.dicom.nifti import PIXEL_TYPE_NAMES, write_nifti
from spinefx.errors import SpinefxError

# BIDS sidecar key -> (spinefx sidecar key, factor to spinefx units); BIDS times are in s, spinefx's in ms.
# An allow-list, as the DICOM sidecar's: InstitutionName, dates and the like never reach results/.
_BIDS_FIELDS = {
    "RepetitionTime": ("repetition_time", 1000.0),
    "EchoTime": ("echo_time", 1000.0),
    "MagneticFieldStrength": ("field_strength", 1.0),
    "SliceThickness": ("slice_thickness", 1.0),
    "SeriesNumber": ("series_number", None),
    "SeriesDescription": ("series_description", None),
    "Modality": ("modality", None),
    "Manufacturer": ("manufacturer", None),
    "ManufacturersModelName": ("manufacturer_model", None),
    "MRAcquisitionType": ("mr_acquisition_type", None),
    "ScanningSequence": ("scanning_sequence", None),
    "ImageType": ("image_type", None),
}
_AXIS_WORDS = {"sagittal": "left-right", "coronal": "anterior-posterior", "axial": "superior-inferior"}
_NO_ORIENTATION = "NIFTI_XFORM_UNKNOWN"


def _itk_message(err: RuntimeError) -> str:
    text = " ".join(str(err).split())
    return text.split("ITK ERROR:", 1)[-1].strip()


def _read(src: Path, patient: str | None):
    """The image (LPS physical space, as SimpleITK reads NIfTI), checked to be one 3-D greyscale volume
    with an orientation; the header is checked before the voxels are read."""
    import SimpleITK as sitk

    reader = sitk.ImageFileReader()
    reader.SetImageIO("NiftiImageIO")
    reader.SetFileName(str(src))
    try:
        reader.ReadImageInformation()
    except RuntimeError as err:
        raise SpinefxError(
            f"cannot be read as NIfTI ({_itk_message(err)}).",
            patient=patient,
            path=src,
            fix="check the file is a complete NIfTI-1/-2 volume (e.g. re-run dcm2niix on the series).",
        ) from err
    header = {k: reader.GetMetaData(k) for k in reader.GetMetaDataKeys()}
    n_dims = int(header.get("dim[0]", reader.GetDimension()))
    dims = [int(header.get(f"dim[{i}]", 1)) for i in range(1, n_dims + 1)]
    if n_dims < 3 or any(n > 1 for n in dims[3:]) or min(dims) < 1:
        raise SpinefxError(
            f"the image is {n_dims}-D (size {'x'.join(map(str, dims))}), not one 3-D volume.",
            patient=patient,
            path=src,
            fix="give one 3-D volume per series: split a 4-D file (several echoes or time points) and "
            "choose the volume, e.g. with fslsplit or nibabel.",
        )
    if reader.GetNumberOfComponents() != 1:
        raise SpinefxError(
            f"the image has {reader.GetNumberOfComponents()} values per voxel (colour or vector); "
            "MR magnitude volumes are greyscale.",
            patient=patient,
            path=src,
            fix="give the magnitude volume of the series.",
        )
    if header.get("qform_code_name") == _NO_ORIENTATION and header.get("sform_code_name") == _NO_ORIENTATION:
        raise SpinefxError(
            "the file states no orientation (qform_code and sform_code are both 0), so its plane and "
            "its place in the scanner are unknown.",
            patient=patient,
            path=src,
            fix="convert the DICOM again with dcm2niix (which writes both), or give the DICOM folder "
            "in t1_dicom/t2_dicom instead.",
        )
    try:
        image = reader.Execute()
    except RuntimeError as err:
        raise SpinefxError(
            f"cannot be read as NIfTI ({_itk_message(err)}).",
            patient=patient,
            path=src,
            fix="check the file is complete and its qform/sform is a proper rotation "
            "(e.g. re-run dcm2niix on the series).",
        ) from err
    if image.GetDimension() == 4:  # x, y, z and a time axis of length 1
        image = image[:, :, :, 0]
    return image, header


def _check_plane(direction: np.ndarray, expect_plane: str | None, src: Path, patient: str | None) -> str:
    """The plane of the stack from its third voxel axis; the expected plane must be that axis."""
    from spinefx.dicom.convert import slice_plane  # imports pydicom: not at Snakefile load (bids_sidecar)

    plane = slice_plane(direction[:, 2])
    if expect_plane is None or plane == expect_plane:
        return plane
    leaning = [slice_plane(direction[:, a]) for a in range(3)]
    where = (
        f" The {expect_plane} ({_AXIS_WORDS[expect_plane]}) axis is voxel axis {leaning.index(expect_plane)} "
        "(the file was reoriented, e.g. to RAS, so the slices are no longer its third axis)."
        if expect_plane in leaning
        else ""
    )
    raise SpinefxError(
        f"the file's third voxel axis (the slice axis) runs {_AXIS_WORDS[plane]}, so its slices are "
        f"{plane}, not {expect_plane}.{where}",
        patient=patient,
        path=src,
        fix=f"give the {expect_plane} series as it was acquired (dcm2niix keeps the slices as the third "
        "axis), or give its DICOM folder in t1_dicom/t2_dicom.",
    )


def _volume(image) -> np.ndarray:
    """Voxel values [k, j, i] as int16 when whole and in range (as DICOM stores them), else float32."""
    import SimpleITK as sitk

    values = sitk.GetArrayViewFromImage(image)
    if values.dtype.kind in "iub":
        info = np.iinfo(np.int16)
        if values.size and values.min() >= info.min and values.max() <= info.max:
            return values.astype(np.int16)
        return values.astype(np.float32)
    return values.astype(np.float32)  # ITK's NIfTI reader has already made NaN and inf 0


def bids_sidecar(nifti: Path | str) -> Path:
    """The JSON a BIDS converter writes beside ``nifti`` (``x.nii.gz`` -> ``x.json``); it may not exist."""
    nifti = Path(nifti)
    stem = nifti.name.removesuffix(".gz").removesuffix(".nii")
    return nifti.with_name(f"{stem}.json")


def _bids_facts(path: Path | str | None, notes: list[str]) -> dict:
    """Acquisition facts from a BIDS sidecar, allow-listed and in spinefx's units; a broken one is noted."""
    if path is None or not Path(path).is_file():
        return {}
    try:
        bids = json.loads(Path(path).read_text())
        if not isinstance(bids, dict):
            raise ValueError("not a JSON object")
    except (OSError, ValueError) as err:
        notes.append(f"BIDS sidecar {Path(path).name} not read ({err})")
        return {}
    facts = {}
    for key, (ours, factor) in _BIDS_FIELDS.items():
        value = bids.get(key)
        if value is None:
            continue
        if factor is not None:
            if isinstance(value, bool) or not isinstance(value, int | float):
                continue
            value = float(value) * factor
        elif key == "SeriesNumber":
            value = int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
        elif isinstance(value, list):
            value = "\\".join(str(v) for v in value)
        else:
            value = str(value)
        facts[ours] = value
    if facts:
        notes.append(f"acquisition facts from the BIDS sidecar {Path(path).name}")
    return facts


def import_nifti(
    src: Path | str,
    out_nii: Path | str,
    out_json: Path | str,
    *,
    patient: str | None = None,
    expect_plane: str | None = None,
    lesion_slice: int | None = None,
    bids_json: Path | str | None = None,
    compression_level: int = 1,
) -> dict:
    """Check the NIfTI ``src`` and write it as ``out_nii`` with the sidecar ``out_json``; return the sidecar.

    With ``expect_plane`` (sagittal, coronal, axial) the file's third voxel axis must be that plane's
    normal, as ``convert_series`` demands of a DICOM stack. ``lesion_slice`` (the T2W's, 0-based along
    the third axis) must be a slice of the file. ``bids_json`` (a BIDS sidecar, e.g. dcm2niix's) fills
    the acquisition facts (TR and TE in ms, field strength, ...) that a NIfTI header lacks; without it
    they are None. Nothing is written when a check fails.
    """
    src = Path(src)
    if not src.is_file():
        raise SpinefxError(
            "the NIfTI file does not exist.",
            patient=patient,
            path=src,
            fix="set t1_nifti/t2_nifti in the sheet to the file, relative to the sheet.",
        )
    from spinefx.dicom.convert import PLANES, affine_ras

    if expect_plane is not None and expect_plane not in PLANES:
        raise ValueError(f"expect_plane must be one of {PLANES}, not {expect_plane!r}")
    image, header = _read(src, patient)
    direction = np.asarray(image.GetDirection(), dtype=float).reshape(3, 3)
    plane = _check_plane(direction, expect_plane, src, patient)
    size = [int(n) for n in image.GetSize()]
    if lesion_slice is not None and not 0 <= int(lesion_slice) < size[2]:
        raise SpinefxError(
            f"lesion_slice {lesion_slice} is outside the volume: it has {size[2]} slices along its third "
            f"voxel axis (0..{size[2] - 1}).",
            patient=patient,
            path=src,
            fix="set lesion_slice in the sheet to the 0-based index of the T2W slice the box was drawn on.",
        )
    volume = _volume(image)
    notes = [] if size[2] > 1 else ["single-slice volume"]
    facts = _bids_facts(bids_json, notes)
    spacing = [float(v) for v in image.GetSpacing()]
    affine = affine_ras(image)
    meta = {
        "size": size,
        "spacing": spacing,
        "origin_lps": [float(v) for v in image.GetOrigin()],
        "direction_lps": [float(v) for v in direction.flatten()],
        "affine_ras": affine.tolist(),
        # No InstanceNumbers in a NIfTI: slice k is number k + 1, which the sheet's lesion_slice + 1 names.
        "instance_numbers": list(range(1, size[2] + 1)),
        "instance_numbers_are_frame_numbers": False,
        "n_files": 1,
        "n_slices": size[2],
        "slice_spacing_mm": spacing[2] if size[2] > 1 else None,
        "repetition_time": None,
        "echo_time": None,
        "field_strength": None,
        "slice_thickness": None,
        "series_description": None,
        "series_number": None,
        "modality": None,
        "manufacturer": None,
        "manufacturer_model": None,
        "mr_acquisition_type": None,
        "scanning_sequence": None,
        "image_type": None,
        "multi_frame": False,
        "rescale_slopes": [1.0],
        "rescale_intercepts": [0.0],
        "data_type": PIXEL_TYPE_NAMES[volume.dtype],
        "converter": "spinefx.dicom.nifti_input",
        "source": "nifti",
        "source_data_type": header.get("datatype"),
        "notes": notes,
        "plane": plane,
    }
    meta.update(facts)
    out_nii, out_json = Path(out_nii), Path(out_json)
    with atomic_path(out_nii) as tmp:
        write_nifti(tmp, volume, affine, compression_level=compression_level)
    with atomic_path(out_json) as tmp:
        tmp.write_text(json.dumps(meta, indent=2) + "\n")
    return meta


__all__ = ["bids_sidecar", "import_nifti"]
