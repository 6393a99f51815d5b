"""The analytic spine phantom: MR contrasts, geometry, and that every feature shows in the image."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from spinefx.demo import cohort as demo
from spinefx.demo import phantom
from spinefx.features import FEATURES

T = phantom.T


def _signals(seq):
    anat = phantom.sample_anatomy(np.random.default_rng(0), dict.fromkeys(FEATURES, 0))
    anat.tissue_table = np.array([phantom.TISSUES[t] for t in phantom.TISSUE_NAMES], float)
    sig = phantom.tissue_signal(anat, seq)
    return {name: float(sig[i]) for name, i in T.items()}


def test_tissue_contrasts_follow_spin_echo_physics():
    t1, t2 = _signals(phantom.T1W), _signals(phantom.T2W)
    # T1W: fat > fatty marrow > muscle > CSF; edema and tumour darken marrow
    assert t1["fat"] > t1["marrow"] > t1["muscle"] > t1["csf"]
    assert t1["edema"] < 0.7 * t1["marrow"] and t1["tumour"] < 0.7 * t1["marrow"]
    assert t1["nucleus"] < t1["marrow"]
    # T2W FSE: CSF brightest, fat fairly bright, edema brighter than marrow, nucleus bright, annulus dark
    assert t2["csf"] > t2["fat"] > t2["marrow"]
    assert t2["edema"] > 1.3 * t2["marrow"] and t2["tumour"] > t2["marrow"]
    assert t2["nucleus"] > 3 * t2["annulus"]
    assert t2["muscle"] < 0.5 * t2["marrow"]
    # sclerosis / dark line: dark on both; fluid cleft: dark T1, bright T2
    assert t1["sclerosis"] < 0.3 * t1["marrow"] and t2["sclerosis"] < 0.1 * t2["marrow"]
    assert t1["fluid"] < 0.4 * t1["marrow"] and t2["fluid"] > 1.5 * t2["marrow"]


def test_straighten_round_trip():
    anat = demo.plan_patient(1, "demo_001", "benign").anatomy
    pts = anat.anchor + np.random.default_rng(1).uniform(-90, 90, (500, 3))
    x, v, s = phantom.straighten(anat, pts[:, 0], pts[:, 1], pts[:, 2])
    back = phantom.unstraighten(anat, x, v, s)
    np.testing.assert_allclose(back, pts, atol=1e-6)


def test_vertebra_centres_are_in_marrow():
    p = demo.plan_patient(2, "demo_002", "benign", features=dict.fromkeys(FEATURES, 0))
    anat = dataclasses.replace(p.anatomy, hemangioma=None, modic=None)
    centres = phantom.vertebra_centres(anat)
    lay = phantom.layout(anat)
    x, v, s = phantom.straighten(anat, centres[:, 0], centres[:, 1], centres[:, 2])
    lab, _ = phantom.label_points(anat, lay, x, v, s)
    others = [i for i in range(len(centres)) if i != anat.lesion_index]
    assert np.all(lab[others] == T["marrow"])
    # a point 3 mm above each body centre + half its height + half the disc is disc
    top = phantom.unstraighten(anat, 0 * lay.s, 0 * lay.s, lay.s + lay.half + anat.disc_mm / 2 - 0.5)
    x, v, s = phantom.straighten(anat, top[:-1, 0], top[:-1, 1], top[:-1, 2])
    lab, _ = phantom.label_points(anat, lay, x, v, s)
    disc_levels = [i for i in range(len(top) - 1) if anat.levels[i][0] in "TL"]
    assert np.all(np.isin(lab[disc_levels][1:], [T["nucleus"], T["annulus"]]))


def _three_slices(p):
    """T2 grid restricted to the lesion slice and its neighbours (fast renders)."""
    g = p.grids["t2"]
    k = demo.lesion_slice(p)
    origin = np.asarray(g.origin) + (k - 1) * g.slice_spacing * np.asarray(g.normal)
    return dataclasses.replace(g, origin=tuple(origin), shape=(3, *g.shape[1:]))


# base: which other features to set so that switching the tested one is coherent
_BASE_OFF = dict.fromkeys(FEATURES, 0)
_COLLAPSE = ("anterior_wedge_deformity", "compression_of_entire_body", "central_concave_deformity")


@pytest.mark.parametrize("feature", [f for f in FEATURES if f != "skipped_lesion_other_vertebra"])
def test_each_feature_changes_the_lesion_box(feature):
    base = dict(_BASE_OFF)
    if feature in ("homogeneous_marrow_signal",):
        base["absence_of_collapse"] = 1
    p = demo.plan_patient(5, "demo_005", "benign", features=base)
    grid = _three_slices(p)
    x0, y0, x1, y1 = demo.lesion_box(p)
    without = dict(base, **{feature: 0})
    with_ = dict(base, **{feature: 1})
    if feature in _COLLAPSE:  # a named deformity vs an unclassified mild collapse
        without["absence_of_collapse"] = with_["absence_of_collapse"] = 0
    changed = 0
    for seq in (phantom.T1W, phantom.T2W):
        a = phantom.render(p.anatomy.with_features(**without), grid, seq)[:, y0:y1, x0:x1]
        b = phantom.render(p.anatomy.with_features(**with_), grid, seq)[:, y0:y1, x0:x1]
        fat = 2000 * phantom.tissue_signal(p.anatomy, seq)[T["fat"]]
        changed += int(np.sum(np.abs(a - b) > 0.1 * fat))
    assert changed >= 30, f"{feature} changed only {changed} pixels in the lesion box"


def test_skipped_lesions_show_in_other_vertebrae():
    base = dict(_BASE_OFF, absence_of_collapse=1)
    p = demo.plan_patient(6, "demo_006", "malignant", features=base)
    g = p.grids["t2"]
    a = phantom.render(p.anatomy, g, phantom.T1W)
    b = phantom.render(p.anatomy.with_features(skipped_lesion_other_vertebra=1), g, phantom.T1W)
    diff = np.abs(a - b) > 100
    x0, y0, x1, y1 = demo.lesion_box(p)
    assert diff.sum() > 30
    assert not diff[:, y0:y1, x0:x1].any()  # other vertebrae, outside the model's box (as in the paper)


def test_partial_volume_and_noise():
    p = demo.plan_patient(3, "demo_003", "benign")
    grid = _three_slices(p)
    one = phantom.render(p.anatomy, grid, phantom.T2W, subsamples=1)
    three = phantom.render(p.anatomy, grid, phantom.T2W, subsamples=3)
    # partial volume: the 3-sample slice is the mean of thin slices at -t/3, 0, +t/3
    thin = []
    for off in (-1, 0, 1):
        o = np.asarray(grid.origin) + off * grid.slice_thickness / 3 * np.asarray(grid.normal)
        thin.append(
            phantom.render(p.anatomy, dataclasses.replace(grid, origin=tuple(o)), phantom.T2W, subsamples=1)
        )
    np.testing.assert_allclose(three, np.mean(thin, axis=0), atol=0.05)
    assert 0.002 < np.mean(np.abs(three - one) > 20) < 0.3  # boundaries mix, interiors do not
    noisy = phantom.render(p.anatomy, grid, phantom.T2W, noise=0.03, rng=np.random.default_rng(0))
    air = one < 1e-3
    assert air.sum() > 100 and noisy[air].mean() > 0  # Rician floor in the background
    with pytest.raises(ValueError):
        phantom.render(p.anatomy, grid, phantom.T2W, noise=0.03)


def test_zero_filled_reconstruction_keeps_mean_and_blurs():
    img = np.zeros((1, 32, 32), np.float32)
    img[0, :, 16:] = 1.0
    cplx = phantom._truncate_kspace(img.astype(np.complex64), (32, 16))
    assert abs(cplx.real.mean() - img.mean()) < 1e-4  # the DC term is kept
    out = np.abs(cplx)
    assert 0.1 < out[0, 10, 15] < 0.5 and 0.5 < out[0, 10, 16] < 0.9  # the edge is no longer a step
    assert out.max() > 1.03  # Gibbs ringing
    np.testing.assert_allclose(phantom._truncate_kspace(img, (32, 32)), img)


def test_diffuse_signal_change_replaces_more_than_three_quarters_of_the_body():
    base = dict(_BASE_OFF, absence_of_collapse=1, homogeneous_marrow_signal=1, diffuse_signal_change=1)
    p = demo.plan_patient(8, "demo_008", "malignant", features=base)
    anat, g = p.anatomy, p.grids["t2"]
    pts = np.concatenate([g.points(k)[0] for k in range(g.shape[0])])
    x, v, s = phantom.straighten(anat, pts[..., 0], pts[..., 1], pts[..., 2])
    lab, _ = phantom.label_points(anat, phantom.layout(anat), x, v, s)
    inner = lab[phantom.lesion_body_mask(anat, pts)]
    replaced, fatty = np.sum(inner == T["replaced"]), np.sum(inner == T["marrow"])
    assert fatty > 0 and replaced / (replaced + fatty) > 0.75
