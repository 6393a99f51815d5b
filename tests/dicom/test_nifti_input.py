"""NIfTI input: a converted file becomes the same volume + sidecar contract as a DICOM series, or a
clear refusal that names the file and the fix, with nothing written."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from spinefx.dicom.convert import convert_series
from spinefx.dicom.nifti_input import bids_sidecar, import_nifti
from spinefx.errors import SpinefxError

from dicom_fixtures import dcm2niix_binary, rotation, run_dcm2niix, structured_volume, write_fixture


def _sagittal_affine(spacing=(0.8, 0.7, 4.0), tilt=(0.0, 0.0)) -> np.ndarray:
    """RAS affine of a sagittal stack: i anterior->posterior, j inferior->superior, k the L-R normal."""
    rot = rotation(*tilt)
    lps_dirs = rot @ np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])  # columns i, j, k
    ras = np.diag([-1.0, -1.0, 1.0]) @ lps_dirs * np.asarray(spacing)
    affine = np.eye(4)
    affine[:3, :3] = ras
    affine[:3, 3] = (12.0, -40.5, 7.25)
    return affine


def _write(path: Path, data: np.ndarray, affine: np.ndarray, **header) -> Path:
    img = nib.Nifti1Image(data, affine)
    for key, value in header.items():
        img.header[key] = value
    nib.save(img, str(path))
    return path


@pytest.mark.skipif(dcm2niix_binary() is None, reason="dcm2niix not installed")
def test_dcm2niix_file_gives_the_dicom_volume_in_the_files_own_grid(tmp_path: Path) -> None:
    """Oracle: the DICOM series through spinefx's converter, and the same series through dcm2niix then
    import_nifti, put equal values at equal points of the scanner; the NIfTI grid is kept as stored."""
    series = write_fixture(tmp_path / "dicom", (9, 40, 32), tilt_deg=(6.0, 4.0), slope=0.5, intercept=-20)
    ref = convert_series(series.folder, tmp_path / "ref.nii.gz", tmp_path / "ref.json")
    (d2n,) = run_dcm2niix(series.folder, tmp_path / "d2n", compress=True)
    meta = import_nifti(
        d2n,
        tmp_path / "t2.nii.gz",
        tmp_path / "t2.json",
        patient="P1",
        expect_plane="sagittal",
        lesion_slice=8,
    )
    assert json.loads((tmp_path / "t2.json").read_text()) == meta
    assert meta["source"] == "nifti" and meta["plane"] == "sagittal"
    assert meta["instance_numbers"] == list(range(1, 10)) and meta["n_slices"] == 9
    ours, theirs, refimg = (nib.load(str(p)) for p in (tmp_path / "t2.nii.gz", d2n, tmp_path / "ref.nii.gz"))
    np.testing.assert_allclose(ours.affine, theirs.affine, atol=1e-4)  # the grid is the file's, as stored
    np.testing.assert_allclose(np.asarray(meta["affine_ras"]), ours.affine, atol=1e-4)
    np.testing.assert_array_equal(ours.get_fdata(), theirs.get_fdata())
    # Map every voxel of our output to the DICOM route's voxel at the same point: a signed permutation.
    to_ref = np.linalg.inv(refimg.affine) @ ours.affine
    assert np.allclose(to_ref[:3, :3], np.round(to_ref[:3, :3]), atol=1e-3)
    idx = np.indices(ours.shape).reshape(3, -1)
    mapped = np.rint(to_ref[:3, :3] @ idx + to_ref[:3, 3:]).astype(int)
    np.testing.assert_allclose(
        refimg.get_fdata()[tuple(mapped)], ours.get_fdata()[tuple(idx)], rtol=1e-6, atol=1e-3
    )
    assert sorted(meta["spacing"]) == pytest.approx(sorted(ref["spacing"]), abs=1e-4)


def test_values_dtype_and_geometry_follow_nibabel(tmp_path: Path) -> None:
    """scl_slope/inter applied, whole numbers kept int16, others float32; the affine as nibabel reads it."""
    affine = _sagittal_affine(tilt=(10.0, -5.0))
    data = structured_volume((30, 24, 7), seed=2).astype(np.int16)  # (i, j, k)
    src = _write(tmp_path / "int.nii.gz", data, affine)
    meta = import_nifti(src, tmp_path / "a.nii.gz", tmp_path / "a.json", expect_plane="sagittal")
    out = nib.load(str(tmp_path / "a.nii.gz"))
    assert out.get_data_dtype() == np.int16 and meta["data_type"] == "16-bit signed integer"
    np.testing.assert_array_equal(np.asarray(out.dataobj), data)
    np.testing.assert_allclose(out.affine, affine, atol=1e-4)
    assert meta["size"] == [30, 24, 7] and meta["spacing"] == pytest.approx([0.8, 0.7, 4.0], abs=1e-5)

    scaled = _write(tmp_path / "scaled.nii", data.astype(np.uint16), affine, scl_slope=0.25, scl_inter=3.0)
    import_nifti(scaled, tmp_path / "b.nii.gz", tmp_path / "b.json")
    out = nib.load(str(tmp_path / "b.nii.gz"))
    assert out.get_data_dtype() == np.float32
    np.testing.assert_allclose(out.get_fdata(), nib.load(str(scaled)).get_fdata(), rtol=1e-6)

    big = _write(tmp_path / "big.nii.gz", (data.astype(np.uint16) + 40000), affine)
    assert import_nifti(big, tmp_path / "c.nii.gz", tmp_path / "c.json")["data_type"] == "32-bit float"
    np.testing.assert_array_equal(nib.load(str(tmp_path / "c.nii.gz")).get_fdata(), data + 40000.0)

    single_time = _write(tmp_path / "t1.nii.gz", data[..., None], affine)  # x, y, z, t=1 counts as 3-D
    assert import_nifti(single_time, tmp_path / "d.nii.gz", tmp_path / "d.json")["size"] == [30, 24, 7]


def _reoriented_to_ras(data: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    img = nib.as_closest_canonical(nib.Nifti1Image(data, _sagittal_affine()))
    return np.asarray(img.dataobj), img.affine


def _no_orientation(path: Path, data: np.ndarray) -> Path:
    img = nib.Nifti1Image(data, None)
    img.header.set_qform(None, code=0)
    img.header.set_sform(None, code=0)
    nib.save(img, str(path))
    return path


_DATA = structured_volume((20, 16, 5), seed=4).astype(np.int16)


@pytest.mark.parametrize(
    ("make", "kwargs", "needles"),
    [
        (lambda p: p, {}, ["does not exist", "t1_nifti/t2_nifti"]),
        (lambda p: p.write_bytes(b"not a nifti at all" * 40) and p, {}, ["cannot be read as NIfTI"]),
        (
            lambda p: _write(p, np.stack([_DATA, _DATA], axis=-1), _sagittal_affine()),
            {},
            ["4-D", "20x16x5x2", "split a 4-D file"],
        ),
        (lambda p: _write(p, _DATA[:, :, 0], _sagittal_affine()), {}, ["2-D", "one 3-D volume"]),
        (
            lambda p: _write(p, _DATA, np.diag([0.7, 0.7, 4.0, 1.0])),  # k along S-I: axial slices
            {"expect_plane": "sagittal"},
            ["superior-inferior", "axial, not sagittal", "as it was acquired"],
        ),
        (
            lambda p: _write(p, *_reoriented_to_ras(_DATA)),  # sagittal data, slices moved to axis 0
            {"expect_plane": "sagittal"},
            ["not sagittal", "voxel axis 0", "reoriented"],
        ),
        (lambda p: _write(p, _DATA, _sagittal_affine()), {"lesion_slice": 5}, ["lesion_slice 5", "0..4"]),
        (lambda p: _write(p, _DATA, _sagittal_affine()), {"lesion_slice": -1}, ["lesion_slice -1"]),
        (lambda p: _no_orientation(p, _DATA), {}, ["no orientation", "dcm2niix"]),
    ],
    ids=[
        "missing",
        "garbage",
        "4-D",
        "2-D",
        "axial",
        "RAS-reoriented",
        "slice-high",
        "slice-neg",
        "no-ori",
    ],
)
def test_refusals_name_the_file_and_write_nothing(
    tmp_path: Path, make, kwargs: dict, needles: list[str]
) -> None:
    src = tmp_path / "in.nii.gz"
    make(src)
    with pytest.raises(SpinefxError) as info:
        import_nifti(
            src, tmp_path / "out" / "t2.nii.gz", tmp_path / "out" / "t2.json", patient="P7", **kwargs
        )
    message = str(info.value)
    for needle in needles:
        assert needle in message
    assert "P7" in message and str(src) in message
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_bids_sidecar_fills_the_acquisition_facts_and_nothing_else(tmp_path: Path) -> None:
    """TR/TE from seconds to ms, lists joined as DICOM does; what is not allow-listed stays out."""
    src = _write(tmp_path / "sub-01_T2w.nii.gz", _DATA, _sagittal_affine())
    bids = tmp_path / "sub-01_T2w.json"
    assert bids_sidecar(src) == bids and bids_sidecar(tmp_path / "x.nii") == tmp_path / "x.json"
    facts = {
        "RepetitionTime": 3.2,
        "EchoTime": 0.09,
        "MagneticFieldStrength": 1.5,
        "SeriesNumber": 4,
        "SeriesDescription": "SAG T2 FSE",
        "ImageType": ["ORIGINAL", "PRIMARY", "M"],
        "InstitutionName": "ST. EXAMPLE HOSPITAL",
        "AcquisitionDateTime": "2021-03-04T10:11:12",
        "SliceThickness": "4",  # not a number: left out rather than guessed
    }
    bids.write_text(json.dumps(facts))
    meta = import_nifti(src, tmp_path / "o.nii.gz", tmp_path / "o.json", bids_json=bids)
    assert meta["repetition_time"] == pytest.approx(3200.0) and meta["echo_time"] == pytest.approx(90.0)
    assert meta["field_strength"] == 1.5 and meta["series_number"] == 4
    assert meta["series_description"] == "SAG T2 FSE" and meta["image_type"] == "ORIGINAL\\PRIMARY\\M"
    assert meta["slice_thickness"] is None
    written = (tmp_path / "o.json").read_text()
    assert "HOSPITAL" not in written and "2021" not in written
    bids.write_text("{not json")
    meta = import_nifti(src, tmp_path / "o.nii.gz", tmp_path / "o.json", bids_json=bids)
    assert meta["repetition_time"] is None and any("not read" in n for n in meta["notes"])
