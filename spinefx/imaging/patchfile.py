"""The per-patient patch HDF5: original and augmented patches plus what they came from.

Layout (results/patches/{patient}.h5, and results/patches/original/{patient}.h5 between the
extract and augment steps, there with an empty ``augmented``):

- ``original``  float32 [n, c, h, w]: one sample per centre slice, channels ``channel_order``
- ``augmented`` float32 or float16 [m, c, h, w]: the random-affine copies (m may be 0)
- attrs: ``label``, ``slices`` (T2W k of each original sample's centre), ``box`` (x0, y0, x1, y1),
  ``patient_id``, ``n_original``, ``n_augmented``, ``channel_order`` (comma-separated names),
  ``format_version``.

Datasets are chunked one sample per chunk so that a loader reading random samples decompresses
only what it uses; the first axis is resizable so a zero-length ``augmented`` is still chunked.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from spinefx.atomic import atomic_path
from spinefx.errors import SpinefxError

FORMAT_VERSION = 1
DTYPES = ("float32", "float16")
COMPRESSIONS = (None, "lzf", "gzip")


def channel_names(neighbours: int = 1) -> list[str]:
    """Channel names for ``neighbours`` slices each side: T1 s-n..s+n then T2 s-n..s+n."""

    def rel(d: int) -> str:
        return "s" if d == 0 else f"s{d:+d}"

    offsets = range(-neighbours, neighbours + 1)
    return [f"{seq} {rel(d)}" for seq in ("T1", "T2") for d in offsets]


def _channel_order(n_channels: int) -> str:
    if n_channels % 2 or (n_channels // 2) % 2 == 0:
        return f"{n_channels} channels (unnamed)"
    return ",".join(channel_names((n_channels // 2 - 1) // 2))


@dataclass
class PatchFile:
    """One patient's patches, in memory."""

    original: np.ndarray
    augmented: np.ndarray
    label: str
    slices: list[int]
    box: tuple[int, int, int, int]
    patient_id: str
    channel_order: str

    @property
    def n_original(self) -> int:
        return int(self.original.shape[0])

    @property
    def n_augmented(self) -> int:
        return int(self.augmented.shape[0])


def write_patch_file(
    path: Path,
    *,
    original: np.ndarray,
    augmented: np.ndarray | None = None,
    label: str,
    slices: Sequence[int],
    box: Sequence[int],
    patient_id: str,
    dtype: str = "float32",
    compression: str | None = "lzf",
) -> None:
    """Write one patient's patch file atomically; ``augmented=None`` writes an empty one.

    ``original`` is always stored float32 (it is what is evaluated); ``dtype`` applies to the
    augmented copies only, where float16 halves the file for training data.
    """
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
    if compression not in COMPRESSIONS:
        raise ValueError(f"compression must be one of {COMPRESSIONS}, got {compression!r}")
    original = np.asarray(original, dtype=np.float32)
    if original.ndim != 4 or original.shape[0] == 0:
        raise ValueError(f"original must be [n>0, channels, h, w], got shape {original.shape}")
    sample_shape = original.shape[1:]
    if augmented is None:
        augmented = np.zeros((0, *sample_shape), dtype=dtype)
    augmented = np.asarray(augmented)
    if augmented.ndim != 4 or augmented.shape[1:] != sample_shape:
        raise ValueError(f"augmented must be [m, {', '.join(map(str, sample_shape))}], got {augmented.shape}")
    slices = [int(s) for s in slices]
    if len(slices) != original.shape[0]:
        raise ValueError(f"{len(slices)} slice indices for {original.shape[0]} original samples")
    box = [int(v) for v in box]
    if len(box) != 4:
        raise ValueError(f"box must be (x0, y0, x1, y1), got {box}")
    if not (np.isfinite(original).all() and np.isfinite(augmented).all()):
        raise ValueError(f"patient {patient_id}: patches contain NaN or infinite values")

    chunks = (1, *sample_shape)
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        for name, data, dt in (("original", original, "float32"), ("augmented", augmented, dtype)):
            f.create_dataset(
                name,
                data=data.astype(dt, copy=False),
                chunks=chunks,
                maxshape=(None, *sample_shape),
                compression=compression,
            )
        f.attrs["label"] = str(label)
        f.attrs["slices"] = np.asarray(slices, dtype=np.int64)
        f.attrs["box"] = np.asarray(box, dtype=np.int64)
        f.attrs["patient_id"] = str(patient_id)
        f.attrs["n_original"] = int(original.shape[0])
        f.attrs["n_augmented"] = int(augmented.shape[0])
        f.attrs["channel_order"] = _channel_order(sample_shape[0])
        f.attrs["format_version"] = FORMAT_VERSION


def _attr_str(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def read_patch_file(path: Path, *, augmented: bool = True) -> PatchFile:
    """Load a patch file into memory; ``augmented=False`` skips the copies (held-out patients)."""
    path = Path(path)
    try:
        with h5py.File(path, "r") as f:
            missing = [n for n in ("original", "augmented") if n not in f]
            missing += [a for a in ("label", "slices", "box", "patient_id") if a not in f.attrs]
            if missing:
                raise SpinefxError(
                    f"patch file lacks {', '.join(missing)}.",
                    path=path,
                    fix="delete it and rerun extract_patches / augment_patches.",
                )
            orig = f["original"][()]
            aug_ds = f["augmented"]
            aug = aug_ds[()] if augmented else np.zeros((0, *aug_ds.shape[1:]), dtype=aug_ds.dtype)
            attrs = dict(f.attrs)
    except OSError as err:
        raise SpinefxError(
            f"cannot read the patch file ({err}).",
            path=path,
            fix="delete it and rerun extract_patches / augment_patches.",
        ) from err
    return PatchFile(
        original=orig,
        augmented=aug,
        label=_attr_str(attrs["label"]),
        slices=[int(s) for s in np.atleast_1d(attrs["slices"])],
        box=tuple(int(v) for v in attrs["box"]),
        patient_id=_attr_str(attrs["patient_id"]),
        channel_order=_attr_str(attrs.get("channel_order", _channel_order(orig.shape[1]))),
    )
