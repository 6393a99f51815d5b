"""DICOM -> NIfTI conversion: voxels and world geometry equal to dcm2niix's, and every bad series
case a clear SpinefxError (or a warning where the volume is still right)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from spinefx.dicom.convert import ConversionWarning, affine_ras, convert_series, read_series  # noqa: E402
from spinefx.dicom.write import SeriesGeometry, make_uid  # noqa: E402
from spinefx.errors import SpinefxError  # noqa: E402

from dicom_fixtures import (  # noqa: E402
    PHI,
    dcm2niix_binary,
    gunzip_to,
    make_info,
    philips_enhanced_mr,
    run_dcm2niix,
    sagittal_geometry,
    structured_volume,
    write_enhanced_mr,
    write_fixture,
)

needs_dcm2niix = pytest.mark.skipif(dcm2niix_binary() is None, reason="dcm2niix binary not installed")


def _canonical(path: Path) -> tuple[np.ndarray, np.ndarray]:
    img = nib.as_closest_canonical(nib.load(str(path)))
    return np.asarray(img.get_fdata(dtype=np.float64)), img.affine


def _compare_with_dcm2niix(dicom_dir: Path, tmp: Path, *, atol_mm: float = 1e-3) -> dict:
    """Convert with both tools; same voxel values and same world affine (RAS, canonical order)."""
    meta = convert_series(
        dicom_dir, tmp / "ours" / "vol.nii.gz", tmp / "ours" / "vol.json", patient="test_001"
    )
    theirs = run_dcm2niix(dicom_dir, tmp / "dcm2niix")
    assert len(theirs) == 1, f"dcm2niix wrote {theirs}"
    ours_data, ours_affine = _canonical(tmp / "ours" / "vol.nii.gz")
    ref_data, ref_affine = _canonical(theirs[0])
    assert ours_data.shape == ref_data.shape
    np.testing.assert_allclose(ours_affine, ref_affine, atol=atol_mm, rtol=0)
    np.testing.assert_allclose(ours_data, ref_data, rtol=1e-5, atol=1e-3)
    return meta


def _check_against_written(dicom_dir: Path, fx) -> tuple[sitk.Image, dict]:
    """Voxel (x=column, y=row, z=k along the normal) must hold exactly what was written there."""
    image, meta = read_series(dicom_dir)
    np.testing.assert_allclose(sitk.GetArrayFromImage(image), fx.volume, rtol=0, atol=1e-3)
    np.testing.assert_allclose(image.GetOrigin(), fx.geometry.slice_position(0), atol=1e-4)
    assert meta["instance_numbers"] == fx.instance_numbers
    # every voxel centre lands where the DICOM geometry puts it
    g = fx.geometry
    idx = (5, 7, 3)  # column, row, slice
    expected = (
        np.asarray(g.origin)
        + idx[0] * g.pixel_spacing[1] * np.asarray(g.row_dir)
        + idx[1] * g.pixel_spacing[0] * np.asarray(g.col_dir)
        + idx[2] * g.slice_spacing * g.slice_normal()
    )
    np.testing.assert_allclose(image.TransformIndexToPhysicalPoint(idx), expected, atol=1e-4)
    return image, meta


# ---------------------------------------------------------------------------------------------
# Oracle: dcm2niix
# ---------------------------------------------------------------------------------------------

VARIANTS = {
    "shuffled_names": {"shuffle_names": True},
    "reversed_instances": {"reverse_instances": True},
    "oblique_sagittal": {"tilt_deg": (15.0, 4.0)},
    "rescale_float": {"slope": 2.5, "intercept": -100.0},
    "rescale_integral": {"slope": 2.0, "intercept": -10.0},
    "t1_matrix_192x160": {"shape": (11, 192, 160), "pixel_spacing": (0.9, 0.9), "shuffle_names": True},
    "t2_matrix_224x192": {"shape": (13, 224, 192), "pixel_spacing": (0.7, 0.75), "reverse_instances": True},
}


@needs_dcm2niix
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_matches_dcm2niix(tmp_path: Path, variant: str) -> None:
    kw = dict(VARIANTS[variant])
    shape = kw.pop("shape", (10, 48, 40))
    fx = write_fixture(tmp_path / "dicom", shape, seed=len(variant), **kw)
    _check_against_written(tmp_path / "dicom", fx)
    meta = _compare_with_dcm2niix(tmp_path / "dicom", tmp_path)
    assert meta["size"] == [shape[2], shape[1], shape[0]]
    assert meta["instance_numbers"] == fx.instance_numbers
    expected_type = (
        "16-bit signed integer" if kw.get("slope", 1.0) == int(kw.get("slope", 1.0)) else "32-bit float"
    )
    assert meta["data_type"] == expected_type


@needs_dcm2niix
def test_t1_and_t2_of_one_study_share_world_space(tmp_path: Path) -> None:
    """Different matrices and pixel sizes over the same anatomy: both converters agree on each, and a
    world point maps to the same place in both volumes."""
    t1 = write_fixture(
        tmp_path / "t1",
        (11, 192, 160),
        pixel_spacing=(1.0, 1.0),
        tilt_deg=(15.0, 0.0),
        info=make_info("T1 SAG TSE", 3, repetition_time=500.0, echo_time=10.0),
    )
    t2 = write_fixture(
        tmp_path / "t2",
        (11, 224, 192),
        pixel_spacing=(192 / 224, 160 / 192),
        tilt_deg=(15.0, 0.0),
        info=make_info("T2 SAG TSE", 4),
        shuffle_names=True,
    )
    m1 = _compare_with_dcm2niix(t1.folder, tmp_path / "c1")
    m2 = _compare_with_dcm2niix(t2.folder, tmp_path / "c2")
    assert (m1["repetition_time"], m1["echo_time"]) == (500.0, 10.0)
    assert (m2["repetition_time"], m2["echo_time"]) == (3000.0, 100.0)
    # the FOV centres coincide (the fixtures centre both stacks on the same point)
    c1 = np.asarray(m1["affine_ras"]) @ np.r_[(np.asarray(m1["size"]) - 1) / 2, 1]
    c2 = np.asarray(m2["affine_ras"]) @ np.r_[(np.asarray(m2["size"]) - 1) / 2, 1]
    np.testing.assert_allclose(c1, c2, atol=1e-3)


@needs_dcm2niix
def test_enhanced_multiframe_matches_dcm2niix(tmp_path: Path) -> None:
    """Enhanced MR with frames stored out of spatial order is supported and sorted by position."""
    shape = (9, 40, 32)
    geometry = sagittal_geometry(shape, tilt_deg=(15.0, 5.0))
    volume = np.rint(structured_volume(shape, 3))
    (tmp_path / "dicom").mkdir()
    order = [3, 1, 8, 0, 2, 7, 5, 4, 6]
    write_enhanced_mr(tmp_path / "dicom" / "enhanced.dcm", volume, geometry, make_info(), frame_order=order)
    image, meta = read_series(tmp_path / "dicom")
    np.testing.assert_array_equal(sitk.GetArrayFromImage(image), volume)
    assert meta["multi_frame"] and meta["instance_numbers_are_frame_numbers"]
    assert meta["instance_numbers"] == [order.index(k) + 1 for k in range(shape[0])]
    _compare_with_dcm2niix(tmp_path / "dicom", tmp_path)


def test_philips_enhanced_mr_orientation(tmp_path: Path) -> None:
    """The real Philips enhanced MR shipped with nibabel: our geometry equals the per-frame DICOM
    geometry, nibabel's own DICOM reader, and dcm2niix."""
    src = philips_enhanced_mr()
    if src is None:
        pytest.skip("nibabel wheel does not ship nicom/tests/data/philips_mprage.dcm.gz")
    dcm = gunzip_to(src, tmp_path / "dicom" / "mprage.dcm")
    image, meta = read_series(dcm.parent)
    ds = pydicom.dcmread(dcm, stop_before_pixels=True)
    frames = ds.PerFrameFunctionalGroupsSequence
    positions = np.array([f.PlanePositionSequence[0].ImagePositionPatient for f in frames], float)
    iop = np.array(frames[0].PlaneOrientationSequence[0].ImageOrientationPatient, float)
    normal = np.cross(iop[:3], iop[3:])
    first = positions[np.argmin(positions @ normal)]
    assert meta["size"] == [int(ds.Columns), int(ds.Rows), int(ds.NumberOfFrames)]
    np.testing.assert_allclose(image.GetOrigin(), first, atol=1e-6)
    direction = np.asarray(image.GetDirection()).reshape(3, 3)
    np.testing.assert_allclose(direction[:, 0], iop[:3], atol=1e-6)
    np.testing.assert_allclose(direction[:, 1], iop[3:], atol=1e-6)
    np.testing.assert_allclose(direction[:, 2], normal, atol=1e-6)
    assert meta["echo_time"] == pytest.approx(3.513)
    assert meta["repetition_time"] == pytest.approx(7.5693, abs=1e-3)
    assert meta["field_strength"] == 3.0
    # nibabel's DICOM reader (its affine maps index (row, column, slice) to LPS and may run the
    # slices the other way): the 8 corners of the volume must be the same world points.
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from nibabel.nicom import dicomwrappers

        nib_affine_lps = dicomwrappers.wrapper_from_data(ds).affine
    n_r, n_c, n_k = int(ds.Rows) - 1, int(ds.Columns) - 1, int(ds.NumberOfFrames) - 1
    corners = [(r, c, k) for r in (0, n_r) for c in (0, n_c) for k in (0, n_k)]
    ours = np.array([image.TransformIndexToPhysicalPoint((c, r, k)) for r, c, k in corners])
    theirs = np.array([(nib_affine_lps @ np.array([r, c, k, 1.0]))[:3] for r, c, k in corners])
    dist = np.linalg.norm(ours[:, None, :] - theirs[None, :, :], axis=2)
    # nibabel steps slices by the nominal 1 mm, not the measured positions: 1.3e-3 mm apart at the far end
    assert np.all(dist.min(axis=1) < 5e-3), dist.min(axis=1)
    # the DICOM truth itself: every frame's ImagePositionPatient is where our slice k sits
    order = np.argsort(positions @ normal)
    ours_k = np.array([image.TransformIndexToPhysicalPoint((0, 0, k)) for k in range(len(order))])
    np.testing.assert_allclose(ours_k, positions[order], atol=1e-4)
    if dcm2niix_binary() is not None:
        _compare_with_dcm2niix(dcm.parent, tmp_path)


# ---------------------------------------------------------------------------------------------
# Sidecar and files
# ---------------------------------------------------------------------------------------------


def test_sidecar_and_nifti_carry_no_phi(tmp_path: Path) -> None:
    fx = write_fixture(tmp_path / "dicom", (8, 32, 24), tilt_deg=(10.0, 0.0))
    meta = convert_series(
        fx.folder, tmp_path / "out" / "t2.nii.gz", tmp_path / "out" / "t2.json", patient="demo_007"
    )
    text = (tmp_path / "out" / "t2.json").read_text()
    assert json.loads(text) == meta
    blob = (tmp_path / "out" / "t2.nii.gz").read_bytes()
    import gzip

    raw = gzip.decompress(blob)
    for value in PHI.values():
        for part in value.split("^"):
            assert part.lower() not in text.lower(), f"PHI {part!r} leaked into the sidecar"
            assert part.encode() not in raw, f"PHI {part!r} leaked into the NIfTI header"
    for key in ("size", "spacing", "origin_lps", "direction_lps", "affine_ras", "instance_numbers"):
        assert key in meta
    assert meta["repetition_time"] == 3000.0 and meta["echo_time"] == 100.0
    assert meta["field_strength"] == 1.5
    assert meta["slice_thickness"] == pytest.approx(3.6)
    assert meta["series_description"] == "T2 SAG TSE"
    assert meta["n_files"] == 8
    nii = nib.load(str(tmp_path / "out" / "t2.nii.gz"))
    np.testing.assert_allclose(nii.affine, np.asarray(meta["affine_ras"]), atol=1e-4)
    assert not list((tmp_path / "out").glob(".*tmp*")), "temporary files left behind"


def test_affine_ras_flips_lps() -> None:
    img = sitk.Image(4, 5, 6, sitk.sitkInt16)
    img.SetSpacing((0.5, 0.7, 4.0))
    img.SetOrigin((10.0, 20.0, 30.0))
    aff = affine_ras(img)
    np.testing.assert_allclose(aff[:3, 3], [-10.0, -20.0, 30.0])
    np.testing.assert_allclose(np.diag(aff)[:3], [-0.5, -0.7, 4.0])


def test_series_uid_picks_one_of_several(tmp_path: Path) -> None:
    a = write_fixture(tmp_path / "d", (6, 20, 16), info=make_info("T1 SAG", 3), name_prefix="A")
    b = write_fixture(tmp_path / "d", (7, 20, 16), info=make_info("T2 SAG", 4), name_prefix="B", seed=5)
    image, meta = read_series(tmp_path / "d", series_uid=b.series_uid)
    assert meta["n_files"] == 7 and meta["series_description"] == "T2 SAG"
    np.testing.assert_allclose(sitk.GetArrayFromImage(image), b.volume)
    image, _ = read_series(tmp_path / "d", series_uid=a.series_uid)
    assert image.GetSize()[2] == 6


def test_non_dicom_files_are_skipped_with_warning(tmp_path: Path) -> None:
    fx = write_fixture(tmp_path / "d", (6, 20, 16))
    (tmp_path / "d" / "README.txt").write_text("exported by PACS\n")
    (tmp_path / "d" / ".DS_Store").write_bytes(b"\0\1\2" * 50)
    with pytest.warns(ConversionWarning, match="non-DICOM"):
        image, meta = read_series(tmp_path / "d", patient="demo_001")
    np.testing.assert_allclose(sitk.GetArrayFromImage(image), fx.volume)
    assert any("non-DICOM" in n for n in meta["notes"])


# ---------------------------------------------------------------------------------------------
# Bad series: one test each
# ---------------------------------------------------------------------------------------------


def _raises(folder: Path, match: str, **kw) -> SpinefxError:
    with pytest.raises(SpinefxError, match=match) as info:
        read_series(folder, patient="demo_042", **kw)
    err = info.value
    assert err.patient == "demo_042" and err.fix, "error must name the patient and a fix"
    assert "demo_042" in str(err)
    return err


def test_error_several_series_lists_them(tmp_path: Path) -> None:
    a = write_fixture(tmp_path / "d", (6, 20, 16), info=make_info("T1 SAG", 3), name_prefix="A")
    b = write_fixture(tmp_path / "d", (7, 20, 16), info=make_info("T2 SAG", 4), name_prefix="B")
    err = _raises(tmp_path / "d", "2 series and none was chosen")
    text = str(err)
    assert a.series_uid in text and b.series_uid in text
    assert "'T1 SAG'" in text and "'T2 SAG'" in text
    assert "files=6" in text and "files=7" in text
    assert str(tmp_path / "d") in text


def test_error_unknown_series_uid(tmp_path: Path) -> None:
    write_fixture(tmp_path / "d", (6, 20, 16))
    _raises(tmp_path / "d", "is not in the folder", series_uid=make_uid("nope"))


def test_error_missing_slice(tmp_path: Path) -> None:
    fx = write_fixture(tmp_path / "d", (10, 20, 16), shuffle_names=True)
    fx.paths[4].unlink()  # slice k=4 (names are shuffled, so this is a middle slice by position)
    err = _raises(tmp_path / "d", "non-uniform slice spacing")
    assert "1 slice(s) missing" in str(err) and "8.000 mm" in str(err)


def test_error_duplicate_positions(tmp_path: Path) -> None:
    fx = write_fixture(tmp_path / "d", (6, 20, 16))
    shutil.copy(fx.paths[2], tmp_path / "d" / "copy_of_slice3.dcm")
    _raises(tmp_path / "d", "duplicate slice position")


def test_error_mixed_orientations(tmp_path: Path) -> None:
    info = make_info()
    info.series_uid = make_uid("one-series")
    write_fixture(tmp_path / "d", (6, 20, 16), info=info, name_prefix="A")
    write_fixture(tmp_path / "d", (3, 20, 16), info=info, name_prefix="B", tilt_deg=(0.0, 90.0))
    _raises(tmp_path / "d", "mixes slice orientations")


def test_error_mixed_matrix_sizes(tmp_path: Path) -> None:
    info = make_info()
    info.series_uid = make_uid("one-series")
    write_fixture(tmp_path / "d", (6, 20, 16), info=info, name_prefix="A")
    write_fixture(tmp_path / "d", (2, 24, 16), info=info, name_prefix="B")
    _raises(tmp_path / "d", "mixes matrix sizes")


def _write_localizer(folder: Path) -> None:
    info = make_info("3-plane loc", 1)
    paths = write_fixture(folder, (3, 20, 16), info=info, name_prefix="LOC").paths
    for p in paths:
        ds = pydicom.dcmread(p)
        ds.ImageType = ["ORIGINAL", "PRIMARY", "LOCALIZER"]
        ds.save_as(p)


def test_error_localizer_only(tmp_path: Path) -> None:
    _write_localizer(tmp_path / "d")
    _raises(tmp_path / "d", "localizer")


def test_localizer_beside_series_is_ignored_with_warning(tmp_path: Path) -> None:
    _write_localizer(tmp_path / "d")
    fx = write_fixture(tmp_path / "d", (6, 20, 16), info=make_info("T2 SAG", 4), seed=2)
    with pytest.warns(ConversionWarning, match="localizer"):
        image, _ = read_series(tmp_path / "d")
    np.testing.assert_allclose(sitk.GetArrayFromImage(image), fx.volume)


def test_error_multiframe_with_several_volumes(tmp_path: Path) -> None:
    shape = (5, 20, 16)
    (tmp_path / "d").mkdir()
    write_enhanced_mr(
        tmp_path / "d" / "multi.dcm",
        structured_volume(shape),
        sagittal_geometry(shape),
        make_info(),
        n_volumes=2,
    )
    err = _raises(tmp_path / "d", "duplicate slice position")
    assert "frame" in str(err)


def test_error_multiframe_mixed_with_single_frames(tmp_path: Path) -> None:
    info = make_info()
    info.series_uid = make_uid("mixed")
    fx = write_fixture(tmp_path / "d", (5, 20, 16), info=info)
    write_enhanced_mr(tmp_path / "d" / "multi.dcm", fx.volume, fx.geometry, info)
    _raises(tmp_path / "d", "multi-frame")


def test_error_truncated_pixel_data_names_file(tmp_path: Path) -> None:
    fx = write_fixture(tmp_path / "d", (6, 20, 16))
    data = fx.paths[3].read_bytes()
    fx.paths[3].write_bytes(data[:-200])
    err = _raises(tmp_path / "d", "truncated or corrupt")
    assert err.path == str(fx.paths[3])


def test_error_truncated_header_names_file(tmp_path: Path) -> None:
    fx = write_fixture(tmp_path / "d", (6, 20, 16))
    data = fx.paths[1].read_bytes()
    fx.paths[1].write_bytes(data[:700])
    err = _raises(tmp_path / "d", "truncated or corrupt")
    assert err.path == str(fx.paths[1])


def test_error_sheared_stack(tmp_path: Path) -> None:
    g = sagittal_geometry((6, 20, 16))
    n = np.cross(g.row_dir, g.col_dir) + 0.2 * np.asarray(g.row_dir)
    sheared = SeriesGeometry(
        g.origin, g.row_dir, g.col_dir, g.pixel_spacing, 4.0, normal=tuple(n / np.linalg.norm(n))
    )
    write_fixture(tmp_path / "d", (6, 20, 16), geometry=sheared)
    _raises(tmp_path / "d", "shifted in-plane")


def test_error_missing_or_empty_folder(tmp_path: Path) -> None:
    _raises(tmp_path / "nowhere", "folder not found")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("nothing here")
    with pytest.warns(ConversionWarning):
        _raises(tmp_path / "empty", "no DICOM image files")


def test_error_non_sagittal_series_when_sagittal_expected(tmp_path: Path) -> None:
    """An axial series handed in as the T2W (a common export mix-up) is refused, naming the plane."""
    shape = (10, 32, 32)
    axial = SeriesGeometry(
        origin=(-16.0, -16.0, 0.0),
        row_dir=(1.0, 0.0, 0.0),
        col_dir=(0.0, 1.0, 0.0),
        pixel_spacing=(1.0, 1.0),
        slice_spacing=4.0,
    )
    write_fixture(tmp_path / "ax", shape, geometry=axial)
    image, meta = read_series(tmp_path / "ax")
    assert meta["plane"] == "axial"
    with pytest.raises(SpinefxError, match=r"P7.*the series is axial.*not sagittal.*Fix: point the sheet"):
        read_series(tmp_path / "ax", patient="P7", expect_plane="sagittal")
    write_fixture(tmp_path / "sag", shape, tilt_deg=(0.0, 20.0))
    assert read_series(tmp_path / "sag", expect_plane="sagittal")[1]["plane"] == "sagittal"
