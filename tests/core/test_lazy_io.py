"""Lazy volumes: TIFF (through tifffile's zarr interface), zarr v2/v3 and HDF5, read by region."""

import pickle

import h5py
import numpy as np
import pytest
import tifffile
import zarr

from napari_mito_wda.core.data.io import InputError
from napari_mito_wda.core.volumes.lazy_io import open_volume


@pytest.fixture
def data(rng):
    return (rng.random((4, 40, 56)) * 255).astype(np.uint8)


def _check(vol, data, voxel):
    assert vol.shape == data.shape and vol.dtype == data.dtype
    assert vol.voxel_size == pytest.approx(voxel) if voxel else vol.voxel_size is None
    np.testing.assert_array_equal(vol.read(1, 3, 5, 30, 7, 50), data[1:3, 5:30, 7:50])
    np.testing.assert_array_equal(vol.read(0, 4, 1, 40, 2, 56, step=(3, 5)), data[:, 1::3, 2::5])
    clone = pickle.loads(pickle.dumps(vol))  # what a dask worker receives: reopened there
    np.testing.assert_array_equal(clone.read(2, 3, 0, 40, 0, 56), data[2:3])


def test_tiff_is_read_through_zarr(tmp_path, data):
    path = tmp_path / "em.tif"
    tifffile.imwrite(path, data, imagej=True, resolution=(1 / 4.0, 1 / 4.0),
                     metadata={"axes": "ZYX", "spacing": 40.0, "unit": "nm"})
    vol = open_volume(path)
    assert vol.kind == "tiff" and isinstance(vol.array, zarr.Array)
    _check(vol, data, (40.0, 4.0, 4.0))


@pytest.mark.parametrize("fmt", [2, 3])
def test_zarr_v2_and_v3(tmp_path, data, fmt):
    path = tmp_path / f"em{fmt}.zarr"
    arr = zarr.create_array(str(path), shape=data.shape, chunks=(1, 16, 16), dtype=data.dtype, zarr_format=fmt)
    arr[...] = data
    arr.attrs["voxel_size_nm"] = [30, 6, 6]
    vol = open_volume(path)
    assert vol.kind == "zarr" and vol.chunks == (1, 16, 16)
    _check(vol, data, (30, 6, 6))


def test_zarr_group_needs_a_name_when_ambiguous(tmp_path, data):
    path = tmp_path / "g.zarr"
    g = zarr.open_group(str(path), mode="w")
    g.create_array("raw", shape=data.shape, dtype=data.dtype)[...] = data
    g.create_array("other", shape=data.shape, dtype=data.dtype)
    with pytest.raises(InputError, match="name one"):
        open_volume(path)
    _check(open_volume(path, dataset="raw"), data, None)
    with pytest.raises(InputError, match="no array 'nope'"):
        open_volume(path, dataset="nope")


def test_ome_zarr_scale(tmp_path, data):
    path = tmp_path / "ome.zarr"
    g = zarr.open_group(str(path), mode="w")
    g.create_array("0", shape=data.shape, dtype=data.dtype)[...] = data
    g.attrs["multiscales"] = [{"axes": [{"name": a, "unit": "micrometer"} for a in "zyx"],
                               "datasets": [{"path": "0", "coordinateTransformations": [
                                   {"type": "scale", "scale": [0.03, 0.005, 0.005]}]}]}]
    _check(open_volume(path), data, (30.0, 5.0, 5.0))


def test_hdf5(tmp_path, data):
    path = tmp_path / "em.h5"
    with h5py.File(path, "w") as fh:
        ds = fh.create_dataset("volumes/raw", data=data, chunks=(1, 20, 28))
        ds.attrs["element_size_um"] = [0.03, 0.005, 0.005]
        fh.create_dataset("note", data=np.arange(3))  # 1D: not an image, ignored
    vol = open_volume(path)
    assert vol.kind == "hdf5" and vol.dataset == "volumes/raw"
    _check(vol, data, (30.0, 5.0, 5.0))


def test_2d_is_one_slice(tmp_path, data):
    path = tmp_path / "one.zarr"
    zarr.create_array(str(path), shape=data.shape[1:], dtype=data.dtype)[...] = data[0]
    vol = open_volume(path)
    assert vol.shape == (1, 40, 56)
    np.testing.assert_array_equal(vol.read(0, 1, 0, 40, 0, 56), data[:1])


def test_bad_inputs_say_what_is_wrong(tmp_path):
    with pytest.raises(InputError, match="no such"):
        open_volume(tmp_path / "missing.zarr")
    (tmp_path / "x.txt").write_text("hello")
    with pytest.raises(InputError, match="not a TIFF, zarr or HDF5"):
        open_volume(tmp_path / "x.txt")
    (tmp_path / "bad.h5").write_bytes(b"not hdf5")
    with pytest.raises(InputError, match="HDF5"):
        open_volume(tmp_path / "bad.h5")
    with pytest.raises(InputError, match="pixel type"):
        open_volume(np.zeros((2, 32, 32), complex))
    with pytest.raises(InputError, match="dimensions"):
        open_volume(np.zeros((2, 2, 32, 32), np.uint8))
