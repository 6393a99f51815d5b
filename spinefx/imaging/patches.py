"""Cut the lesion patch out of T2W and T1W in one interpolation each.

The box is drawn on a T2W slice, so the T2W grid defines the patch: a small reference image whose
pixels tile the box (size x size pixels per slice, one slice per needed T2W slice k) is placed in
physical space, T2W is sampled on it directly and T1W is sampled on it through the registration
transform (T2 point -> T1 point). No intermediate resampled volume is made, so each patch pixel goes
through exactly one linear interpolation, as the paper's "resized to 64x64 by linear interpolation".

Grid convention: the box covers pixel *areas* x0..x1 (x1 exclusive), i.e. continuous index
x0 - 0.5 .. x1 - 0.5; the patch pixels tile that extent, so patch pixel i sits at continuous index
x0 - 0.5 + (i + 0.5) * (x1 - x0) / size (the same convention as ``align_corners=False`` resizing).
A box of 64 pixels therefore maps onto a 64x64 patch pixel for pixel.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from spinefx.errors import SpinefxError
from spinefx.imaging.patchfile import channel_names

log = logging.getLogger(__name__)

#: above this fraction of a T1W channel's patch pixels falling outside T1W the patch is refused
MAX_T1_OUTSIDE_FRACTION = 0.5


def zscore_channels(x: np.ndarray, *, eps: float = 1e-6) -> np.ndarray:
    """Z-score every channel of every sample of ``x`` [n, c, h, w] (mean 0, sd 1) as float32.

    The paper normalises each patch; per channel keeps T1W and T2W on the same footing whatever their
    scanner units. A (near-)constant channel has no contrast to keep: it becomes all zeros instead of
    a division by zero.
    """
    x64 = np.asarray(x, dtype=np.float64)
    if x64.ndim != 4:
        raise ValueError(f"expected [n, channels, h, w], got shape {x64.shape}")
    mean = x64.mean(axis=(2, 3), keepdims=True)
    sd = x64.std(axis=(2, 3), keepdims=True)
    flat = sd <= eps * np.maximum(1.0, np.abs(mean))
    out = (x64 - mean) / np.where(flat, 1.0, sd)
    out = np.where(flat, 0.0, out)
    return out.astype(np.float32)


def _load_sidecar(t2_sidecar: Path | Mapping, patient: str | None) -> dict:
    if isinstance(t2_sidecar, Mapping):
        return dict(t2_sidecar)
    try:
        return json.loads(Path(t2_sidecar).read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise SpinefxError(
            f"cannot read the T2W sidecar JSON ({err}).",
            patient=patient,
            path=t2_sidecar,
            fix="rerun the dicom_to_nifti step for this patient.",
        ) from err


def _read_volume(path: Path, what: str, patient: str | None) -> sitk.Image:
    try:
        img = sitk.ReadImage(str(path), sitk.sitkFloat32)
    except RuntimeError as err:
        raise SpinefxError(
            f"cannot read the {what} volume ({str(err).strip().splitlines()[-1]}).",
            patient=patient,
            path=path,
            fix="rerun the dicom_to_nifti step for this patient.",
        ) from err
    if img.GetDimension() != 3:
        raise SpinefxError(
            f"the {what} volume has {img.GetDimension()} dimensions, expected 3.", patient=patient, path=path
        )
    return img


def _read_transform(transform: Path | sitk.Transform, patient: str | None) -> sitk.Transform:
    if isinstance(transform, sitk.Transform):
        return transform
    try:
        return sitk.ReadTransform(str(transform))
    except RuntimeError as err:
        raise SpinefxError(
            "cannot read the T1W-to-T2W transform.",
            patient=patient,
            path=transform,
            fix="rerun register_t1_to_t2 for this patient.",
        ) from err


def slice_index(
    instance_numbers: Sequence[int], lesion_instance: int, *, patient: str | None = None, path=None
) -> int:
    """Slice index k of the T2W image whose DICOM InstanceNumber is ``lesion_instance``."""
    numbers = [int(n) for n in instance_numbers]
    if int(lesion_instance) not in numbers:
        span = f"{min(numbers)}..{max(numbers)}" if numbers else "none"
        raise SpinefxError(
            f"lesion_instance {lesion_instance} is not an InstanceNumber of the T2W series "
            f"({len(numbers)} slices, InstanceNumbers {span}).",
            patient=patient,
            path=path,
            fix="set lesion_instance in the patient sheet to the InstanceNumber of the T2W image "
            "the box was drawn on.",
        )
    return numbers.index(int(lesion_instance))


def _check_box(box, size_xy: tuple[int, int], patient: str | None, path) -> tuple[int, int, int, int]:
    try:
        x0, y0, x1, y1 = (int(v) for v in box)
    except (TypeError, ValueError) as err:
        raise SpinefxError(
            f"box {box!r} is not four integers (x0, y0, x1, y1).", patient=patient, path=path
        ) from err
    nx, ny = size_xy
    if x1 <= x0 or y1 <= y0:
        raise SpinefxError(
            f"box (x0={x0}, y0={y0}, x1={x1}, y1={y1}) is empty or inverted (x1/y1 are exclusive and "
            "must be larger than x0/y0).",
            patient=patient,
            path=path,
            fix="check box_x0..box_y1 in the patient sheet.",
        )
    if x0 < 0 or y0 < 0 or x1 > nx or y1 > ny:
        raise SpinefxError(
            f"box (x0={x0}, y0={y0}, x1={x1}, y1={y1}) reaches outside the T2W image of "
            f"{nx} columns x {ny} rows (valid: 0 <= x0 < x1 <= {nx}, 0 <= y0 < y1 <= {ny}).",
            patient=patient,
            path=path,
            fix="check box_x0..box_y1 in the patient sheet (pixel columns x and rows y, 0-based).",
        )
    return x0, y0, x1, y1


def widen_box(
    box: tuple[int, int, int, int], scale: float, size_xy: tuple[int, int]
) -> tuple[int, int, int, int]:
    """The box grown ``scale`` times about its centre, clipped to the image (pixels).

    The paper's box holds the vertebral body only and names that as its first limit: epidural and
    paraspinal masses and posterior-element involvement lie outside it. ``scale`` > 1 brings that
    context into the patch; 1 is the paper.
    """
    if scale <= 0:
        raise ValueError(f"box scale must be > 0, got {scale}")
    x0, y0, x1, y1 = box
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    hw, hh = (x1 - x0) * scale / 2, (y1 - y0) * scale / 2
    nx, ny = size_xy
    wx0, wy0 = max(0, round(cx - hw)), max(0, round(cy - hh))
    wx1, wy1 = min(nx, round(cx + hw)), min(ny, round(cy + hh))
    return (wx0, wy0, max(wx1, wx0 + 1), max(wy1, wy0 + 1))


def patch_reference(
    t2: sitk.Image, box: tuple[int, int, int, int], k_first: int, n_slices: int, size: int
) -> sitk.Image:
    """The sampling grid: ``size`` x ``size`` pixels tiling the box on T2W slices k_first.. (see module)."""
    x0, y0, x1, y1 = box
    step_x = (x1 - x0) / size  # T2W pixels per patch pixel
    step_y = (y1 - y0) / size
    first = (x0 - 0.5 + 0.5 * step_x, y0 - 0.5 + 0.5 * step_y, float(k_first))
    sx, sy, sz = t2.GetSpacing()
    ref = sitk.Image([size, size, n_slices], sitk.sitkFloat32)
    ref.SetDirection(t2.GetDirection())
    ref.SetSpacing((sx * step_x, sy * step_y, sz))
    ref.SetOrigin(t2.TransformContinuousIndexToPhysicalPoint(first))
    return ref


def extract_patches(
    t1_nii: Path,
    t2_nii: Path,
    t2_sidecar: Path | dict,
    transform: Path | sitk.Transform,
    *,
    lesion_instance: int,
    box: tuple[int, int, int, int],
    centre_offsets: Sequence[int] = (-1, 0, 1),
    neighbours: int = 1,
    size: int = 64,
    patient: str | None = None,
    max_t1_outside_fraction: float = MAX_T1_OUTSIDE_FRACTION,
    box_scale: float = 1.0,
) -> tuple[np.ndarray, list[int]]:
    """Lesion patches: float32 [n_centres, 2 * (2 * neighbours + 1), size, size] and the centres' k.

    One sample per centre slice s = k + offset (k = slice of ``lesion_instance``); channels are T1W
    s-n..s+n then T2W s-n..s+n (``patchfile.channel_names``), each z-scored. Patch rows follow image y
    (DICOM rows), columns image x (DICOM columns). T1W pixels that the transform sends outside T1W
    read 0 (background); more than ``max_t1_outside_fraction`` of a channel outside is an error.
    ``box_scale`` widens the (checked) box about its centre to take in context (:func:`widen_box`).
    """
    t2_nii, t1_nii = Path(t2_nii), Path(t1_nii)
    if size < 1:
        raise ValueError(f"size must be >= 1 pixel, got {size}")
    if neighbours < 0:
        raise ValueError(f"neighbours must be >= 0, got {neighbours}")
    if len(centre_offsets) == 0:
        raise ValueError("centre_offsets is empty: at least one centre slice is needed")
    sidecar_path = t2_sidecar if not isinstance(t2_sidecar, Mapping) else t2_nii
    sidecar = _load_sidecar(t2_sidecar, patient)
    if "instance_numbers" not in sidecar:
        raise SpinefxError(
            "the T2W sidecar has no 'instance_numbers'.",
            patient=patient,
            path=sidecar_path,
            fix="rerun the dicom_to_nifti step for this patient.",
        )
    t2 = _read_volume(t2_nii, "T2W", patient)
    nx, ny, nz = t2.GetSize()
    numbers = sidecar["instance_numbers"]
    if len(numbers) != nz:
        raise SpinefxError(
            f"the T2W sidecar lists {len(numbers)} InstanceNumbers but the volume has {nz} slices.",
            patient=patient,
            path=sidecar_path,
            fix="the NIfTI and its sidecar are out of step; rerun dicom_to_nifti for this patient.",
        )
    k = slice_index(numbers, lesion_instance, patient=patient, path=sidecar_path)
    x0, y0, x1, y1 = _check_box(box, (nx, ny), patient, t2_nii)
    if box_scale != 1.0:
        x0, y0, x1, y1 = widen_box((x0, y0, x1, y1), box_scale, (nx, ny))

    centres = [k + int(o) for o in centre_offsets]
    needed = sorted({c + d for c in centres for d in range(-neighbours, neighbours + 1)})
    outside = [s for s in needed if s < 0 or s >= nz]
    if outside:
        raise SpinefxError(
            f"the patch needs T2W slices {needed[0]}..{needed[-1]} (lesion slice k={k}, InstanceNumber "
            f"{lesion_instance}, centre offsets {list(centre_offsets)}, {neighbours} neighbour(s) each "
            f"side) but the series has {nz} slices (k = 0..{nz - 1}); slices {outside} do not exist.",
            patient=patient,
            path=t2_nii,
            fix="draw the box on a slice further from the edge of the series, or use fewer "
            "centre offsets / neighbours.",
        )

    k_first = needed[0]
    n_span = needed[-1] - k_first + 1
    ref = patch_reference(t2, (x0, y0, x1, y1), k_first, n_span, size)
    tfm = _read_transform(transform, patient)
    t1 = _read_volume(t1_nii, "T1W", patient)

    t2_arr = sitk.GetArrayFromImage(sitk.Resample(t2, ref, sitk.Transform(), sitk.sitkLinear, 0.0))
    t1_arr = sitk.GetArrayFromImage(sitk.Resample(t1, ref, tfm, sitk.sitkLinear, float("nan")))

    # which of the needed slices are used, and whether T1W covers them
    for s in needed:
        frac = float(np.isnan(t1_arr[s - k_first]).mean())
        if frac > max_t1_outside_fraction:
            raise SpinefxError(
                f"after the registration transform, {frac:.0%} of the box on T2W slice k={s} falls "
                f"outside the T1W volume (limit {max_t1_outside_fraction:.0%}): T1W does not overlap "
                "the lesion.",
                patient=patient,
                path=transform if not isinstance(transform, sitk.Transform) else t1_nii,
                fix="check the registration QC (results/registration/<patient>/qc.png) and that T1W "
                "and T2W are the same patient and region.",
            )
        if frac > 0:
            log.warning(
                "patient %s: %.1f%% of T1W patch pixels on slice k=%d lie outside T1W; read as 0",
                patient,
                100 * frac,
                s,
            )
    t1_arr = np.nan_to_num(t1_arr, nan=0.0)

    rows = []
    for c in centres:
        idx = [c + d - k_first for d in range(-neighbours, neighbours + 1)]
        rows.append(np.concatenate([t1_arr[idx], t2_arr[idx]], axis=0))
    patches = zscore_channels(np.stack(rows))
    assert patches.shape[1] == len(channel_names(neighbours))
    return patches, centres
