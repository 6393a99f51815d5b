"""What is not a plain stack is refused with the file and the fix, or (echoes) split as configured;
the echo spinefx converts equals dcm2niix's volume of that echo."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from spinefx.dicom.convert import convert_series, read_series
from spinefx.dicom.write import make_uid
from spinefx.errors import SpinefxError

from dicom_fixtures import dcm2niix_binary, make_info, run_dcm2niix, write_fixture

SHAPE = (6, 20, 16)


def _edit(paths: list[Path], **values) -> None:
    for p in paths:
        ds = pydicom.dcmread(p)
        for key, value in values.items():
            setattr(ds, key, value)
        ds.save_as(p)


def _refused(folder: Path, match: str, **kw) -> SpinefxError:
    with pytest.raises(SpinefxError, match=match) as info:
        read_series(folder, patient="p3", **kw)
    assert info.value.patient == "p3" and info.value.fix and info.value.path
    return info.value


def _two_echoes(folder: Path):
    info = make_info("T2 SAG ME", 5)
    info.series_uid = make_uid("multi-echo")
    e1 = write_fixture(folder, SHAPE, info=info, name_prefix="E1_", seed=1)
    e2 = write_fixture(folder, SHAPE, info=info, name_prefix="E2_", seed=2)
    _edit(e1.paths, EchoNumbers=1, EchoTime=20.0)
    _edit(e2.paths, EchoNumbers=2, EchoTime=90.0)
    for k, p in enumerate(e2.paths):  # distinct instances, as a scanner numbers them
        _edit([p], InstanceNumber=len(e1.paths) + k + 1, SOPInstanceUID=make_uid("e2", k))
    return e1, e2


def test_mosaic_is_refused_naming_the_slice_count(tmp_path: Path) -> None:
    fx = write_fixture(tmp_path / "d", (1, 48, 48))
    ds = pydicom.dcmread(fx.paths[0])
    ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "ND", "MOSAIC"]
    ds.add_new((0x0019, 0x0010), "LO", "SIEMENS CSA HEADER")
    ds.add_new((0x0019, 0x100A), "US", 9)
    ds.save_as(fx.paths[0])
    err = _refused(tmp_path / "d", "MOSAIC image holding 9 slices")
    assert err.path == str(fx.paths[0]) and "dcm2niix" in err.fix


def test_multi_echo_without_choice_lists_the_echoes(tmp_path: Path) -> None:
    _two_echoes(tmp_path / "d")
    err = _refused(tmp_path / "d", "holds 2 echoes")
    assert "echo 1 (TE 20.0 ms, 6 images)" in str(err) and "echo 2 (TE 90.0 ms, 6 images)" in str(err)
    assert "convert: {echo: N}" in err.fix
    _refused(tmp_path / "d", "convert.echo 3 is not one of them", echo=3)


def test_multi_echo_split_by_echo_number(tmp_path: Path) -> None:
    e1, e2 = _two_echoes(tmp_path / "d")
    for echo, fx in ((1, e1), (2, e2)):
        image, meta = read_series(tmp_path / "d", echo=echo)
        np.testing.assert_array_equal(sitk.GetArrayFromImage(image), fx.volume)
        assert meta["echo_time"] == (20.0 if echo == 1 else 90.0)
        assert any(f"took echo {echo}" in n for n in meta["notes"])


@pytest.mark.skipif(dcm2niix_binary() is None, reason="dcm2niix binary not installed")
def test_chosen_echo_equals_dcm2niix(tmp_path: Path) -> None:
    _two_echoes(tmp_path / "d")
    theirs = run_dcm2niix(tmp_path / "d", tmp_path / "ref", extra=("-f", "%s_e%e"))
    assert len(theirs) == 2, theirs
    for echo, ref in enumerate(theirs, start=1):
        assert ref.name.endswith(f"_e{echo}.nii")
        convert_series(tmp_path / "d", tmp_path / f"o{echo}.nii.gz", tmp_path / f"o{echo}.json", echo=echo)
        ours = nib.as_closest_canonical(nib.load(str(tmp_path / f"o{echo}.nii.gz")))
        ref_img = nib.as_closest_canonical(nib.load(str(ref)))
        np.testing.assert_allclose(ours.affine, ref_img.affine, atol=1e-3)
        np.testing.assert_array_equal(ours.get_fdata(), ref_img.get_fdata())


def test_echo_asked_of_a_single_echo_series(tmp_path: Path) -> None:
    fx = write_fixture(tmp_path / "d", SHAPE)
    _edit(fx.paths, EchoNumbers=1)
    _refused(tmp_path / "d", "only echo 1", echo=2)
    image, _ = read_series(tmp_path / "d", echo=1)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(image), fx.volume)


def test_derived_series_refused_unless_allowed(tmp_path: Path) -> None:
    fx = write_fixture(tmp_path / "d", SHAPE)
    _edit(fx.paths, ImageType=["DERIVED", "SECONDARY", "MPR"])
    err = _refused(tmp_path / "d", r"DERIVED \(ImageType DERIVED\\SECONDARY\\MPR\)")
    assert "allow_derived" in err.fix
    image, _ = read_series(tmp_path / "d", allow_derived=True)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(image), fx.volume)


def test_secondary_capture_refused(tmp_path: Path) -> None:
    fx = write_fixture(tmp_path / "d", SHAPE)
    _edit(fx.paths, SOPClassUID="1.2.840.10008.5.1.4.1.1.7")
    for p in fx.paths:
        ds = pydicom.dcmread(p)
        ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
        ds.save_as(p)
    _refused(tmp_path / "d", "secondary-capture")


def test_duplicate_instance_numbers_refused_naming_both_files(tmp_path: Path) -> None:
    fx = write_fixture(tmp_path / "d", SHAPE)
    _edit([fx.paths[3]], InstanceNumber=fx.instance_numbers[2])
    err = _refused(tmp_path / "d", f"InstanceNumber {fx.instance_numbers[2]} is used by")
    assert fx.paths[2].name in str(err) and fx.paths[3].name in str(err)


def test_mixed_image_types_refused(tmp_path: Path) -> None:
    fx = write_fixture(tmp_path / "d", SHAPE)
    _edit(fx.paths[:2], ImageType=["ORIGINAL", "PRIMARY", "P", "NONE"])
    err = _refused(tmp_path / "d", "mixes image types")
    assert r"ORIGINAL\PRIMARY\P\NONE: 2 image(s)" in str(err)
    assert err.path in {str(p) for p in fx.paths[:2]}
