"""Patch HDF5: roundtrip, dtypes, chunking, attributes, atomic writes."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from spinefx.errors import SpinefxError
from spinefx.imaging.patchfile import channel_names, read_patch_file, write_patch_file


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    return (
        rng.normal(size=(3, 6, 64, 64)).astype(np.float32),
        rng.normal(size=(12, 6, 64, 64)).astype(np.float32),
    )


def _write(path, original, augmented, **kw):
    args = dict(label="malignant", slices=[4, 5, 6], box=(10, 12, 50, 52), patient_id="demo_003")
    args.update(kw)
    write_patch_file(path, original=original, augmented=augmented, **args)


@pytest.mark.parametrize("dtype", ["float32", "float16"])
@pytest.mark.parametrize("compression", ["lzf", "gzip", None])
def test_roundtrip(tmp_path, data, dtype, compression):
    original, augmented = data
    path = tmp_path / "p.h5"
    _write(path, original, augmented, dtype=dtype, compression=compression)
    pf = read_patch_file(path)
    assert pf.original.dtype == np.float32 and np.array_equal(pf.original, original)
    assert pf.augmented.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(pf.augmented, augmented.astype(dtype))
    assert pf.label == "malignant" and pf.patient_id == "demo_003"
    assert pf.slices == [4, 5, 6] and pf.box == (10, 12, 50, 52)
    assert pf.n_original == 3 and pf.n_augmented == 12
    assert pf.channel_order == "T1 s-1,T1 s,T1 s+1,T2 s-1,T2 s,T2 s+1"
    with h5py.File(path, "r") as f:
        for name in ("original", "augmented"):
            assert f[name].chunks == (1, 6, 64, 64)
            assert f[name].compression == compression
        assert f.attrs["n_original"] == 3 and f.attrs["n_augmented"] == 12
        assert list(f.attrs["slices"]) == [4, 5, 6]


def test_original_only_file_and_skipping_augmented(tmp_path, data):
    original, augmented = data
    path = tmp_path / "original" / "demo_003.h5"  # parent folder is created
    _write(path, original, None)
    pf = read_patch_file(path)
    assert pf.augmented.shape == (0, 6, 64, 64) and pf.n_augmented == 0
    with h5py.File(path, "r") as f:
        assert f["augmented"].chunks == (1, 6, 64, 64)
    full = tmp_path / "demo_003.h5"
    _write(full, pf.original, augmented, label=pf.label, slices=pf.slices, box=pf.box)
    light = read_patch_file(full, augmented=False)
    assert light.augmented.shape == (0, 6, 64, 64) and np.array_equal(light.original, original)


def test_failed_write_leaves_no_file_and_keeps_the_old_one(tmp_path, data, monkeypatch):
    original, augmented = data
    path = tmp_path / "p.h5"
    real = h5py.Group.create_dataset

    def failing(self, name, *args, **kwargs):
        if name == "augmented":
            raise RuntimeError("disk full")
        return real(self, name, *args, **kwargs)

    monkeypatch.setattr(h5py.Group, "create_dataset", failing)
    with pytest.raises(RuntimeError, match="disk full"):
        _write(path, original, augmented)
    assert list(tmp_path.iterdir()) == []
    # an existing file survives a failed rewrite untouched
    monkeypatch.setattr(h5py.Group, "create_dataset", real)
    _write(path, original, augmented)
    before = path.read_bytes()
    monkeypatch.setattr(h5py.Group, "create_dataset", failing)
    with pytest.raises(RuntimeError):
        _write(path, original * 2, augmented)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["p.h5"]


def test_bad_inputs(tmp_path, data):
    original, augmented = data
    path = tmp_path / "p.h5"
    with pytest.raises(ValueError, match="augmented must be"):
        _write(path, original, augmented[:, :5])
    with pytest.raises(ValueError, match="slice indices"):
        _write(path, original, augmented, slices=[1, 2])
    with pytest.raises(ValueError, match="dtype"):
        _write(path, original, augmented, dtype="int8")
    bad = original.copy()
    bad[0, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        _write(path, bad, augmented)
    assert not path.exists()


def test_read_incomplete_or_broken_file(tmp_path):
    path = tmp_path / "p.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("original", data=np.zeros((1, 6, 4, 4), np.float32))
    with pytest.raises(SpinefxError, match="lacks augmented"):
        read_patch_file(path)
    junk = tmp_path / "junk.h5"
    junk.write_bytes(b"not hdf5")
    with pytest.raises(SpinefxError, match="cannot read"):
        read_patch_file(junk)


def test_channel_names():
    assert channel_names(1) == ["T1 s-1", "T1 s", "T1 s+1", "T2 s-1", "T2 s", "T2 s+1"]
    assert channel_names(0) == ["T1 s", "T2 s"]
    assert channel_names(2)[0] == "T1 s-2" and channel_names(2)[-1] == "T2 s+2"
