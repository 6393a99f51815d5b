"""Every transfer syntax a PACS sends reads back as the array that was encoded (lossy ones within
their stated bound, or equal to GDCM's decoding). Files are made here: pydicom's encoders (RLE,
JPEG-LS, JPEG 2000), DCMTK (JPEG family, big endian, deflated) and OpenJPH (HTJ2K); tests that need a
Debian tool skip without it (`apt-get install dcmtk openjph-tools libgdcm-tools`)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from pydicom import uid

from spinefx.dicom import decode
from spinefx.dicom.convert import read_series
from spinefx.errors import SpinefxError

from dicom_fixtures import write_fixture

SHAPE = (3, 64, 48)


def _need(tool: str) -> str:
    exe = shutil.which(tool)
    if exe is None:
        pytest.skip(f"{tool} not installed")
    return exe


def _set_bits(path: Path, bits: int) -> np.ndarray:
    """Rewrite a 16-bit native file as ``bits`` stored bits (8: also 8 allocated); return its values."""
    ds = pydicom.dcmread(path)
    arr = ds.pixel_array.astype(np.uint16)
    if bits == 8:
        arr = (arr // 8).astype(np.uint8)
        ds.BitsAllocated = 8
    ds.BitsStored, ds.HighBit = bits, bits - 1
    ds.PixelData = arr.tobytes()
    ds.save_as(path, enforce_file_format=True)
    return arr


def _series(tmp: Path, bits: int = 16) -> tuple[list[Path], np.ndarray]:
    fx = write_fixture(tmp / "d", SHAPE, seed=3)
    return fx.paths, np.stack([_set_bits(p, bits) for p in fx.paths])


def _read(folder: Path, ts: str) -> np.ndarray:
    for p in sorted(folder.iterdir()):
        assert str(pydicom.dcmread(p, stop_before_pixels=True).file_meta.TransferSyntaxUID) == ts
    image, _ = read_series(folder, patient="p1")
    return sitk.GetArrayFromImage(image).astype(np.float64)


def _pydicom_encode(paths: list[Path], ts: str, **kw) -> None:
    for p in paths:
        ds = pydicom.dcmread(p)
        ds.compress(ts, **kw)
        ds.save_as(p, enforce_file_format=True)


def _tool(paths: list[Path], *cmd: str) -> None:
    for p in paths:
        out = p.with_suffix(".tmp")
        subprocess.run([*cmd, str(p), str(out)], check=True, capture_output=True)
        out.replace(p)


def _keep_original_type(paths: list[Path]) -> None:
    """Lossy encoders mark images DERIVED; the test series stays an ORIGINAL acquisition."""
    for p in paths:
        ds = pydicom.dcmread(p)
        ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "NONE"]
        ds.save_as(p)


def _gdcm_decoded(paths: list[Path], tmp: Path) -> np.ndarray:
    """GDCM's decoding of the series (real-world values, slices sorted along the normal)."""
    exe = _need("gdcmconv")
    out = []
    for i, p in enumerate(paths):
        raw = tmp / f"raw{i}.dcm"
        subprocess.run([exe, "--raw", str(p), str(raw)], check=True, capture_output=True)
        ds = pydicom.dcmread(raw)
        slope, intercept = float(ds.get("RescaleSlope", 1)), float(ds.get("RescaleIntercept", 0))
        out.append((ds.ImagePositionPatient, ds.pixel_array * slope + intercept))
    normal = np.cross(*np.reshape(np.asarray(ds.ImageOrientationPatient, float), (2, 3)))
    return np.stack([a for _, a in sorted(out, key=lambda t: np.asarray(t[0], float) @ normal)])


# ---- lossless: equal to what was encoded --------------------------------------------------------


def test_rle(tmp_path: Path) -> None:
    paths, want = _series(tmp_path)
    _pydicom_encode(paths, uid.RLELossless)
    np.testing.assert_array_equal(_read(tmp_path / "d", uid.RLELossless), want)


def test_jpeg_ls_lossless(tmp_path: Path) -> None:
    paths, want = _series(tmp_path)
    _pydicom_encode(paths, uid.JPEGLSLossless)
    np.testing.assert_array_equal(_read(tmp_path / "d", uid.JPEGLSLossless), want)


def test_jpeg2000_lossless(tmp_path: Path) -> None:
    paths, want = _series(tmp_path)
    _pydicom_encode(paths, uid.JPEG2000Lossless)
    np.testing.assert_array_equal(_read(tmp_path / "d", uid.JPEG2000Lossless), want)


@pytest.mark.parametrize(
    ("syntax", "flags"), [(uid.JPEGLosslessSV1, ["+e1"]), (uid.JPEGLossless, ["+el", "+sv", "7"])]
)
def test_jpeg_lossless(tmp_path: Path, syntax: str, flags: list[str]) -> None:
    """SV1 (.70) and process 14 with predictor 7 (.57), the commonest PACS compression."""
    exe = _need("dcmcjpeg")
    paths, want = _series(tmp_path)
    _tool(paths, exe, *flags)
    np.testing.assert_array_equal(_read(tmp_path / "d", syntax), want)


@pytest.mark.parametrize(
    ("syntax", "flag"), [(uid.ExplicitVRBigEndian, "+tb"), (uid.DeflatedExplicitVRLittleEndian, "+td")]
)
def test_big_endian_and_deflated(tmp_path: Path, syntax: str, flag: str) -> None:
    exe = _need("dcmconv")
    paths, want = _series(tmp_path)
    _tool(paths, exe, flag)
    np.testing.assert_array_equal(_read(tmp_path / "d", syntax), want)


def _htj2k(paths: list[Path], tmp: Path, syntax: str, *flags: str) -> None:
    from pydicom.encaps import encapsulate

    exe = _need("ojph_compress")
    for i, p in enumerate(paths):
        ds = pydicom.dcmread(p)
        arr = ds.pixel_array.astype(">u2")
        pgm = tmp / f"f{i}.pgm"
        pgm.write_bytes(f"P5\n{arr.shape[1]} {arr.shape[0]}\n65535\n".encode() + arr.tobytes())
        j2c = tmp / f"f{i}.j2c"
        subprocess.run([exe, "-i", str(pgm), "-o", str(j2c), *flags], check=True, capture_output=True)
        ds.PixelData = encapsulate([j2c.read_bytes()])
        ds["PixelData"].VR = "OB"
        ds.file_meta.TransferSyntaxUID = syntax
        ds.save_as(p, enforce_file_format=True)


def test_htj2k_lossless(tmp_path: Path) -> None:
    paths, want = _series(tmp_path)
    _htj2k(paths, tmp_path, uid.HTJ2KLossless, "-reversible", "true")
    np.testing.assert_array_equal(_read(tmp_path / "d", uid.HTJ2KLossless), want)


# ---- lossy: within the stated bound, and equal to GDCM's decoding ----------------------------------


def test_jpeg_ls_near_lossless_within_allowed_error(tmp_path: Path) -> None:
    paths, want = _series(tmp_path)
    _pydicom_encode(paths, uid.JPEGLSNearLossless, jls_error=3)
    _keep_original_type(paths)
    got = _read(tmp_path / "d", uid.JPEGLSNearLossless)
    assert np.abs(got - want).max() <= 3
    assert np.any(got != want), "near-lossless at error 3 should change some values"


def test_jpeg2000_lossy_within_bound(tmp_path: Path) -> None:
    paths, want = _series(tmp_path)
    _pydicom_encode(paths, uid.JPEG2000, j2k_cr=[5])
    _keep_original_type(paths)
    got = _read(tmp_path / "d", uid.JPEG2000)
    assert np.sqrt(np.mean((got - want) ** 2)) < 0.01 * want.max()
    if shutil.which("gdcmconv"):
        slope = float(pydicom.dcmread(paths[0], stop_before_pixels=True).get("RescaleSlope", 1))
        np.testing.assert_allclose(got, _gdcm_decoded(paths, tmp_path), atol=1.01 * max(1.0, slope))


def test_htj2k_lossy_within_bound(tmp_path: Path) -> None:
    paths, want = _series(tmp_path)
    _htj2k(paths, tmp_path, uid.HTJ2K, "-qstep", "0.0005")
    got = _read(tmp_path / "d", uid.HTJ2K)
    assert np.sqrt(np.mean((got - want) ** 2)) < 0.01 * want.max()


@pytest.mark.parametrize(
    ("syntax", "flag", "bits"), [(uid.JPEGBaseline8Bit, "+eb", 8), (uid.JPEGExtended12Bit, "+ee", 12)]
)
def test_jpeg_baseline_and_12bit_extended(tmp_path: Path, syntax: str, flag: str, bits: int) -> None:
    """Lossy DCT JPEG: close to the original and equal (to rounding) to GDCM's decoding. 12-bit
    Extended is the one Pillow claims and cannot decode; here it must decode."""
    exe = _need("dcmcjpeg")
    paths, want = _series(tmp_path, bits)
    _tool(paths, exe, flag, "+q", "95", "+rm")
    _keep_original_type(paths)
    got = _read(tmp_path / "d", syntax)
    assert np.sqrt(np.mean((got - want) ** 2)) < 0.02 * want.max()
    if shutil.which("gdcmconv"):
        slope = float(pydicom.dcmread(paths[0], stop_before_pixels=True).get("RescaleSlope", 1))
        np.testing.assert_allclose(got, _gdcm_decoded(paths, tmp_path), atol=1.01 * max(1.0, slope))


# ---- never claim a decode that would fail --------------------------------------------------------


def test_every_listed_syntax_has_an_installed_decoder() -> None:
    missing = [ts for ts in decode.DECODERS if decode.decoding_plugin(ts) is None]
    assert not missing, f"no installed decoder for {missing}"


def test_pillow_alone_does_not_count_for_12bit_jpeg(monkeypatch: pytest.MonkeyPatch) -> None:
    class OnlyPillow:
        available_plugins = ("pillow",)

    monkeypatch.setattr("pydicom.pixels.get_decoder", lambda ts: OnlyPillow())
    assert decode.decoding_plugin(uid.JPEGExtended12Bit) is None
    assert decode.decoding_plugin(uid.ExplicitVRLittleEndian) == ""


def test_error_when_no_decoder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    exe = _need("dcmcjpeg")
    paths, _ = _series(tmp_path)
    _tool(paths, exe, "+e1")
    monkeypatch.setattr(decode, "decoding_plugin", lambda ts: None)
    with pytest.raises(SpinefxError, match="JPEG Lossless.*no installed decoder") as info:
        read_series(tmp_path / "d", patient="p9")
    assert "pylibjpeg" in info.value.fix and info.value.patient == "p9"
