"""Pixel data of one DICOM object, for every transfer syntax a PACS sends, through vetted decoders.

Why a table of our own instead of asking pydicom "is a decoder available": pydicom lists Pillow as a
JPEG Extended decoder, but Pillow cannot decode 12-bit JPEG, so "available" promised a decode that
fails. Here each syntax names the plugins that decode it correctly (checked in tests by encoding a
known array and reading it back), and a syntax counts as decodable only when one of them is installed.
pylibjpeg (with its libjpeg, openjpeg and rle plugins) covers every compressed syntax; native, big
endian and deflated data are pydicom's own.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
from pydicom.uid import UID

from spinefx.errors import SpinefxError

# transfer syntax uid -> decoding plugins of pydicom that decode it correctly, in order of preference
# ("" = pydicom's own reader of uncompressed data).
DECODERS: dict[str, tuple[str, ...]] = {
    "1.2.840.10008.1.2": ("",),  # Implicit VR Little Endian
    "1.2.840.10008.1.2.1": ("",),  # Explicit VR Little Endian
    "1.2.840.10008.1.2.1.99": ("",),  # Deflated Explicit VR Little Endian
    "1.2.840.10008.1.2.2": ("",),  # Explicit VR Big Endian
    "1.2.840.10008.1.2.4.50": ("pylibjpeg",),  # JPEG Baseline (8-bit)
    "1.2.840.10008.1.2.4.51": ("pylibjpeg",),  # JPEG Extended (12-bit): not Pillow, it cannot do 12 bits
    "1.2.840.10008.1.2.4.57": ("pylibjpeg",),  # JPEG Lossless, non-hierarchical (any predictor)
    "1.2.840.10008.1.2.4.70": ("pylibjpeg",),  # JPEG Lossless SV1
    "1.2.840.10008.1.2.4.80": ("pylibjpeg", "pyjpegls"),  # JPEG-LS lossless
    "1.2.840.10008.1.2.4.81": ("pylibjpeg", "pyjpegls"),  # JPEG-LS near-lossless
    "1.2.840.10008.1.2.4.90": ("pylibjpeg",),  # JPEG 2000 lossless
    "1.2.840.10008.1.2.4.91": ("pylibjpeg",),  # JPEG 2000
    "1.2.840.10008.1.2.4.201": ("pylibjpeg",),  # HTJ2K lossless
    "1.2.840.10008.1.2.4.202": ("pylibjpeg",),  # HTJ2K lossless RPCL
    "1.2.840.10008.1.2.4.203": ("pylibjpeg",),  # HTJ2K
    "1.2.840.10008.1.2.5": ("pylibjpeg", "pydicom"),  # RLE lossless
}
NATIVE_LE = {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1"}


def transfer_syntax(ds: pydicom.Dataset) -> UID:
    """The dataset's transfer syntax (Implicit VR Little Endian when the file meta lacks one)."""
    return UID(str(ds.file_meta.get("TransferSyntaxUID", "1.2.840.10008.1.2")))


def decoding_plugin(ts: UID | str) -> str | None:
    """The installed plugin that decodes ``ts`` ("" for uncompressed data), or None when none is."""
    plugins = DECODERS.get(str(ts))
    if plugins is None:
        return None
    if plugins == ("",):
        return ""
    from pydicom.pixels import get_decoder

    try:
        available = set(get_decoder(UID(str(ts))).available_plugins)
    except NotImplementedError:
        return None
    return next((p for p in plugins if p in available), None)


def check_decodable(ds: pydicom.Dataset, path: Path, patient: str | None) -> str:
    """The plugin to use for ``ds``; a SpinefxError naming the syntax and the fix when there is none."""
    ts = transfer_syntax(ds)
    plugin = decoding_plugin(ts)
    if plugin is None:
        known = str(ts) in DECODERS
        raise SpinefxError(
            f"pixel data is compressed as '{ts.name}' ({ts}) and no installed decoder can read it"
            + ("" if known else " (spinefx does not know this transfer syntax)")
            + ".",
            patient=patient,
            path=path,
            fix="install the decoders spinefx pins (pylibjpeg, pylibjpeg-libjpeg, pylibjpeg-openjpeg, "
            "pylibjpeg-rle), or decompress the series first (e.g. `gdcmconv --raw` or `dcmdjpeg`).",
        )
    return plugin


def stored_pixels(ds: pydicom.Dataset, path: Path, n_frames: int, patient: str | None) -> np.ndarray:
    """Stored values (no rescale) of every frame of ``ds`` as [frames, rows, cols]."""
    rows, cols = int(ds.Rows), int(ds.Columns)
    plugin = check_decodable(ds, path, patient)
    ts = str(transfer_syntax(ds))
    bits = int(ds.BitsAllocated)
    signed = int(ds.get("PixelRepresentation", 0)) == 1
    expected = n_frames * rows * cols
    if ts in NATIVE_LE and bits in (8, 16, 32) and int(ds.get("BitsStored", bits)) == bits:
        # fast path: the bytes are the array
        dtype = np.dtype(f"{'i' if signed else 'u'}{bits // 8}").newbyteorder("<")
        raw = ds.PixelData
        if len(raw) < expected * dtype.itemsize:
            raise SpinefxError(
                f"pixel data holds {len(raw)} bytes, {expected * dtype.itemsize} expected; "
                "the file is truncated or corrupt.",
                patient=patient,
                path=path,
                fix="copy the series again from the PACS/scanner.",
            )
        return np.frombuffer(raw, dtype=dtype, count=expected).reshape(n_frames, rows, cols)
    try:
        if plugin:
            ds.pixel_array_options(decoding_plugin=plugin)
        arr = np.asarray(ds.pixel_array)
    except Exception as exc:
        raise SpinefxError(
            f"cannot decode pixel data ({transfer_syntax(ds).name}, {type(exc).__name__}: {exc}); "
            "the file is truncated or corrupt.",
            patient=patient,
            path=path,
            fix="copy the series again, or decompress it first (e.g. `gdcmconv --raw`).",
        ) from exc
    if arr.size != expected:
        raise SpinefxError(
            f"decoded pixel data holds {arr.size} values, {expected} expected ({n_frames} frame(s) of "
            f"{rows}x{cols}); the file is truncated or corrupt.",
            patient=patient,
            path=path,
            fix="copy the series again from the PACS/scanner.",
        )
    return arr.reshape(n_frames, rows, cols)


__all__ = ["DECODERS", "check_decodable", "decoding_plugin", "stored_pixels", "transfer_syntax"]
