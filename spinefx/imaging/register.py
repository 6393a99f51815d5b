"""Rigid (or affine) registration of the T1W series onto the T2W series, with proof that it worked.

Why this is more than a call to SimpleITK: a registration always "converges" to something. Here the
metric is evaluated before and after on identical samples, the motion is compared with configurable
limits, and a result that got worse or moved implausibly far fails (or warns, by config) instead of
silently feeding misaligned channels to the classifier. Reruns are bitwise identical (fixed seed).

Convention (shared): fixed = T2, moving = T1; the transform maps a T2 physical point (LPS mm) to the
corresponding T1 physical point, so ``sitk.Resample(t1, t2, tfm)`` puts T1 on the T2 grid.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from spinefx.atomic import atomic_path
from spinefx.errors import SpinefxError
from spinefx.settings import section_defaults

TRANSFORMS = ("rigid", "affine")
INITIALISATIONS = ("geometry", "scanner")
_DEFAULTS = section_defaults("registration")  # the config schema: the one statement of every default


class RegistrationWarning(UserWarning):
    """A registration check failed but the run was configured to continue (on_failure="warn")."""


# ---------------------------------------------------------------------------------------------
# Small geometry helpers
# ---------------------------------------------------------------------------------------------


def image_centre(image: sitk.Image) -> np.ndarray:
    """Physical centre (LPS mm) of an image's field of view."""
    size = np.asarray(image.GetSize(), float)
    return np.asarray(image.TransformContinuousIndexToPhysicalPoint(tuple((size - 1) / 2)))


def transform_points(transform: sitk.Transform, points_mm: np.ndarray) -> np.ndarray:
    """Apply ``transform`` to each row of an (n, 3) array of physical points (mm)."""
    return np.array(
        [transform.TransformPoint(tuple(float(v) for v in p)) for p in np.asarray(points_mm, float)]
    )


def target_registration_error(
    truth: sitk.Transform, estimate: sitk.Transform, points_mm: np.ndarray
) -> tuple[float, float]:
    """(mean, max) distance in mm between where the truth and the estimate send each point."""
    d = np.linalg.norm(transform_points(truth, points_mm) - transform_points(estimate, points_mm), axis=1)
    return float(d.mean()), float(d.max())


def _linear_part(transform: sitk.Transform) -> np.ndarray:
    """The 3x3 matrix of a matrix-offset transform (Euler, similarity, affine; also as read from a file)."""
    tx = transform.Downcast() if type(transform) is sitk.Transform else transform
    if not hasattr(tx, "GetMatrix"):
        raise ValueError(f"{tx.GetName()} has no matrix: motion() needs a rigid or affine transform")
    return np.asarray(tx.GetMatrix(), float).reshape(3, 3)


def motion(transform: sitk.Transform, fixed: sitk.Image) -> dict:
    """How far the transform moves the T2 field of view: rotation (deg), translation of its centre and
    largest displacement of its corners (mm). Measured against identity, i.e. the scanner frame."""
    centre = image_centre(fixed)
    m = _linear_part(transform)
    shift = np.asarray(transform.TransformPoint(tuple(centre))) - centre
    u, _, vt = np.linalg.svd(m)
    rot = u @ vt  # nearest rotation (polar decomposition), also for affine transforms
    angle = math.degrees(math.acos(max(-1.0, min(1.0, (np.trace(rot) - 1) / 2))))
    size = np.asarray(fixed.GetSize()) - 1
    corners = [
        fixed.TransformContinuousIndexToPhysicalPoint(tuple(float(v) for v in size * np.array(b)))
        for b in np.ndindex(2, 2, 2)
    ]
    corners = np.asarray(corners)
    disp = np.linalg.norm(transform_points(transform, corners) - corners, axis=1)
    return {
        "rotation_deg": angle,
        "translation_mm": float(np.linalg.norm(shift)),
        "translation_vector_mm": shift.tolist(),
        "max_corner_displacement_mm": float(disp.max()),
        "scale_factors": np.linalg.svd(m, compute_uv=False).tolist(),
    }


# ---------------------------------------------------------------------------------------------
# Registration core (no files)
# ---------------------------------------------------------------------------------------------


def _initial_transform(
    fixed: sitk.Image, moving: sitk.Image, transform: str, initialisation: str
) -> sitk.Transform:
    base = sitk.Euler3DTransform() if transform == "rigid" else sitk.AffineTransform(3)
    tx = sitk.CenteredTransformInitializer(
        fixed, moving, base, sitk.CenteredTransformInitializerFilter.GEOMETRY
    )
    if initialisation == "scanner":
        # keep the rotation centre at the T2 FOV centre but trust the shared scanner frame for position
        tx = sitk.Euler3DTransform(tx) if transform == "rigid" else sitk.AffineTransform(tx)
        tx.SetTranslation((0.0, 0.0, 0.0))
    return tx


@contextlib.contextmanager
def _itk_threads(n_threads: int | None) -> Iterator[None]:
    """Run ITK with ``n_threads`` (None: leave as is). The registration method's own thread setting
    does not reach every filter/metric it builds internally, so the global default is set and restored."""
    if not n_threads:
        yield
        return
    previous = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(int(n_threads))
    try:
        yield
    finally:
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(previous)


def _copy(tx: sitk.Transform) -> sitk.Transform:
    return sitk.Euler3DTransform(tx) if tx.GetName() == "Euler3DTransform" else sitk.AffineTransform(tx)


def anisotropic_shrink_factors(
    spacing: Sequence[float], shrink_factors: Sequence[int], size: Sequence[int] | None = None
) -> list[tuple[int, ...]]:
    """Per level, one shrink factor per axis: level factor s coarsens the finest axis s times and every
    other axis only as far as that voxel size (floor), so a 4 mm slice axis next to 1 mm pixels is not
    shrunk before the pixels reach 4 mm (SimpleITK's own pyramid shrinks every axis by s).

    With ``size`` (voxels per axis) a factor never leaves fewer than 2 voxels on an axis.
    """
    spacing = np.asarray(spacing, float)
    if spacing.ndim != 1 or not np.all(spacing > 0):
        raise ValueError(f"spacing must be positive, one value per axis, got {spacing.tolist()}")
    levels = []
    for level in shrink_factors:
        if int(level) != level or level < 1:
            raise ValueError(f"shrink factors must be integers >= 1, got {level!r}")
        target = spacing.min() * int(level)
        factors = np.maximum(1, np.floor(target / spacing + 1e-6)).astype(int)
        if size is not None:
            factors = np.minimum(factors, np.maximum(1, np.asarray(size, int) // 2))
        levels.append(tuple(int(f) for f in factors))
    return levels


def _pyramid_level(image: sitk.Image, factors: Sequence[int], sigma_mm: float) -> sitk.Image:
    """Gaussian smoothing (sigma in mm on every axis, as ITK's registration pyramid) then subsampling."""
    if sigma_mm > 0:
        image = sitk.DiscreteGaussian(
            image,
            variance=float(sigma_mm) ** 2,
            maximumKernelWidth=32,
            maximumError=0.01,
            useImageSpacing=True,
        )
    if any(f > 1 for f in factors):
        image = sitk.Shrink(image, [int(f) for f in factors])
    return image


def lesion_mask(fixed: sitk.Image, box: Sequence[int], margin_mm: float) -> sitk.Image:
    """Metric mask on the T2 grid: the lesion box (x0, y0, x1, y1: pixel columns/rows, x1/y1 exclusive)
    grown by ``margin_mm`` in-plane, on every slice. It keeps bowel and aorta, which move on their own
    between series, out of the metric; the box's own check is the patch step's."""
    x0, y0, x1, y1 = (int(v) for v in box)
    nx, ny, _ = fixed.GetSize()
    mx = int(math.ceil(margin_mm / fixed.GetSpacing()[0]))
    my = int(math.ceil(margin_mm / fixed.GetSpacing()[1]))
    x0, x1 = max(0, x0 - mx), min(nx, x1 + mx)
    y0, y1 = max(0, y0 - my), min(ny, y1 + my)
    if x1 <= x0 or y1 <= y0:
        raise ValueError(f"the mask box {tuple(box)} does not overlap the {nx}x{ny} T2 image")
    array = np.zeros(fixed.GetSize()[::-1], np.uint8)
    array[:, y0:y1, x0:x1] = 1
    mask = sitk.GetImageFromArray(array)
    mask.CopyInformation(fixed)
    return mask


def metric_value(
    fixed: sitk.Image,
    moving: sitk.Image,
    transform: sitk.Transform,
    *,
    bins: int = 16,
    n_threads: int | None = None,
) -> float:
    """Mattes MI (ITK sign: lower is better) over every fixed voxel, so before/after use the same samples."""
    method = sitk.ImageRegistrationMethod()
    method.SetMetricAsMattesMutualInformation(numberOfHistogramBins=bins)
    method.SetMetricSamplingStrategy(method.NONE)
    method.SetInterpolator(sitk.sitkLinear)
    method.SetInitialTransform(_copy(transform), inPlace=True)
    if n_threads:
        method.SetNumberOfThreads(n_threads)
    with _itk_threads(n_threads):
        return float(method.MetricEvaluate(fixed, moving))


def estimate_t1_to_t2(
    fixed: sitk.Image,
    moving: sitk.Image,
    *,
    transform: str = _DEFAULTS["transform"],
    initialisation: str = _DEFAULTS["initialisation"],
    shrink_factors: Sequence[int] = tuple(_DEFAULTS["shrink_factors"]),
    smoothing_mm: Sequence[float] = tuple(_DEFAULTS["smoothing_mm"]),
    iterations: int = _DEFAULTS["iterations"],
    sampling: str = _DEFAULTS["sampling"],
    sampling_fraction: float | Sequence[float] = _DEFAULTS["sampling_fraction"],
    seed: int = _DEFAULTS["seed"],
    histogram_bins: int = _DEFAULTS["histogram_bins"],
    learning_rate: float = 2.0,
    min_step: float = 1e-3,
    relaxation_factor: float = 0.5,
    optimizer: str = "rsgd",
    n_threads: int | None = 1,
    fixed_mask: sitk.Image | None = None,
) -> tuple[sitk.Transform, dict]:
    """Register ``moving`` (T1) to ``fixed`` (T2); return the T2->T1 transform and a report dict.

    Mattes MI, multi-resolution, regular-step gradient descent with scales from physical shift (a unit
    step moves voxels ~1 mm whatever the parameter). The pyramid is built here, level by level, because
    SimpleITK shrinks every axis alike: level factor s shrinks each image axis only as far as the finest
    axis times s (:func:`anisotropic_shrink_factors`), so 4 mm slices are kept while 1 mm pixels are
    pooled; both images are smoothed (``smoothing_mm``, Gaussian sigma in mm), the T2 is subsampled (the
    samples), the T1 is interpolated at full resolution, as ITK's own pyramid does, and each level
    starts from the transform the last one reached. 16 histogram bins and 1 mm smoothing at full
    resolution keep the MI optimum from drifting on 4 mm sagittal slices; ``sampling_fraction`` may
    give one fraction per level. Sampling uses ``seed`` so the same inputs give the same transform bit
    for bit. ``fixed_mask`` (0/1 on the T2 grid, e.g. :func:`lesion_mask`) limits the metric to it.
    ``n_threads`` defaults to 1: ITK's multi-threaded metric sums in a varying order, so more threads
    are faster but no longer bitwise reproducible (None = ITK's default).
    If the optimiser diverges (the images stop overlapping) the initial transform is returned and
    the report says ``diverged: true``.
    """
    if transform not in TRANSFORMS:
        raise ValueError(f"transform must be one of {TRANSFORMS}, got {transform!r}")
    if initialisation not in INITIALISATIONS:
        raise ValueError(f"initialisation must be one of {INITIALISATIONS}, got {initialisation!r}")
    if len(shrink_factors) != len(smoothing_mm):
        raise ValueError("shrink_factors and smoothing_mm need one entry per resolution level")
    if optimizer not in ("rsgd", "cgls", "gdls"):
        raise ValueError("optimizer must be 'rsgd', 'cgls' or 'gdls'")
    if sampling not in ("random", "regular", "none"):
        raise ValueError("sampling must be 'random', 'regular' or 'none'")
    fractions = [float(f) for f in np.atleast_1d(sampling_fraction)]
    if len(fractions) == 1:
        fractions = fractions * len(shrink_factors)
    if len(fractions) != len(shrink_factors) or not all(0 < f <= 1 for f in fractions):
        raise ValueError("sampling_fraction: one value in (0, 1], or one per resolution level")
    if seed <= 0:
        raise ValueError("seed must be a positive integer (0 means 'wall clock' to ITK: not reproducible)")
    fixed = sitk.Cast(fixed, sitk.sitkFloat32)
    moving = sitk.Cast(moving, sitk.sitkFloat32)
    tx = _initial_transform(fixed, moving, transform, initialisation)
    initial = _copy(tx)
    factors = anisotropic_shrink_factors(fixed.GetSpacing(), shrink_factors, fixed.GetSize())
    if fixed_mask is not None:
        fixed_mask = sitk.Cast(fixed_mask, sitk.sitkUInt8)

    per_level: list[int] = []
    start = time.perf_counter()
    diverged = None
    stop = ""
    final_metric = None
    try:
        with _itk_threads(n_threads):
            for level, (level_factors, sigma, fraction) in enumerate(
                zip(factors, smoothing_mm, fractions, strict=True)
            ):
                method = _level_method(
                    optimizer, learning_rate, min_step, iterations, relaxation_factor, histogram_bins
                )
                strategy = {"random": method.RANDOM, "regular": method.REGULAR, "none": method.NONE}[sampling]
                method.SetMetricSamplingStrategy(strategy)
                if sampling != "none":
                    method.SetMetricSamplingPercentage(fraction, seed + level)
                if fixed_mask is not None:
                    method.SetMetricFixedMask(fixed_mask)
                method.SetInitialTransform(tx, inPlace=True)
                if n_threads:
                    method.SetNumberOfThreads(n_threads)
                per_level.append(0)
                method.AddCommand(
                    sitk.sitkIterationEvent, lambda: per_level.__setitem__(-1, per_level[-1] + 1)
                )
                method.Execute(
                    _pyramid_level(fixed, level_factors, sigma), _pyramid_level(moving, (1,), sigma)
                )
                stop = method.GetOptimizerStopConditionDescription()
                final_metric = float(method.GetMetricValue())
    except RuntimeError as exc:  # ITK gives up when the images stop overlapping
        diverged = str(exc).strip().splitlines()[-1]
        tx = _copy(initial)
        stop = f"diverged: {diverged}"
        final_metric = None
    seconds = time.perf_counter() - start

    report = {
        "transform_type": transform,
        "initialisation": initialisation,
        "initial_parameters": list(initial.GetParameters()),
        "parameters": list(tx.GetParameters()),
        "fixed_parameters": list(tx.GetFixedParameters()),
        "iterations": int(sum(per_level)),
        "iterations_per_level": per_level,
        "stop_condition": stop,
        "diverged": diverged is not None,
        "metric_final_level": final_metric,
        "seconds": seconds,
        "settings": {
            "metric": "MattesMutualInformation",
            "histogram_bins": histogram_bins,
            "sampling": sampling,
            "sampling_fraction": fractions,
            "seed": seed,
            "shrink_factors": [int(s) for s in shrink_factors],
            "shrink_factors_per_axis": [list(f) for f in factors],
            "smoothing_mm": [float(s) for s in smoothing_mm],
            "fixed_mask_voxels": None
            if fixed_mask is None
            else int(np.count_nonzero(sitk.GetArrayViewFromImage(fixed_mask))),
            "optimizer": {
                "rsgd": "RegularStepGradientDescent",
                "cgls": "ConjugateGradientLineSearch",
                "gdls": "GradientDescentLineSearch",
            }[optimizer],
            "learning_rate": learning_rate,
            "min_step": min_step,
            "relaxation_factor": relaxation_factor,
            "max_iterations_per_level": iterations,
            "scales": "physical shift",
            "n_threads": n_threads,
        },
    }
    return tx, report


def _level_method(
    optimizer: str, learning_rate: float, min_step: float, iterations: int, relaxation: float, bins: int
) -> sitk.ImageRegistrationMethod:
    """One resolution level's registration method (metric, interpolator, optimiser, scales)."""
    method = sitk.ImageRegistrationMethod()
    method.SetMetricAsMattesMutualInformation(numberOfHistogramBins=bins)
    method.SetInterpolator(sitk.sitkLinear)
    if optimizer == "rsgd":
        method.SetOptimizerAsRegularStepGradientDescent(
            learningRate=learning_rate,
            minStep=min_step,
            numberOfIterations=iterations,
            relaxationFactor=relaxation,
            gradientMagnitudeTolerance=1e-8,
        )
    else:
        setter = (
            method.SetOptimizerAsConjugateGradientLineSearch
            if optimizer == "cgls"
            else method.SetOptimizerAsGradientDescentLineSearch
        )
        setter(
            learningRate=learning_rate,
            numberOfIterations=iterations,
            convergenceMinimumValue=1e-6,
            convergenceWindowSize=10,
            maximumStepSizeInPhysicalUnits=learning_rate,
        )
    method.SetOptimizerScalesFromPhysicalShift()
    return method


# ---------------------------------------------------------------------------------------------
# QC picture
# ---------------------------------------------------------------------------------------------


def _normalise(slice_2d: np.ndarray) -> np.ndarray:
    lo, hi = np.percentile(slice_2d, [1, 99])
    return np.clip((slice_2d - lo) / (hi - lo + 1e-12), 0, 1)


def _checkerboard(a: np.ndarray, b: np.ndarray, tiles: int = 8) -> np.ndarray:
    rows, cols = a.shape
    r = (np.arange(rows)[:, None] * tiles // max(rows, 1)) % 2
    c = (np.arange(cols)[None, :] * tiles // max(cols, 1)) % 2
    return np.where((r + c) % 2 == 0, a, b)


def _write_qc_png(
    path: Path,
    fixed: sitk.Image,
    before: sitk.Image,
    after: sitk.Image,
    k: int,
    title: str,
) -> None:
    """T2 slice k, then T2/T1 checkerboards before and after registration (edges of T2 in red).

    Drawn on a bare matplotlib ``Figure`` (no pyplot, edges by SimpleITK's Sobel filter): this runs
    once per patient and pyplot's and scipy's imports cost more than the drawing.
    """
    from matplotlib.figure import Figure

    t2 = _normalise(sitk.GetArrayViewFromImage(fixed)[k].astype(float))
    panels = [("T2W", t2)]
    for name, img in (("before", before), ("after", after)):
        t1 = _normalise(sitk.GetArrayViewFromImage(img)[k].astype(float))
        panels.append((f"checkerboard T2/T1 {name}", _checkerboard(t2, t1)))
    edges = sitk.GetArrayFromImage(sitk.SobelEdgeDetection(sitk.GetImageFromArray(t2)))
    edges = edges > np.percentile(edges, 92)
    sx, sy = fixed.GetSpacing()[:2]
    fig = Figure(figsize=(12, 5.2))
    axes = fig.subplots(1, 3)
    for i, (ax, (name, img)) in enumerate(zip(axes, panels, strict=True)):
        ax.imshow(img, cmap="gray", aspect=sy / sx, interpolation="nearest")
        if i:
            overlay = np.zeros((*edges.shape, 4))
            overlay[edges] = (1.0, 0.2, 0.1, 0.6)
            ax.imshow(overlay, aspect=sy / sx, interpolation="nearest")
        ax.set_title(name, fontsize=10)
        ax.axis("off")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=80)


# ---------------------------------------------------------------------------------------------
# Public API: files in, files out
# ---------------------------------------------------------------------------------------------


def register_t1_to_t2(
    t1_nii: Path | str,
    t2_nii: Path | str,
    *,
    tfm: Path | str,
    t1_in_t2: Path | str,
    qc_json: Path | str,
    qc_png: Path | str,
    max_translation_mm: float = _DEFAULTS["max_translation_mm"],
    max_rotation_deg: float = _DEFAULTS["max_rotation_deg"],
    on_failure: str = _DEFAULTS["on_failure"],
    qc_slice: int | None = None,
    lesion_box: Sequence[int] | None = None,
    mask_margin_mm: float | None = _DEFAULTS["mask_margin_mm"],
    truth: sitk.Transform | None = None,
    truth_points: np.ndarray | None = None,
    patient: str | None = None,
    **settings: Any,
) -> dict:
    """Register T1 (moving) onto T2 (fixed) and write, atomically, to the paths given:
    ``tfm`` (T2 point -> T1 point), ``t1_in_t2`` (T1 resampled on the T2 grid, NIfTI),
    ``qc_json`` and ``qc_png`` (slice ``qc_slice`` of T2, default the middle one).

    Checks: the metric (Mattes MI, lower is better) must not get worse, the rotation must stay
    within ``max_rotation_deg`` and the translation of the T2 FOV centre within ``max_translation_mm``.
    A failed check raises SpinefxError (``on_failure="error"``; qc.json/qc.png are still written
    to show why) or warns and writes everything (``on_failure="warn"``). With ``truth`` (T2->T1, the
    same convention) and ``truth_points`` (n x 3, T2 space, mm), qc.json carries ``tre_mm`` (mean)
    and ``tre_max_mm``. Returns the qc dict.

    With ``mask_margin_mm`` (not None) and ``lesion_box`` (x0, y0, x1, y1 on the T2 grid) the metric
    sees only the box grown by that margin (:func:`lesion_mask`); without a box there is no mask.

    ``settings`` are the keyword settings of :func:`estimate_t1_to_t2` (transform, initialisation,
    pyramid, sampling, seed, optimiser, threads), with its defaults: they are declared once, there.
    """
    if on_failure not in ("error", "warn"):
        raise ValueError("on_failure must be 'error' or 'warn'")
    t1_nii, t2_nii = Path(t1_nii), Path(t2_nii)
    tfm, t1_in_t2, qc_json, qc_png = (Path(p) for p in (tfm, t1_in_t2, qc_json, qc_png))
    fixed = _read(t2_nii, patient)
    moving = _read(t1_nii, patient)
    mask = None
    if mask_margin_mm is not None and lesion_box is not None:
        try:
            mask = lesion_mask(fixed, lesion_box, float(mask_margin_mm))
        except ValueError as exc:
            raise SpinefxError(
                str(exc) + ".", patient=patient, path=t2_nii, fix="check box_x0..box_y1 in the patient sheet."
            ) from exc
    tx, report = estimate_t1_to_t2(fixed, moving, fixed_mask=mask, **settings)
    transform, initialisation = report["transform_type"], report["initialisation"]
    histogram_bins, n_threads = report["settings"]["histogram_bins"], report["settings"]["n_threads"]
    fixed_f = sitk.Cast(fixed, sitk.sitkFloat32)
    moving_f = sitk.Cast(moving, sitk.sitkFloat32)
    initial = _initial_transform(fixed_f, moving_f, transform, initialisation)
    before = _safe_metric(fixed_f, moving_f, initial, histogram_bins, n_threads)
    after = _safe_metric(fixed_f, moving_f, tx, histogram_bins, n_threads)
    identity = _safe_metric(fixed_f, moving_f, sitk.Euler3DTransform(), histogram_bins, n_threads)
    moved = motion(tx, fixed)
    qc = {
        "patient_id": patient,
        "fixed": "t2",
        "moving": "t1",
        "convention": "transform maps T2 physical points (LPS mm) to T1 physical points",
        "metric": "MattesMutualInformation (negative MI; lower is better)",
        "metric_before": before,
        "metric_after": after,
        "metric_identity": identity,
        **{k: v for k, v in report.items() if k != "settings"},
        "parameters_settings": report["settings"],
        "motion": moved,
        "limits": {"max_translation_mm": max_translation_mm, "max_rotation_deg": max_rotation_deg},
        "mask": None
        if mask is None
        else {"lesion_box": [int(v) for v in lesion_box], "margin_mm": mask_margin_mm},
    }
    if truth is not None:
        points = np.asarray(truth_points if truth_points is not None else [image_centre(fixed)], float)
        qc["tre_mm"], qc["tre_max_mm"] = target_registration_error(truth, tx, points)
        qc["tre_mm_before"], _ = target_registration_error(truth, sitk.Euler3DTransform(), points)
        qc["tre_points"] = len(points)

    problems = []
    if report["diverged"]:
        problems.append(f"the optimiser diverged ({report['stop_condition']}); the initial transform is kept")
    elif after is None or (before is not None and after > before):
        problems.append(f"the metric got worse ({_fmt(before)} -> {_fmt(after)}; lower is better)")
    if moved["rotation_deg"] > max_rotation_deg:
        problems.append(
            f"rotation {moved['rotation_deg']:.2f} deg exceeds the limit {max_rotation_deg:g} deg"
        )
    if moved["translation_mm"] > max_translation_mm:
        problems.append(
            f"translation {moved['translation_mm']:.2f} mm exceeds the limit {max_translation_mm:g} mm"
        )
    qc["problems"] = problems
    qc["status"] = "ok" if not problems else ("failed" if on_failure == "error" else "warned")

    k = fixed.GetSize()[2] // 2 if qc_slice is None else int(qc_slice)
    if not 0 <= k < fixed.GetSize()[2]:
        raise SpinefxError(
            f"qc_slice {k} is outside the T2 volume (0..{fixed.GetSize()[2] - 1}).",
            patient=patient,
            path=t2_nii,
            fix="check the lesion slice / instance number in the sample sheet.",
        )
    qc["qc_slice"] = k
    resampled_before = sitk.Resample(
        moving, fixed, sitk.Euler3DTransform(), sitk.sitkLinear, 0.0, sitk.sitkFloat32
    )
    resampled = sitk.Resample(moving, fixed, tx, sitk.sitkLinear, 0.0, sitk.sitkFloat32)
    title = (
        f"{patient or ''} slice {k}: MI {_fmt(before)} -> {_fmt(after)}, "
        f"rot {moved['rotation_deg']:.2f} deg, "
        f"shift {moved['translation_mm']:.2f} mm" + (f", TRE {qc['tre_mm']:.2f} mm" if "tre_mm" in qc else "")
    )
    for path in (tfm, t1_in_t2, qc_json, qc_png):
        path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(qc_png) as tmp:
        _write_qc_png(tmp, fixed, resampled_before, resampled, k, title)
    with atomic_path(qc_json) as tmp:
        tmp.write_text(json.dumps(qc, indent=2) + "\n")

    if problems:
        message = "T1->T2 registration failed its checks: " + "; ".join(problems) + "."
        fix = (
            f"look at {qc_png}; if the series really are this far apart, raise "
            "registration max_translation_mm/max_rotation_deg in the config, or set "
            "registration on_failure: warn."
        )
        if on_failure == "error":
            raise SpinefxError(message, patient=patient, path=qc_json, fix=fix)
        where = f"patient {patient}: " if patient else ""
        warnings.warn(
            f"{where}{message} Continuing (on_failure=warn). {fix}", RegistrationWarning, stacklevel=2
        )

    with atomic_path(tfm) as tmp:
        sitk.WriteTransform(tx, str(tmp))
    with atomic_path(t1_in_t2) as tmp:
        sitk.WriteImage(resampled, str(tmp), useCompression=True, compressionLevel=1)
    return qc


def _safe_metric(
    fixed: sitk.Image, moving: sitk.Image, tx: sitk.Transform, bins: int, n_threads: int | None
) -> float | None:
    """Metric value, or None where the transform leaves no overlap (ITK refuses to evaluate)."""
    try:
        return metric_value(fixed, moving, tx, bins=bins, n_threads=n_threads)
    except RuntimeError:
        return None


def _fmt(value: float | None) -> str:
    return "n/a (no overlap)" if value is None else f"{value:.5f}"


def _read(path: Path, patient: str | None) -> sitk.Image:
    if not path.is_file():
        raise SpinefxError(
            "NIfTI volume not found.", patient=patient, path=path, fix="run the conversion first."
        )
    image = sitk.ReadImage(str(path))
    if image.GetDimension() != 3:
        raise SpinefxError(
            f"expected a 3-D volume, got {image.GetDimension()}-D.",
            patient=patient,
            path=path,
            fix="convert a single 3-D series (not a 4-D/multi-echo one).",
        )
    return image


__all__ = [
    "RegistrationWarning",
    "estimate_t1_to_t2",
    "image_centre",
    "metric_value",
    "motion",
    "register_t1_to_t2",
    "target_registration_error",
    "transform_points",
]
