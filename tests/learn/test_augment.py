"""Random-affine augmentation: shape, determinism, geometry of the transform, shared across channels."""

from __future__ import annotations

import numpy as np
import pytest

from spinefx.errors import SpinefxError
from spinefx.imaging.patches import zscore_channels
from spinefx.learn.augment import (
    apply_affines,
    augment_patches,
    augmentation_seed,
    copies_for,
    draw_affines,
    inverse_affines,
)


@pytest.fixture
def patches():
    rng = np.random.default_rng(3)
    return zscore_channels(rng.normal(size=(3, 6, 64, 64)))


def test_shape_dtype_order_and_zscore(patches):
    out = augment_patches(patches, 5, seed=1)
    assert out.shape == (15, 6, 64, 64) and out.dtype == np.float32
    np.testing.assert_allclose(out.mean(axis=(2, 3)), 0, atol=1e-5)
    np.testing.assert_allclose(out.std(axis=(2, 3)), 1, atol=1e-4)
    # copies of sample i are rows i*copies..: with a mild transform each copy correlates best with its source
    mild = augment_patches(patches, 4, seed=1, rotation_deg=2, translation_px=0.3, scale_range=(0.98, 1.02))
    for row in range(12):
        corr = [np.corrcoef(mild[row, 4].ravel(), patches[i, 4].ravel())[0, 1] for i in range(3)]
        assert int(np.argmax(corr)) == row // 4


def test_deterministic_for_a_seed(patches):
    a = augment_patches(patches, 6, seed=42)
    b = augment_patches(patches, 6, seed=42)
    c = augment_patches(patches, 6, seed=43)
    assert np.array_equal(a, b)
    assert not np.allclose(a, c)


def test_zero_ranges_are_the_identity(patches):
    out = augment_patches(patches, 3, seed=0, rotation_deg=0, translation_px=0, scale_range=(1.0, 1.0))
    # float32 grid coordinates: sub-1e-5 pixel rounding
    np.testing.assert_allclose(out, np.repeat(patches, 3, axis=0), atol=1e-4)


def test_same_transform_on_all_channels():
    rng = np.random.default_rng(5)
    one = rng.normal(size=(2, 1, 64, 64))
    same = np.repeat(one, 6, axis=1)  # six equal channels
    out = augment_patches(same, 8, seed=9)
    for ch in range(1, 6):
        assert np.array_equal(out[:, ch], out[:, 0])
    # and the copies really moved
    assert np.abs(out[:8, 0] - zscore_channels(one)[0, 0]).max() > 0.5
    # channels related by a gain and offset are still related after z-scoring
    mixed = np.concatenate([one, 3 * one + 2, -one], axis=1)
    out2 = augment_patches(mixed, 4, seed=2)
    np.testing.assert_allclose(out2[:, 1], out2[:, 0], atol=1e-5)
    np.testing.assert_allclose(out2[:, 2], -out2[:, 0], atol=1e-5)


def test_integer_translation_shifts_pixels():
    rng = np.random.default_rng(6)
    x = rng.normal(size=(1, 2, 32, 40)).astype(np.float32)
    out = apply_affines(x, np.array([[0.0, 1.0, 3.0, -2.0]]))
    # content moves 3 columns right and 2 rows up
    np.testing.assert_allclose(out[0, :, :-2, 3:], x[0, :, 2:, :-3], atol=1e-5)


def test_rotation_by_90_degrees_about_the_centre():
    rng = np.random.default_rng(7)
    x = rng.normal(size=(1, 1, 24, 24)).astype(np.float32)
    out = apply_affines(x, np.array([[90.0, 1.0, 0.0, 0.0]]))
    rotated = [np.rot90(x[0, 0], k) for k in (1, -1)]
    assert min(np.abs(out[0, 0] - r).max() for r in rotated) < 1e-4


def test_scale_about_the_centre():
    x = np.zeros((1, 1, 33, 33), dtype=np.float32)
    x[0, 0, 12:21, 12:21] = 1.0  # 9x9 square centred on pixel 16
    out = apply_affines(x, np.array([[0.0, 2.0, 0.0, 0.0]]), border="border")
    # doubled about the centre: pixel 16 +- 8 is inside, +-10 outside
    assert np.all(out[0, 0, 8:25, 8:25] > 0.99)
    assert np.all(out[0, 0, :6] < 0.01) and np.all(out[0, 0, :, 27:] < 0.01)


def test_affine_draws_stay_in_range():
    rng = np.random.default_rng(0)
    p = draw_affines(2000, rng, rotation_deg=15, translation_px=4, scale_range=(0.9, 1.1))
    assert np.abs(p[:, 0]).max() <= 15 and np.abs(p[:, 2:]).max() <= 4
    assert p[:, 1].min() >= 0.9 and p[:, 1].max() <= 1.1
    assert np.abs(p[:, 0]).max() > 14  # really uses the range
    maps, offsets = inverse_affines(np.array([[0.0, 1.0, 0.0, 0.0]]), 64, 64)
    np.testing.assert_allclose(maps[0], np.eye(2), atol=1e-12)
    np.testing.assert_allclose(offsets[0], 0, atol=1e-12)


def test_zero_copies_and_bad_arguments(patches):
    assert augment_patches(patches, 0, seed=1).shape == (0, 6, 64, 64)
    with pytest.raises(ValueError):
        augment_patches(patches, 2, seed=1, scale_range=(1.2, 1.0))
    with pytest.raises(ValueError):
        augment_patches(patches, 2, seed=1, border="zeros")
    with pytest.raises(ValueError):
        augment_patches(patches[0], 2, seed=1)


def test_copies_for_and_seed():
    copies = {"benign": 20, "malignant": 40}
    assert copies_for("benign", copies) == 20
    assert copies_for("malignant", copies) == 40
    with pytest.raises(SpinefxError, match="unknown|no augmentation count"):
        copies_for("other", copies)
    with pytest.raises(SpinefxError, match="whole number"):
        copies_for("benign", {"benign": -1})
    assert augmentation_seed(1, "demo_001") == augmentation_seed(1, "demo_001")
    assert augmentation_seed(1, "demo_001") != augmentation_seed(1, "demo_002")
    assert augmentation_seed(1, "demo_001") != augmentation_seed(2, "demo_001")


def test_augment_patch_file_hand_off(tmp_path, patches):
    from spinefx.imaging.patchfile import read_patch_file, write_patch_file
    from spinefx.learn.augment import augment_patch_file

    src = tmp_path / "original" / "demo_004.h5"
    write_patch_file(
        src, original=patches, label="benign", slices=[7, 8, 9], box=(1, 2, 60, 61), patient_id="demo_004"
    )
    dst = tmp_path / "demo_004.h5"
    n = augment_patch_file(src, dst, copies={"benign": 2, "malignant": 4}, seed=5, dtype="float16")
    pf = read_patch_file(dst)
    assert n == 6 and pf.augmented.shape == (6, 6, 64, 64) and pf.augmented.dtype == np.float16
    assert np.array_equal(pf.original, patches) and pf.slices == [7, 8, 9] and pf.label == "benign"
    want = augment_patches(patches, 2, seed=augmentation_seed(5, "demo_004"))
    np.testing.assert_array_equal(pf.augmented, want.astype(np.float16))
    with pytest.raises(SpinefxError, match="demo_004"):
        augment_patch_file(src, dst, copies={"malignant": 4}, seed=5, dtype="float32")


def _grid_sample_oracle(x: np.ndarray, params: np.ndarray, border: str) -> np.ndarray:
    """The same warps through torch's affine_grid + grid_sample (what spinefx used before scipy)."""
    import torch
    import torch.nn.functional as F

    n, c, h, w = x.shape
    a, s, t = np.deg2rad(params[:, 0]), params[:, 1], params[:, 2:4]
    d = np.array([2.0 / w, 2.0 / h])  # normalised coordinates u = 2 (x - c) / size
    m = np.empty((n, 2, 2))
    m[:, 0, 0], m[:, 0, 1] = np.cos(a), np.sin(a) * d[0] / d[1]
    m[:, 1, 0], m[:, 1, 1] = -np.sin(a) * d[1] / d[0], np.cos(a)
    m /= s[:, None, None]
    theta = np.concatenate([m, -np.einsum("nij,nj->ni", m, t * d)[:, :, None]], axis=2)
    with torch.no_grad():
        grid = F.affine_grid(torch.from_numpy(theta), [n, c, h, w], align_corners=False)
        out = F.grid_sample(
            torch.from_numpy(x.astype(np.float64)),
            grid,
            mode="bilinear",
            padding_mode=border,
            align_corners=False,
        )
    return out.numpy()


@pytest.mark.parametrize("border", ["reflection", "border"])
def test_warp_equals_torch_grid_sample(border):
    """Oracle: torch's grid_sample in float64, on the paper's ranges and on large moves that reach far
    past the patch edge (where the padding rule decides every pixel)."""
    rng = np.random.default_rng(11)
    x = rng.normal(size=(24, 3, 64, 48)).astype(np.float32)
    params = np.concatenate(
        [
            draw_affines(12, rng, rotation_deg=15, translation_px=4, scale_range=(0.9, 1.1)),
            draw_affines(12, rng, rotation_deg=180, translation_px=40, scale_range=(0.4, 2.5)),
        ]
    )
    ours = apply_affines(x, params, border=border)
    oracle = _grid_sample_oracle(x, params, border)
    assert ours.dtype == np.float32 and ours.shape == x.shape
    np.testing.assert_allclose(ours, oracle, atol=2e-5, rtol=0)
