"""The converter's NIfTI writer: what SimpleITK and nibabel read back equals what SimpleITK's writer
would have written (voxels, spacing, origin, direction), for proper and improper rotations."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from spinefx.dicom.convert import affine_ras
from spinefx.dicom.nifti import write_nifti

from dicom_fixtures import rotation


@pytest.mark.parametrize("dtype", [np.int16, np.float32])
@pytest.mark.parametrize("flip", [False, True])
@pytest.mark.parametrize("name", ["v.nii.gz", "v.nii"])
def test_matches_simpleitk(tmp_path: Path, dtype, flip: bool, name: str) -> None:
    rng = np.random.default_rng(1)
    volume = (rng.random((5, 7, 6)) * 1000 - 200).astype(dtype)
    direction = rotation(17.0, 8.0)
    if flip:  # DICOM's row x col normal can give a left-handed voxel frame in RAS
        direction[:, 2] *= -1
    image = sitk.GetImageFromArray(volume)
    image.SetSpacing((0.7, 0.8, 4.0))
    image.SetOrigin((10.0, -20.5, 33.25))
    image.SetDirection(tuple(direction.ravel()))
    write_nifti(tmp_path / name, volume, affine_ras(image))
    sitk.WriteImage(image, str(tmp_path / f"ref_{name}"))
    ours, ref = sitk.ReadImage(str(tmp_path / name)), sitk.ReadImage(str(tmp_path / f"ref_{name}"))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(ours), volume)
    assert ours.GetPixelID() == ref.GetPixelID()
    np.testing.assert_allclose(ours.GetSpacing(), ref.GetSpacing(), atol=1e-5)
    np.testing.assert_allclose(ours.GetOrigin(), ref.GetOrigin(), atol=1e-4)
    np.testing.assert_allclose(ours.GetDirection(), ref.GetDirection(), atol=1e-5)
    nii = nib.load(str(tmp_path / name))
    np.testing.assert_allclose(nii.affine, affine_ras(image), atol=1e-4)
    np.testing.assert_allclose(nii.get_qform(), affine_ras(image), atol=1e-4)
    assert nii.header["qform_code"] == 1 and nii.header["sform_code"] == 1
