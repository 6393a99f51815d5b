"""Patch extraction: box mapping, channel order, z-scoring, T1 through the registration, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk

from spinefx.errors import SpinefxError
from spinefx.imaging.patches import extract_patches, zscore_channels

# a sagittal-like orientation: image x -> anterior/posterior, y -> head/foot, slices -> left/right
DIRECTION = (0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0, -1.0, 0.0)


def make_image(arr: np.ndarray, spacing, origin, direction=DIRECTION) -> sitk.Image:
    img = sitk.GetImageFromArray(arr.astype(np.float32))  # arr is [k, y, x]
    img.SetSpacing(tuple(float(s) for s in spacing))
    img.SetOrigin(tuple(float(o) for o in origin))
    img.SetDirection(direction)
    return img


def physical_points(size_xyz, spacing, origin, direction=DIRECTION, index=None) -> np.ndarray:
    """Physical point of every voxel (or of given continuous indices [..., 3]) by the DICOM formula."""
    if index is None:
        nx, ny, nz = size_xyz
        k, y, x = np.meshgrid(np.arange(nz), np.arange(ny), np.arange(nx), indexing="ij")
        index = np.stack([x, y, k], axis=-1).astype(float)
    d = np.asarray(direction).reshape(3, 3)
    return np.asarray(origin) + (index * np.asarray(spacing)) @ d.T


def zscore_ref(x: np.ndarray) -> np.ndarray:
    """Independent z-score of one [c, h, w] sample."""
    out = np.empty_like(x, dtype=np.float64)
    for c in range(x.shape[0]):
        out[c] = (x[c] - x[c].mean()) / x[c].std()
    return out


def patch_index_coords(box, size):
    """Continuous T2 pixel index of patch columns / rows (pixel-area convention)."""
    x0, y0, x1, y1 = box
    cols = x0 - 0.5 + (np.arange(size) + 0.5) * (x1 - x0) / size
    rows = y0 - 0.5 + (np.arange(size) + 0.5) * (y1 - y0) / size
    return cols, rows


@pytest.fixture
def bilinear_case(tmp_path):
    """T2 and T1 on the same grid, each slice a different bilinear function of (x, y).

    Bilinear interpolation reproduces a + b x + c y + d x y exactly, so the expected patch is known
    in closed form.
    """
    rng = np.random.default_rng(0)
    nx, ny, nz = 40, 36, 9
    spacing, origin = (0.7, 0.8, 3.0), (-12.0, 30.0, 45.0)
    k, y, x = np.meshgrid(np.arange(nz), np.arange(ny), np.arange(nx), indexing="ij")
    coef = {name: rng.uniform(-2, 2, (2, nz, 4)) for name in ("t1", "t2")}

    def volume(c):
        return c[:, 0][k] + c[:, 1][k] * x + c[:, 2][k] * y + c[:, 3][k] * x * y / 10

    t1 = volume(coef["t1"][0])
    t2 = volume(coef["t2"][0])
    sitk.WriteImage(make_image(t2, spacing, origin), str(tmp_path / "t2.nii.gz"))
    sitk.WriteImage(make_image(t1, spacing, origin), str(tmp_path / "t1.nii.gz"))
    # instance numbers run backwards along k: InstanceNumber 16 is k = 4
    numbers = list(range(20, 20 - nz, -1))
    (tmp_path / "t2.json").write_text(json.dumps({"instance_numbers": numbers}))
    tfm = sitk.Euler3DTransform()
    sitk.WriteTransform(tfm, str(tmp_path / "t1_to_t2.tfm"))

    def expected(coefs, box, size, k_slice):
        cols, rows = patch_index_coords(box, size)
        xx, yy = np.meshgrid(cols, rows)
        a, b, c, d = coefs[k_slice]
        return a + b * xx + c * yy + d * xx * yy / 10

    return tmp_path, numbers, coef, expected, (nx, ny, nz)


def test_channel_order_box_mapping_and_zscore_exact(bilinear_case):
    d, numbers, coef, expected, _ = bilinear_case
    box = (5, 7, 29, 23)  # 24 x 16 pixels, not square: x/y mix-ups would show
    patches, slices = extract_patches(
        d / "t1.nii.gz",
        d / "t2.nii.gz",
        d / "t2.json",
        d / "t1_to_t2.tfm",
        lesion_instance=16,
        box=box,
        size=32,
        patient="p1",
    )
    assert patches.dtype == np.float32
    assert patches.shape == (3, 6, 32, 32)
    assert slices == [3, 4, 5]
    for n, s in enumerate(slices):
        raw = np.stack(
            [expected(coef["t1"][0], box, 32, s + o) for o in (-1, 0, 1)]
            + [expected(coef["t2"][0], box, 32, s + o) for o in (-1, 0, 1)]
        )
        np.testing.assert_allclose(patches[n], zscore_ref(raw), atol=2e-4)
    # z-score per channel per sample
    np.testing.assert_allclose(patches.mean(axis=(2, 3)), 0, atol=1e-5)
    np.testing.assert_allclose(patches.std(axis=(2, 3)), 1, atol=1e-4)


def test_two_neighbours_and_custom_centres(bilinear_case):
    d, _, coef, expected, _ = bilinear_case
    box = (3, 3, 19, 19)
    patches, slices = extract_patches(
        d / "t1.nii.gz",
        d / "t2.nii.gz",
        json.loads((d / "t2.json").read_text()),  # a dict works too
        sitk.Euler3DTransform(),  # and an in-memory transform
        lesion_instance=16,
        box=box,
        centre_offsets=(0, 2),
        neighbours=2,
        size=16,
    )
    assert patches.shape == (2, 10, 16, 16)
    assert slices == [4, 6]
    raw = np.stack(
        [expected(coef["t1"][0], box, 16, 6 + o) for o in range(-2, 3)]
        + [expected(coef["t2"][0], box, 16, 6 + o) for o in range(-2, 3)]
    )
    np.testing.assert_allclose(patches[1], zscore_ref(raw), atol=2e-4)


def test_box_of_size_pixels_is_a_pixel_copy(tmp_path):
    rng = np.random.default_rng(1)
    t2 = rng.normal(size=(5, 80, 70))
    sitk.WriteImage(make_image(t2, (0.5, 0.6, 4), (1, 2, 3)), str(tmp_path / "t2.nii.gz"))
    sitk.WriteImage(make_image(t2 * 3 + 1, (0.5, 0.6, 4), (1, 2, 3)), str(tmp_path / "t1.nii.gz"))
    box = (6, 10, 70, 74)  # touches the last column: x1 exclusive = image width
    patches, _ = extract_patches(
        tmp_path / "t1.nii.gz",
        tmp_path / "t2.nii.gz",
        {"instance_numbers": [1, 2, 3, 4, 5]},
        sitk.Euler3DTransform(),
        lesion_instance=3,
        box=box,
        centre_offsets=(0,),
    )
    want = zscore_ref(t2[1:4, 10:74, 6:70])
    np.testing.assert_allclose(patches[0, 3:], want, atol=1e-4)
    np.testing.assert_allclose(patches[0, :3], want, atol=1e-4)


def test_bright_square_inside_box_lands_in_the_middle_of_the_patch(tmp_path):
    t2 = np.zeros((5, 40, 50))
    t2[:, 8:16, 12:20] = 100.0  # rows y 8..15, columns x 12..19
    sitk.WriteImage(make_image(t2, (1, 1, 3), (0, 0, 0)), str(tmp_path / "t2.nii.gz"))
    sitk.WriteImage(make_image(t2, (1, 1, 3), (0, 0, 0)), str(tmp_path / "t1.nii.gz"))
    # box 16 x 16 pixels centred on the square: the square is its middle half
    patches, _ = extract_patches(
        tmp_path / "t1.nii.gz",
        tmp_path / "t2.nii.gz",
        {"instance_numbers": list(range(1, 6))},
        sitk.Euler3DTransform(),
        lesion_instance=3,
        box=(8, 4, 24, 20),
        size=64,
    )
    p = patches[1, 4]
    # patch pixel i sits at index 7.5 + (i + 0.5) / 4 (columns) and 3.5 + (i + 0.5) / 4 (rows)
    assert np.allclose(p[18:46, 18:46], p.max())
    frame = np.ones_like(p, dtype=bool)
    frame[14:50, 14:50] = False
    assert np.allclose(p[frame], p.min())
    assert p.max() > 0 > p.min()


@pytest.fixture
def registration_case(tmp_path):
    """T1 is the T2 anatomy seen through a known rigid transform, on a different grid."""

    def anatomy(p):  # smooth, varies across slices (p[..., 0] is the slice normal here)
        return (
            np.sin(0.22 * p[..., 1] + 0.2 * p[..., 0])
            + np.cos(0.18 * p[..., 2] - 0.15 * p[..., 0])
            + 0.02 * p[..., 2]
        )

    t2_geo = dict(size_xyz=(48, 48, 11), spacing=(0.8, 0.8, 3.0), origin=(-15.0, 20.0, 60.0))
    t2 = anatomy(physical_points(**t2_geo))
    sitk.WriteImage(make_image(t2, t2_geo["spacing"], t2_geo["origin"]), str(tmp_path / "t2.nii.gz"))
    t2_img = sitk.ReadImage(str(tmp_path / "t2.nii.gz"))
    centre = t2_img.TransformContinuousIndexToPhysicalPoint((23.5, 23.5, 5.0))
    tfm = sitk.Euler3DTransform(centre, np.deg2rad(3.0), np.deg2rad(-4.0), np.deg2rad(5.0), (4.0, -3.0, 2.0))
    sitk.WriteTransform(tfm, str(tmp_path / "t1_to_t2.tfm"))

    # T1 grid: finer, larger, shifted; voxel at q shows the anatomy at T^-1(q)
    t1_geo = dict(size_xyz=(70, 70, 32), spacing=(0.7, 0.7, 1.5), origin=(-21.0, 15.0, 66.0))
    q = physical_points(**t1_geo)
    r = np.asarray(tfm.GetMatrix()).reshape(3, 3)
    c, t = np.asarray(tfm.GetCenter()), np.asarray(tfm.GetTranslation())
    t1 = 3.0 * anatomy((q - c - t) @ r + c) + 50.0  # (q - c - t) @ r == R^T (q - c - t)
    sitk.WriteImage(make_image(t1, t1_geo["spacing"], t1_geo["origin"]), str(tmp_path / "t1.nii.gz"))
    (tmp_path / "t2.json").write_text(json.dumps({"instance_numbers": list(range(1, 12))}))
    return tmp_path, anatomy, t2_geo, tfm


def test_t1_is_sampled_through_the_registration_transform(registration_case):
    d, anatomy, t2_geo, tfm = registration_case
    box = (10, 8, 38, 36)
    kwargs = dict(lesion_instance=6, box=box, size=32, patient="p2")
    patches, slices = extract_patches(d / "t1.nii.gz", d / "t2.nii.gz", d / "t2.json", tfm, **kwargs)
    cols, rows = patch_index_coords(box, 32)
    for n, s in enumerate(slices):
        ref = []
        for o in (-1, 0, 1):
            xx, yy = np.meshgrid(cols, rows)
            idx = np.stack([xx, yy, np.full_like(xx, s + o)], axis=-1)
            ref.append(anatomy(physical_points(None, t2_geo["spacing"], t2_geo["origin"], index=idx)))
        ref = zscore_ref(np.stack(ref))
        # T2 channels: in-plane interpolation error only; T1 channels: trilinear through the transform
        assert np.abs(patches[n, 3:] - ref).max() < 0.01
        assert np.abs(patches[n, :3] - ref).max() < 0.03
    # the same T1 read without the transform does not match: the mapping is really applied
    wrong, _ = extract_patches(
        d / "t1.nii.gz", d / "t2.nii.gz", d / "t2.json", sitk.Euler3DTransform(), **kwargs
    )
    assert np.abs(wrong[:, :3] - patches[:, 3:]).max() > 0.5
    # and the file path of the transform gives the same as the in-memory transform
    from_file, _ = extract_patches(
        d / "t1.nii.gz", d / "t2.nii.gz", d / "t2.json", d / "t1_to_t2.tfm", **kwargs
    )
    np.testing.assert_allclose(from_file, patches, atol=1e-5)


def _run(d, **kw):
    args = dict(lesion_instance=16, box=(5, 7, 29, 23), patient="demo_007")
    args.update(kw)
    tfm = args.pop("transform", d / "t1_to_t2.tfm")
    return extract_patches(d / "t1.nii.gz", d / "t2.nii.gz", d / "t2.json", tfm, **args)


def test_error_lesion_instance_not_in_series(bilinear_case):
    d = bilinear_case[0]
    with pytest.raises(SpinefxError) as err:
        _run(d, lesion_instance=99)
    msg = str(err.value)
    assert "demo_007" in msg and "t2.json" in msg
    assert "99" in msg and "12..20" in msg and "9 slices" in msg


@pytest.mark.parametrize(
    "box, words",
    [
        ((10, 7, 10, 23), "empty or inverted"),
        ((20, 7, 10, 23), "empty or inverted"),
        ((5, 23, 29, 7), "empty or inverted"),
        ((-1, 7, 29, 23), "outside"),
        ((5, 7, 41, 23), "outside"),
        ((5, 7, 29, 37), "outside"),
    ],
)
def test_error_bad_box(bilinear_case, box, words):
    d = bilinear_case[0]
    with pytest.raises(SpinefxError) as err:
        _run(d, box=box)
    msg = str(err.value)
    assert words in msg and "demo_007" in msg and "t2.nii.gz" in msg
    if words == "outside":
        assert "40 columns x 36 rows" in msg


def test_error_slices_outside_volume(bilinear_case):
    d = bilinear_case[0]
    # InstanceNumber 20 is k = 0: the lower neighbour of centre -1 would be k = -2
    with pytest.raises(SpinefxError) as err:
        _run(d, lesion_instance=20)
    msg = str(err.value)
    assert "9 slices" in msg and "[-2, -1]" in msg and "demo_007" in msg and "t2.nii.gz" in msg
    # last slice: centre offsets only towards the inside are fine
    patches, slices = _run(d, lesion_instance=12, centre_offsets=(-2, -1))
    assert slices == [6, 7] and patches.shape[0] == 2
    with pytest.raises(SpinefxError, match=r"slices \[9\] do not exist"):
        _run(d, lesion_instance=12, centre_offsets=(-1,), neighbours=2)


def test_error_t1_does_not_overlap(bilinear_case):
    d = bilinear_case[0]
    far = sitk.TranslationTransform(3, (300.0, 0.0, 0.0))
    with pytest.raises(SpinefxError) as err:
        _run(d, transform=far)
    msg = str(err.value)
    assert "outside the T1W volume" in msg and "demo_007" in msg


def test_partial_t1_overlap_reads_background(bilinear_case):
    d = bilinear_case[0]
    # shift T1 lookups by 4 mm along image x (0.7 mm pixels): ~29% of the box leaves T1 on the right
    shift = sitk.TranslationTransform(3, (0.0, 4.0, 0.0))  # image x is physical y (DIRECTION)
    patches, _ = _run(d, transform=shift, box=(20, 7, 40, 23), size=20)
    assert np.isfinite(patches).all()
    # the right-hand columns of every T1 channel read one background value; T2 is untouched
    right = patches[:, :3, :, -4:]
    assert np.allclose(right, right[:, :, :1, :1])
    assert not np.allclose(patches[:, 3:, :, -4:], patches[:, 3:, :1, -1:])
    with pytest.raises(SpinefxError, match="outside the T1W volume"):
        _run(d, transform=shift, box=(20, 7, 40, 23), max_t1_outside_fraction=0.1)


def test_error_sidecar_mismatch(bilinear_case, tmp_path):
    d = bilinear_case[0]
    (d / "t2.json").write_text(json.dumps({"instance_numbers": [1, 2, 3]}))
    with pytest.raises(SpinefxError, match="3 InstanceNumbers but the volume has 9 slices"):
        _run(d)


def test_zscore_guards_constant_channels():
    x = np.zeros((2, 3, 4, 4), dtype=np.float32)
    x[0, 1] = np.arange(16).reshape(4, 4)
    x[1, 2] = 7.0
    z = zscore_channels(x)
    assert np.isfinite(z).all()
    assert np.all(z[1] == 0) and np.all(z[0, 0] == 0)
    np.testing.assert_allclose(z[0, 1].std(), 1, atol=1e-6)


def test_widen_box_grows_about_the_centre_and_clips() -> None:
    from spinefx.imaging.patches import widen_box

    assert widen_box((40, 40, 60, 60), 1.0, (100, 100)) == (40, 40, 60, 60)
    assert widen_box((40, 40, 60, 60), 2.0, (100, 100)) == (30, 30, 70, 70)
    assert widen_box((0, 10, 20, 30), 2.0, (100, 100)) == (0, 0, 30, 40)  # clipped at the image edge
    assert widen_box((90, 90, 100, 100), 3.0, (100, 100)) == (80, 80, 100, 100)
    with pytest.raises(ValueError):
        widen_box((0, 0, 1, 1), 0.0, (10, 10))


def test_box_scale_brings_context_into_the_patch(tmp_path):
    t2 = np.zeros((5, 40, 50))
    t2[:, 8:16, 12:20] = 100.0  # an 8x8 square, the middle half of the 16x16 box below
    sitk.WriteImage(make_image(t2, (1, 1, 3), (0, 0, 0)), str(tmp_path / "t2.nii.gz"))
    sitk.WriteImage(make_image(t2, (1, 1, 3), (0, 0, 0)), str(tmp_path / "t1.nii.gz"))

    def bright_fraction(scale: float) -> float:
        patches, _ = extract_patches(
            tmp_path / "t1.nii.gz",
            tmp_path / "t2.nii.gz",
            {"instance_numbers": list(range(1, 6))},
            sitk.Euler3DTransform(),
            lesion_instance=3,
            box=(8, 4, 24, 20),
            size=64,
            box_scale=scale,
        )
        p = patches[1, 4]
        return float((p > (p.max() + p.min()) / 2).mean())

    assert bright_fraction(1.0) == pytest.approx(0.25, abs=0.03)  # (8/16)^2
    assert bright_fraction(2.0) == pytest.approx(0.0625, abs=0.02)  # (8/32)^2: the box holds context
