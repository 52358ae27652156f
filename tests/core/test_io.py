import errno
import json

import numpy as np
import pytest
import tifffile

from napari_mito_wda.core.data import io
from napari_mito_wda.core.data.io import (
    InputError,
    normalize_slices,
    read_volume,
    validate_image,
    write_labels_tiff,
)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_read_2d_and_3d_stacks(tmp_path, dtype):
    data3 = (np.arange(3 * 20 * 24).reshape(3, 20, 24) % 200).astype(dtype)
    tifffile.imwrite(tmp_path / "v.tif", data3, photometric="minisblack")
    tifffile.imwrite(tmp_path / "s.tif", data3[0])
    v = read_volume(tmp_path / "v.tif")
    s = read_volume(tmp_path / "s.tif")
    assert v.data.shape == (3, 20, 24) and v.data.dtype == dtype
    assert s.data.shape == (1, 20, 24)
    np.testing.assert_array_equal(v.data, data3)


def test_voxel_size_is_read_from_imagej_metadata(tmp_path):
    tifffile.imwrite(tmp_path / "v.tif", np.zeros((2, 32, 32), np.uint8), imagej=True,
                     resolution=(1 / 4.0, 1 / 5.0), metadata={"axes": "ZYX", "spacing": 40.0, "unit": "nm"})
    assert read_volume(tmp_path / "v.tif").voxel_size == pytest.approx((40.0, 5.0, 4.0))
    tifffile.imwrite(tmp_path / "u.tif", np.zeros((2, 32, 32), np.uint8), imagej=True,
                     resolution=(1 / 0.01, 1 / 0.01), metadata={"axes": "ZYX", "spacing": 0.05, "unit": "micron"})
    assert read_volume(tmp_path / "u.tif").voxel_size == pytest.approx((50.0, 10.0, 10.0))


@pytest.mark.parametrize(
    "arr, words",
    [
        (np.zeros((64, 64, 3), np.uint8), "RGB"),
        (np.zeros((2, 2, 32, 32), np.uint8), "dimensions"),
        (np.zeros((5,), np.uint8), "dimensions"),
        (np.zeros((32, 32), bool), "pixel type"),
        (np.zeros((4, 8, 8), np.uint8), "too small"),
        (np.full((32, 32), np.nan, np.float32), "NaN"),
    ],
)
def test_bad_images_get_clear_errors(arr, words):
    with pytest.raises(InputError, match=words):
        validate_image(arr)


def test_missing_and_non_tiff_files(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        read_volume(tmp_path / "nope.tif")
    (tmp_path / "x.tif").write_text("not an image")
    with pytest.raises(InputError, match="cannot be read as a TIFF"):
        read_volume(tmp_path / "x.tif")


def test_normalize_slices_is_per_slice_and_bounded():
    stack = np.stack([np.linspace(0, 100, 64 * 64).reshape(64, 64), np.linspace(1000, 60000, 64 * 64).reshape(64, 64)])
    out = normalize_slices(stack.astype(np.uint16))
    assert out.dtype == np.float32 and out.min() >= 0 and out.max() <= 1
    for z in range(2):  # each slice spans ~[0, 1] on its own
        assert out[z].min() < 0.01 and out[z].max() > 0.99
    assert normalize_slices(np.full((1, 32, 32), 7, np.uint8)).max() == 0


def test_labels_round_trip_uint16_with_voxel_size(tmp_path):
    lab = np.zeros((3, 40, 50), np.int32)
    lab[1, 5:10, 5:10] = 3
    lab[2, 20:30, 20:40] = 65535
    path = write_labels_tiff(tmp_path / "l.tif", lab, (30.0, 5.0, 4.0), metadata={"model": "m.pt"})
    with tifffile.TiffFile(path) as tif:
        assert tif.is_imagej and tif.imagej_metadata["spacing"] == pytest.approx(30.0)
        assert tif.imagej_metadata["unit"] == "nm"
        data = tif.asarray()
        assert json.loads(tif.imagej_metadata["Info"])["model"] == "m.pt"
    assert data.dtype == np.uint16 and data.shape == lab.shape
    np.testing.assert_array_equal(data, lab)
    assert read_volume(path).voxel_size == pytest.approx((30.0, 5.0, 4.0))


def test_labels_switch_to_uint32_when_ids_do_not_fit(tmp_path):
    lab = np.zeros((2, 20, 20), np.int64)
    lab[0, :5, :5] = 70000
    path = write_labels_tiff(tmp_path / "big.tif", lab)
    data = tifffile.imread(path)
    assert data.dtype == np.uint32 and int(data.max()) == 70000


def test_existing_file_is_never_silently_overwritten(tmp_path):
    target = tmp_path / "l.tif"
    target.write_bytes(b"precious")
    with pytest.raises(FileExistsError, match="already exists"):
        write_labels_tiff(target, np.ones((1, 20, 20), np.uint8))
    assert target.read_bytes() == b"precious"
    write_labels_tiff(target, np.ones((1, 20, 20), np.uint8), overwrite=True)
    assert tifffile.imread(target).max() == 1


def test_full_disk_keeps_the_old_file_and_leaves_no_debris(tmp_path, monkeypatch):
    target = tmp_path / "l.tif"
    target.write_bytes(b"precious")

    def disk_full(*a, **k):  # what the OS reports when the disk fills up mid-write
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("tifffile.imwrite", disk_full)
    with pytest.raises(OSError, match="No space left on device.*nothing was overwritten"):
        write_labels_tiff(target, np.ones((1, 20, 20), np.uint8), overwrite=True)
    assert target.read_bytes() == b"precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["l.tif"]


def test_missing_output_folder_is_reported(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        write_labels_tiff(tmp_path / "no" / "l.tif", np.ones((1, 20, 20), np.uint8))


def test_written_files_have_normal_permissions(tmp_path):
    path = io.write_json(tmp_path / "m.json", {"a": 1})
    assert path.stat().st_mode & 0o044 == 0o044  # group/other can read, as with any normal write
