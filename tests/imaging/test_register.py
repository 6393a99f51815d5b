"""T1 -> T2 registration: recovers a known rigid motion (< 0.5 mm mean TRE), is bitwise reproducible,
and refuses (or warns about) results that got worse or moved too far."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from spinefx.errors import SpinefxError
from spinefx.imaging.register import (
    RegistrationWarning,
    anisotropic_shrink_factors,
    estimate_t1_to_t2,
    lesion_mask,
    motion,
    register_t1_to_t2,
    target_registration_error,
)

# Vertebral body centres of the synthetic spine (LPS mm): the TRE is measured here.
VERTEBRAE = np.array([(0.0, 0.0, z) for z in (-60.0, -35.0, -10.0, 15.0, 40.0)])
CENTRE = (0.0, 10.0, -10.0)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -30, 30)))


def _ellipsoid(p: np.ndarray, centre, radii, edge_mm: float = 1.0) -> np.ndarray:
    d = (p - np.asarray(centre, float)) / np.asarray(radii, float)
    return _sigmoid((1 - np.sqrt((d**2).sum(-1))) * min(radii) / edge_mm)


def anatomy(p: np.ndarray, contrast: tuple[float, ...]) -> np.ndarray:
    """Smooth sagittal-spine-like scene at physical points p (..., 3): vertebral bodies, discs, CSF,
    cord and 40 fixed soft-tissue blobs; ``contrast``: background, vertebra, disc, csf, cord, blobs."""
    bg, vert, disc, csf, cord, blob = contrast
    rng = np.random.default_rng(7)
    m_v = sum(_ellipsoid(p, c, (18, 15, 10)) for c in VERTEBRAE)
    m_d = sum(_ellipsoid(p, (0, 0, c[2] + 12.5), (16, 13, 2.5)) for c in VERTEBRAE[:-1])
    radius = np.sqrt(p[..., 0] ** 2 + (p[..., 1] - 26) ** 2)
    m_csf, m_cord = _sigmoid(8 - radius), _sigmoid(4.5 - radius)
    blobs = sum(
        _ellipsoid(p, rng.uniform((-25, -40, -80), (25, 50, 70)), rng.uniform(4, 9, 3)) for _ in range(40)
    )
    scene = bg + (vert - bg) * m_v + (disc - bg) * m_d + (csf - bg) * (m_csf - m_cord) + (cord - bg) * m_cord
    return scene + blob * np.clip(blobs, 0, 1)


def sagittal_grid(size, spacing, centre=CENTRE) -> tuple[sitk.Image, np.ndarray]:
    """Empty sagittal image (columns A->P, rows S->I, slices R->L) and its voxel centres (LPS mm)."""
    direction = np.column_stack([(0, 1, 0), (0, 0, -1), (-1, 0, 0)]).astype(float)
    size, spacing = np.asarray(size), np.asarray(spacing, float)
    origin = np.asarray(centre) - direction @ ((size - 1) / 2 * spacing)
    image = sitk.Image([int(s) for s in size], sitk.sitkFloat32)
    image.SetSpacing(tuple(spacing))
    image.SetOrigin(tuple(origin))
    image.SetDirection(tuple(direction.flatten()))
    k, j, i = np.meshgrid(*(np.arange(n) for n in size[::-1]), indexing="ij")
    points = (np.stack([i, j, k], -1) * spacing) @ direction.T + origin
    return image, points


def _as_image(values: np.ndarray, like: sitk.Image) -> sitk.Image:
    image = sitk.GetImageFromArray(values.astype(np.float32))
    image.CopyInformation(like)
    return image


def make_pair(
    truth: sitk.Euler3DTransform, seed: int = 0, noise: float = 0.02
) -> tuple[sitk.Image, sitk.Image]:
    """T2 (1 x 1 x 4 mm) and T1 (1.2 x 1.2 x 4 mm, other contrast) of one scene; the T1 voxel at q
    shows the anatomy found at truth^-1(q) in T2 space (the shared convention)."""
    rng = np.random.default_rng(seed)
    t2, p2 = sagittal_grid((120, 160, 12), (1.0, 1.0, 4.0))
    t2 = _as_image(
        anatomy(p2, (0.25, 0.5, 0.9, 1.0, 0.4, 0.3)) + noise * rng.standard_normal(p2.shape[:-1]), t2
    )
    t1, q1 = sagittal_grid((100, 134, 12), (1.2, 1.2, 4.0))
    inverse = truth.GetInverse()
    m = np.asarray(inverse.GetMatrix()).reshape(3, 3)
    c, t = np.asarray(inverse.GetCenter()), np.asarray(inverse.GetTranslation())
    p1 = (q1 - c) @ m.T + c + t
    t1 = _as_image(
        anatomy(p1, (0.6, 0.7, 0.35, 0.1, 0.5, -0.2)) + noise * rng.standard_normal(q1.shape[:-1]), t1
    )
    return t2, t1


def _outs(folder: Path) -> dict[str, Path]:
    """The four output paths of one registration, in ``folder`` (the workflow's names)."""
    names = {"tfm": "t1_to_t2.tfm", "t1_in_t2": "t1_in_t2.nii.gz", "qc_json": "qc.json", "qc_png": "qc.png"}
    return {key: folder / name for key, name in names.items()}


TRUTH = sitk.Euler3DTransform(CENTRE, np.radians(2.0), np.radians(-1.5), np.radians(3.0), (2.5, -3.0, 1.5))


@pytest.fixture(scope="module")
def pair_files(tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("pair")
    t2, t1 = make_pair(TRUTH)
    sitk.WriteImage(t2, str(folder / "t2.nii.gz"))
    sitk.WriteImage(t1, str(folder / "t1.nii.gz"))
    return folder / "t1.nii.gz", folder / "t2.nii.gz"


def test_recovers_known_rigid_motion(pair_files, tmp_path: Path) -> None:
    t1, t2 = pair_files
    qc = register_t1_to_t2(
        t1, t2, **_outs(tmp_path / "reg"), truth=TRUTH, truth_points=VERTEBRAE, patient="demo_001"
    )
    assert qc["tre_mm_before"] > 3.0, "the synthetic misalignment must be worth recovering"
    assert qc["tre_mm"] < 0.5, qc
    assert qc["tre_max_mm"] < 1.0
    assert qc["metric_after"] < qc["metric_before"]
    assert qc["status"] == "ok" and qc["problems"] == []
    assert qc["iterations"] == sum(qc["iterations_per_level"]) > 0 and len(qc["iterations_per_level"]) == 3
    assert "RegularStepGradientDescent" in qc["stop_condition"]
    for name in ("t1_to_t2.tfm", "t1_in_t2.nii.gz", "qc.json", "qc.png"):
        assert (tmp_path / "reg" / name).stat().st_size > 0, name
    assert json.loads((tmp_path / "reg" / "qc.json").read_text())["tre_mm"] == qc["tre_mm"]
    assert (tmp_path / "reg" / "qc.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the written transform is the estimate, in the T2 -> T1 convention
    tfm = sitk.ReadTransform(str(tmp_path / "reg" / "t1_to_t2.tfm"))
    tre, _ = target_registration_error(TRUTH, tfm, VERTEBRAE)
    assert tre == pytest.approx(qc["tre_mm"], abs=1e-6)
    # T1 resampled on the T2 grid correlates with the truth-resampled T1 far better than before
    t1_img, t2_img = sitk.ReadImage(str(t1)), sitk.ReadImage(str(t2))
    ours = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "reg" / "t1_in_t2.nii.gz")))
    ideal = sitk.GetArrayFromImage(
        sitk.Resample(t1_img, t2_img, TRUTH, sitk.sitkLinear, 0.0, sitk.sitkFloat32)
    )
    raw = sitk.GetArrayFromImage(sitk.Resample(t1_img, t2_img, sitk.Euler3DTransform(), sitk.sitkLinear, 0.0))
    assert ours.shape == ideal.shape == sitk.GetArrayFromImage(t2_img).shape
    inside = (ideal != 0) & (ours != 0) & (raw != 0)
    err_after = np.abs(ours - ideal)[inside].mean()
    err_before = np.abs(raw - ideal)[inside].mean()
    assert err_after < 0.25 * err_before


def test_rerun_is_bitwise_identical(pair_files, tmp_path: Path) -> None:
    t1, t2 = pair_files
    a = register_t1_to_t2(t1, t2, **_outs(tmp_path / "a"))
    b = register_t1_to_t2(t1, t2, **_outs(tmp_path / "b"))
    assert a["parameters"] == b["parameters"]
    assert (tmp_path / "a" / "t1_to_t2.tfm").read_bytes() == (tmp_path / "b" / "t1_to_t2.tfm").read_bytes()
    c = register_t1_to_t2(t1, t2, **_outs(tmp_path / "c"), seed=12345)
    assert c["parameters"] != a["parameters"], "another seed samples other points"


def test_affine_option_recovers_motion(pair_files) -> None:
    t1, t2 = (sitk.ReadImage(str(p)) for p in pair_files)
    tx, report = estimate_t1_to_t2(t2, t1, transform="affine")
    assert report["transform_type"] == "affine" and len(report["parameters"]) == 12
    tre, _ = target_registration_error(TRUTH, tx, VERTEBRAE)
    assert tre < 0.5
    # sanity: no degenerate shear/scale (12 slices of 4 mm constrain the through-plane scale loosely)
    assert max(abs(s - 1) for s in motion(tx, t2)["scale_factors"]) < 0.05


def test_regular_sampling_also_recovers(pair_files) -> None:
    t1, t2 = (sitk.ReadImage(str(p)) for p in pair_files)
    tx, report = estimate_t1_to_t2(t2, t1, sampling="regular", sampling_fraction=0.1)
    assert report["settings"]["sampling"] == "regular"
    assert target_registration_error(TRUTH, tx, VERTEBRAE)[0] < 0.5


def test_motion_limit_exceeded_fails(pair_files, tmp_path: Path) -> None:
    t1, t2 = pair_files
    with pytest.raises(SpinefxError, match="translation .* exceeds the limit 1 mm") as info:
        register_t1_to_t2(t1, t2, **_outs(tmp_path / "reg"), max_translation_mm=1.0, patient="demo_002")
    assert info.value.patient == "demo_002" and "qc.png" in info.value.fix
    qc = json.loads((tmp_path / "reg" / "qc.json").read_text())
    assert qc["status"] == "failed" and (tmp_path / "reg" / "qc.png").exists()
    assert not (tmp_path / "reg" / "t1_to_t2.tfm").exists(), "a failed registration must not look finished"
    with pytest.raises(SpinefxError, match="rotation .* exceeds the limit 0.5 deg"):
        register_t1_to_t2(t1, t2, **_outs(tmp_path / "reg2"), max_rotation_deg=0.5)


def test_motion_limit_exceeded_warns_when_configured(pair_files, tmp_path: Path) -> None:
    t1, t2 = pair_files
    with pytest.warns(RegistrationWarning, match="exceeds the limit"):
        qc = register_t1_to_t2(t1, t2, **_outs(tmp_path / "reg"), max_translation_mm=1.0, on_failure="warn")
    assert qc["status"] == "warned" and qc["problems"]
    assert (tmp_path / "reg" / "t1_to_t2.tfm").exists() and (tmp_path / "reg" / "t1_in_t2.nii.gz").exists()


def test_metric_got_worse_fails(pair_files, tmp_path: Path) -> None:
    """One oversized optimiser step (10 mm) at full resolution lands somewhere worse than the start."""
    t1, t2 = pair_files
    worse = {
        "learning_rate": 10.0,
        "iterations": 1,
        "shrink_factors": (1,),
        "smoothing_mm": (0.0,),
        "sampling_fraction": 0.2,
    }
    with pytest.raises(SpinefxError, match="metric got worse"):
        register_t1_to_t2(t1, t2, **_outs(tmp_path / "reg"), **worse)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        qc = register_t1_to_t2(t1, t2, **_outs(tmp_path / "reg"), on_failure="warn", **worse)
    assert qc["metric_after"] > qc["metric_before"]
    assert any(issubclass(w.category, RegistrationWarning) for w in caught)


def test_divergence_is_reported(pair_files, tmp_path: Path) -> None:
    t1, t2 = pair_files
    wild = {
        "learning_rate": 300.0,
        "iterations": 2,
        "shrink_factors": (1,),
        "smoothing_mm": (0.0,),
        "sampling_fraction": 0.2,
    }
    with pytest.raises(SpinefxError, match="diverged"):
        register_t1_to_t2(t1, t2, **_outs(tmp_path / "reg"), **wild)


def test_bad_arguments(pair_files, tmp_path: Path) -> None:
    t1, t2 = pair_files
    with pytest.raises(SpinefxError, match="qc_slice 99"):
        register_t1_to_t2(t1, t2, **_outs(tmp_path / "reg"), qc_slice=99, iterations=5)
    with pytest.raises(SpinefxError, match="not found"):
        register_t1_to_t2(tmp_path / "missing.nii.gz", t2, **_outs(tmp_path / "reg"))
    img = sitk.ReadImage(str(t2))
    with pytest.raises(ValueError, match="seed"):
        estimate_t1_to_t2(img, img, seed=0)
    with pytest.raises(ValueError, match="transform"):
        estimate_t1_to_t2(img, img, transform="bspline")


def test_anisotropic_shrink_factors_keep_the_slice_axis() -> None:
    # the demo T2: 1 mm pixels, 4 mm slices; SimpleITK alone would make 4 mm slices 16 mm at level 4
    assert anisotropic_shrink_factors((1.0, 1.0, 4.0), (4, 2, 1)) == [(4, 4, 1), (2, 2, 1), (1, 1, 1)]
    assert anisotropic_shrink_factors((1.0, 1.0, 4.0), (8,)) == [(8, 8, 2)]
    # the paper: 300 mm / 512 px; 4 mm slices stay whole until the pixels pass 4 mm
    assert anisotropic_shrink_factors((300 / 512, 300 / 512, 4.0), (4, 8)) == [(4, 4, 1), (8, 8, 1)]
    assert anisotropic_shrink_factors((1.2, 1.2, 1.2), (2,)) == [(2, 2, 2)]  # isotropic: as SimpleITK
    assert anisotropic_shrink_factors((1.0, 0.5, 4.0), (4,)) == [(2, 4, 1)]  # finest axis sets the pace
    assert anisotropic_shrink_factors((1.0, 1.0, 4.0), (8,), size=(100, 10, 3)) == [(8, 5, 1)]
    for bad in ((0,), (1.5,)):
        with pytest.raises(ValueError, match="integers"):
            anisotropic_shrink_factors((1.0, 1.0, 4.0), bad)
    with pytest.raises(ValueError, match="positive"):
        anisotropic_shrink_factors((1.0, 0.0, 4.0), (2,))


def test_pyramid_report_names_the_per_axis_factors(pair_files) -> None:
    t1, t2 = (sitk.ReadImage(str(p)) for p in pair_files)
    _, report = estimate_t1_to_t2(t2, t1, iterations=3)
    assert report["settings"]["shrink_factors_per_axis"] == [[4, 4, 1], [2, 2, 1], [1, 1, 1]]
    assert len(report["iterations_per_level"]) == 3 and report["settings"]["fixed_mask_voxels"] is None


def test_lesion_mask_limits_the_metric(pair_files, tmp_path: Path) -> None:
    t1, t2 = pair_files
    t2_img = sitk.ReadImage(str(t2))
    box = (30, 50, 70, 90)
    mask = sitk.GetArrayFromImage(lesion_mask(t2_img, box, margin_mm=10.0))
    assert mask.shape == sitk.GetArrayFromImage(t2_img).shape
    rows, cols = np.nonzero(mask.any(axis=0))
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (40, 99, 20, 79)  # 10 px of 1 mm each side
    assert mask.all(axis=(1, 2)).sum() == 0 and mask.any(axis=(1, 2)).all()  # every slice, box only
    clipped = sitk.GetArrayFromImage(lesion_mask(t2_img, (0, 0, 5, 5), margin_mm=3.0))
    assert clipped.sum() == 12 * 8 * 8
    with pytest.raises(ValueError, match="does not overlap"):
        lesion_mask(t2_img, (200, 300, 210, 310), margin_mm=1.0)

    wide = (10, 10, 110, 150)  # most of the spine: enough to register on
    qc = register_t1_to_t2(
        t1,
        t2,
        **_outs(tmp_path / "m"),
        lesion_box=wide,
        mask_margin_mm=5.0,
        truth=TRUTH,
        truth_points=VERTEBRAE,
    )
    plain = register_t1_to_t2(t1, t2, **_outs(tmp_path / "p"), lesion_box=wide, mask_margin_mm=None)
    assert qc["mask"] == {"lesion_box": list(wide), "margin_mm": 5.0} and plain["mask"] is None
    assert qc["parameters_settings"]["fixed_mask_voxels"] == 12 * 150 * 110
    assert qc["parameters"] != plain["parameters"], "the mask must change what the metric sees"
    assert qc["tre_mm"] < 0.5 and qc["status"] == "ok"
    with pytest.raises(SpinefxError, match="does not overlap") as info:
        register_t1_to_t2(
            t1, t2, **_outs(tmp_path / "x"), lesion_box=(500, 500, 510, 510), mask_margin_mm=1.0
        )
    assert "box_x0" in info.value.fix


def _demo_image(volume: np.ndarray, grid) -> sitk.Image:
    """A demo series as an image, straight from its SeriesGeometry (no DICOM round trip)."""
    image = sitk.GetImageFromArray(volume.astype(np.float32))
    image.SetOrigin(grid.origin)
    image.SetSpacing((grid.pixel_spacing[1], grid.pixel_spacing[0], grid.slice_spacing))
    image.SetDirection(tuple(np.column_stack([grid.row_dir, grid.col_dir, grid.slice_normal()]).ravel()))
    return image


def test_scanner_initialisation_survives_an_offset_fov_where_geometry_fails() -> None:
    """demo_001 of the default demo (seed 7): its T1 FOV centre sits 20 mm above the T2 one. Aligning
    the FOV centres (``geometry``) starts 20 mm off and locks onto the neighbouring vertebra; the scanner
    frame (``scanner``, the default) starts within the true motion and recovers it."""
    from spinefx.demo import cohort as demo

    p = demo.plan_patient(7, "demo_001", demo.assign_labels(80, 7, 0.263)["demo_001"])
    assert abs(p.grids["t1"].centre() - p.grids["t2"].centre())[2] > 15
    vols = demo.render_patient(p, seed=7)
    t1, t2 = (_demo_image(vols[s], p.grids[s]) for s in ("t1", "t2"))
    points = demo.visible_vertebra_centres(p)
    assert len(points) >= 4
    tx, report = estimate_t1_to_t2(t2, t1)
    assert report["initialisation"] == "scanner"
    assert target_registration_error(p.transform(), tx, points)[1] < 0.5
    tx_geo, _ = estimate_t1_to_t2(t2, t1, initialisation="geometry")
    mean_geo, _ = target_registration_error(p.transform(), tx_geo, points)
    assert mean_geo > 10.0, "geometry initialisation was expected to land a vertebra off"


def _demo():
    try:
        from spinefx.demo import cohort as demo
    except ImportError:
        return None
    return demo


@pytest.mark.slow
@pytest.mark.parametrize("seed", [11, 12, 13])
def test_demo_cohort_convert_and_register_tre(tmp_path: Path, seed: int) -> None:
    """End to end on the demo phantom: DICOM -> NIfTI -> registration recovers the known motion."""
    demo = _demo()
    if demo is None:
        pytest.skip("spinefx.demo.cohort not available")
    from spinefx.dicom.convert import convert_series

    demo.write_demo_cohort(tmp_path / "demo", n_patients=4, seed=seed, geometry="default")
    truth = demo.read_truth(tmp_path / "demo" / "truth.tsv")
    tres = []
    for _, row in truth.iterrows():
        pid = row["patient_id"]
        for s in ("t1", "t2"):
            convert_series(
                tmp_path / "demo" / "dicom" / pid / s,
                tmp_path / "nifti" / pid / f"{s}.nii.gz",
                tmp_path / "nifti" / pid / f"{s}.json",
                patient=pid,
            )
        qc = register_t1_to_t2(
            tmp_path / "nifti" / pid / "t1.nii.gz",
            tmp_path / "nifti" / pid / "t2.nii.gz",
            **_outs(tmp_path / "reg" / pid),
            truth=demo.truth_transform(row),
            truth_points=demo.vertebra_centers(row),
            patient=pid,
        )
        assert qc["status"] == "ok" and (tmp_path / "reg" / pid / "qc.png").exists()
        assert qc["tre_mm_before"] > qc["tre_mm"]
        tres.append(qc["tre_mm"])
    assert max(tres) < 0.5, tres
