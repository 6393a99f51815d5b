"""Random-affine copies of lesion patches (the paper's x20 benign / x40 malignant augmentation).

Each copy draws one rotation (degrees), one isotropic scale and one translation (patch pixels) and
applies it about the patch centre to all channels of the sample alike, so T1W, T2W and their
neighbouring slices stay in register. Sampling is bilinear; pixels that come from outside the patch
are filled by reflection at the patch border (``border="reflection"``; ``"border"`` repeats the edge
pixel instead), which keeps tissue texture rather than inventing a constant frame. Every copy is
z-scored again per channel. The warp is scipy's (``ndimage.affine_transform``); the tests check it
against torch's ``grid_sample``, which it replaced because importing torch cost each job seconds.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
from scipy import ndimage

from spinefx.errors import SpinefxError
from spinefx.imaging.patches import zscore_channels
from spinefx.imaging.patchfile import read_patch_file, write_patch_file
from spinefx.seeding import stable_seed

BORDERS = ("reflection", "border")
# grid_sample's padding with align_corners=False, in scipy's terms: reflection about the outer pixel
# edges is scipy's half-sample "reflect"; repeating the edge pixel is "nearest".
_SCIPY_MODE = {"reflection": "reflect", "border": "nearest"}


def copies_for(label: str, copies: Mapping[str, int]) -> int:
    """How many augmented copies per original sample a patient of ``label`` gets."""
    if label not in copies:
        raise SpinefxError(
            f"no augmentation count for label {label!r} (configured: {dict(copies)}).",
            fix=f"add {label}: <copies> under the augmentation copies in the config.",
        )
    n = copies[label]
    if isinstance(n, bool) or int(n) != n or n < 0:
        raise SpinefxError(
            f"augmentation copies for {label!r} must be a whole number >= 0, got {n!r}.",
            fix="set a non-negative integer in the config.",
        )
    return int(n)


def augmentation_seed(seed: int, patient_id: str) -> int:
    """Per-patient seed: stable across runs and independent of which other patients exist."""
    return stable_seed("augment", seed, patient_id)


def draw_affines(
    n: int,
    rng: np.random.Generator,
    *,
    rotation_deg: float,
    translation_px: float,
    scale_range: tuple[float, float],
) -> np.ndarray:
    """n draws of (angle degrees, scale, tx pixels, ty pixels), uniform in the given ranges."""
    angle = rng.uniform(-rotation_deg, rotation_deg, n)
    scale = rng.uniform(scale_range[0], scale_range[1], n)
    shift = rng.uniform(-translation_px, translation_px, (n, 2))
    return np.column_stack([angle, scale, shift])


def inverse_affines(params: np.ndarray, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Output-to-input maps [n, 2, 2] and offsets [n, 2] in (row, column) pixel order for forward maps
    out = s R (in - c) + c + t, with c the patch centre ((size - 1) / 2, as grid_sample with
    align_corners=False) and R the rotation by angle: in = A out + o, A = R^T / s, o = c - A (c + t).
    """
    params = np.asarray(params, dtype=np.float64)
    a = np.deg2rad(params[:, 0])
    s = params[:, 1]
    t = params[:, [3, 2]]  # (ty, tx): row, column
    cos, sin = np.cos(a), np.sin(a)
    m = np.empty((len(params), 2, 2))
    m[:, 0, 0] = cos
    m[:, 0, 1] = -sin
    m[:, 1, 0] = sin
    m[:, 1, 1] = cos
    m /= s[:, None, None]
    c = np.array([(height - 1) / 2.0, (width - 1) / 2.0])
    offset = c - np.einsum("nij,nj->ni", m, c + t)
    return m, offset


def augment_patches(
    original: np.ndarray,
    copies: int,
    *,
    seed: int,
    rotation_deg: float = 15.0,
    translation_px: float = 4.0,
    scale_range: tuple[float, float] = (0.9, 1.1),
    border: str = "reflection",
) -> np.ndarray:
    """``copies`` random-affine copies of each sample: float32 [n * copies, c, h, w].

    Copies of sample i are rows i * copies .. (i + 1) * copies - 1. Same ``seed`` and inputs give the
    same output. Rotation is uniform in +-rotation_deg degrees, scale uniform in scale_range,
    translation uniform in +-translation_px patch pixels along each axis.
    """
    x = np.asarray(original, dtype=np.float32)
    if x.ndim != 4:
        raise ValueError(f"original must be [n, channels, h, w], got shape {x.shape}")
    if copies < 0:
        raise ValueError(f"copies must be >= 0, got {copies}")
    if rotation_deg < 0 or translation_px < 0:
        raise ValueError("rotation_deg and translation_px are half-ranges and must be >= 0")
    lo, hi = scale_range
    if not 0 < lo <= hi:
        raise ValueError(f"scale_range must satisfy 0 < low <= high, got {scale_range}")
    if border not in BORDERS:
        raise ValueError(f"border must be one of {BORDERS}, got {border!r}")
    n, c, h, w = x.shape
    if copies == 0 or n == 0:
        return np.zeros((0, c, h, w), dtype=np.float32)

    rng = np.random.default_rng(seed)
    params = draw_affines(
        n * copies, rng, rotation_deg=rotation_deg, translation_px=translation_px, scale_range=(lo, hi)
    )
    return zscore_channels(apply_affines(np.repeat(x, copies, axis=0), params, border=border))


def apply_affines(x: np.ndarray, params: np.ndarray, *, border: str = "reflection") -> np.ndarray:
    """Warp sample i of ``x`` [n, c, h, w] by params[i] = (angle deg, scale, tx px, ty px), bilinear.

    tx moves content towards larger column index, ty towards larger row index; one map per sample,
    shared by its channels. No z-scoring here. The result is what torch's ``grid_sample`` (bilinear,
    align_corners=False, the same padding) gives, checked in the tests, at scipy's import cost rather
    than torch's: this step runs once per patient.
    """
    if border not in BORDERS:
        raise ValueError(f"border must be one of {BORDERS}, got {border!r}")
    x = np.ascontiguousarray(x, dtype=np.float32)
    n, c, h, w = x.shape
    maps, offsets = inverse_affines(params, h, w)
    matrix = np.eye(3)
    offset = np.zeros(3)
    out = np.empty_like(x)
    for i in range(n):
        matrix[1:, 1:] = maps[i]
        offset[1:] = offsets[i]
        # channel axis: identity (integer coordinates, so linear interpolation returns the channel itself)
        ndimage.affine_transform(
            x[i], matrix, offset, output=out[i], order=1, mode=_SCIPY_MODE[border], prefilter=False
        )
    return out


def augment_patch_file(
    src: Path,
    dst: Path,
    *,
    copies: Mapping[str, int],
    seed: int,
    dtype: str,
    compression: str | None = "lzf",
    rotation_deg: float = 15.0,
    translation_px: float = 4.0,
    scale_range: tuple[float, float] = (0.9, 1.1),
    border: str = "reflection",
) -> int:
    """The augment step: read an original-only patch file, write it back with its copies.

    The number of copies follows the file's label (``copies_for``), the seed the patient
    (``augmentation_seed``), so a patient's copies do not change when the cohort does.
    Returns the number of augmented samples written.
    """
    pf = read_patch_file(src, augmented=False)
    try:
        n_copies = copies_for(pf.label, copies)
    except SpinefxError as err:
        raise SpinefxError(err.problem, patient=pf.patient_id, path=src, fix=err.fix) from err
    augmented = augment_patches(
        pf.original,
        n_copies,
        seed=augmentation_seed(seed, pf.patient_id),
        rotation_deg=rotation_deg,
        translation_px=translation_px,
        scale_range=scale_range,
        border=border,
    )
    write_patch_file(
        dst,
        original=pf.original,
        augmented=augmented,
        label=pf.label,
        slices=pf.slices,
        box=pf.box,
        patient_id=pf.patient_id,
        dtype=dtype,
        compression=compression,
    )
    return int(augmented.shape[0])
