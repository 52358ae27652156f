"""`mito-wda predict BIG.zarr -o OUT.zarr`: the chunked path of the command line."""

import numpy as np
import pytest
import zarr

from napari_mito_wda.cli import main
from napari_mito_wda.core.data.io import read_volume
from napari_mito_wda.core.data.synthetic import make_volume
from napari_mito_wda.core.volumes.chunked import read_labels


@pytest.fixture
def em_zarr(tmp_path):
    img, _ = make_volume((3, 64, 80), n_objects=5, seed=2)
    arr = zarr.create_array(str(tmp_path / "em.zarr"), shape=img.shape, chunks=(1, 32, 32), dtype=img.dtype)
    arr[...] = img
    arr.attrs["voxel_size_nm"] = [40.0, 4.0, 4.0]
    return tmp_path / "em.zarr"


def test_zarr_to_zarr_with_progress(em_zarr, tiny_ckpt, tmp_path, capsys):
    out = tmp_path / "out.zarr"
    args = ["predict", str(em_zarr), "-o", str(out), "--model", str(tiny_ckpt), "--chunks", "2,32,48",
            "--scheduler", "sync", "--device", "cpu", "--instance-halo", "32"]
    assert main(args) == 0
    labels, voxel = read_labels(out)
    assert labels.shape == (3, 64, 80) and labels.chunks == (2, 32, 48) and voxel == (40.0, 4.0, 4.0)
    captured = capsys.readouterr()
    assert "predict: 8/8 (100%)" in captured.err and "relabel: 8/8" in captured.err
    assert f"wrote {out}" in captured.out
    assert main(args) == 2 and "already exists" in capsys.readouterr().err  # never silently replaced
    assert main(args + ["--overwrite"]) == 0


def test_zarr_to_tiff_for_volumes_that_fit(em_zarr, tiny_ckpt, tmp_path):
    out = tmp_path / "out.tif"
    assert main(["predict", str(em_zarr), "-o", str(out), "--model", str(tiny_ckpt), "--scheduler", "sync",
                 "--chunks", "3,64,40"]) == 0
    vol = read_volume(out)
    assert vol.data.shape == (3, 64, 80) and vol.voxel_size == pytest.approx((40.0, 4.0, 4.0))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["em.zarr", "out.tif", "tiny.pt"]  # no work store left


@pytest.mark.parametrize("extra, message", [
    (["--chunks", "2,32"], "three positive integers"),
    (["--3d"], "not available for chunked runs"),
    (["--orthoplanes"], "not available for chunked runs"),
])
def test_bad_options_give_one_line_errors(em_zarr, tiny_ckpt, tmp_path, capsys, extra, message):
    args = ["predict", str(em_zarr), "-o", str(tmp_path / "o.zarr"), "--model", str(tiny_ckpt), "--scheduler", "sync"]
    assert main(args + extra) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_tiff_in_tiff_out_stays_in_memory(tiny_ckpt, tmp_path, capsys):
    """Without chunk options a TIFF is segmented in memory as before (no dask, no zarr)."""
    import tifffile

    img, _ = make_volume((2, 48, 48), n_objects=3, seed=1)
    tifffile.imwrite(tmp_path / "a.tif", img)
    assert main(["predict", str(tmp_path / "a.tif"), "-o", str(tmp_path / "b.tif"), "--model", str(tiny_ckpt)]) == 0
    assert "dask" not in capsys.readouterr().out
    assert np.asarray(read_volume(tmp_path / "b.tif").data).shape == (2, 48, 48)


@pytest.mark.parametrize("kind", ["tif", "h5"])
def test_tiff_and_hdf5_inputs_keep_the_voxel_size(kind, tiny_ckpt, tmp_path):
    import h5py
    import tifffile

    img, _ = make_volume((2, 48, 64), n_objects=3, seed=3)
    src = tmp_path / f"em.{kind}"
    if kind == "tif":
        tifffile.imwrite(src, img, imagej=True, resolution=(1 / 5.0, 1 / 5.0),
                         metadata={"axes": "ZYX", "spacing": 30.0, "unit": "nm"})
    else:
        with h5py.File(src, "w") as fh:
            fh.create_dataset("raw", data=img).attrs["element_size_um"] = [0.03, 0.005, 0.005]
            fh.create_dataset("mask", data=img > 100)
    extra = ["--dataset", "raw"] if kind == "h5" else []
    out = tmp_path / "out.zarr"
    assert main(["predict", str(src), "-o", str(out), "--model", str(tiny_ckpt), "--scheduler", "sync",
                 "--chunks", "1,32,32", *extra]) == 0
    labels, voxel = read_labels(out)
    assert labels.shape == (2, 48, 64) and voxel == pytest.approx((30.0, 5.0, 5.0))
