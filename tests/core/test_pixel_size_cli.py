"""`--pixel-size NM` on `mito-wda predict` (in memory and chunked) and `adapt`: the flag beats the file's metadata,
one line says which pixel size is used and where it came from (or that it is unknown), outputs keep the
image's grid and voxel size."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from napari_mito_wda.core.data.io import read_volume
from napari_mito_wda.core.data.synthetic import make_volume

from .conftest import cli


@pytest.fixture
def em10(tmp_path):
    """A stack whose ImageJ metadata says 10 nm per pixel (z 40 nm)."""
    img, _ = make_volume((2, 64, 80), n_objects=5, seed=2)
    path = tmp_path / "em10.tif"
    tifffile.imwrite(path, img, imagej=True, resolution=(1 / 10.0, 1 / 10.0),
                     metadata={"axes": "ZYX", "spacing": 40.0, "unit": "nm"})
    return path


def _prob(tmp_path, name):
    import zarr

    return zarr.open_group(str(tmp_path / name), mode="r")["prob"][...]


@pytest.mark.parametrize("output", ["out.tif", "out.zarr"])
def test_predict_says_where_the_pixel_size_came_from_and_keeps_the_grid(output, em10, carded_ckpt, tmp_path, capsys):
    base = ["predict", em10, "--model", carded_ckpt, "--device", "cpu", "--precision", "fp32"]
    extra = ["--scheduler", "sync"] if output.endswith("zarr") else []
    rc, err = cli(base + ["-o", tmp_path / f"meta.{output}"] + extra, capsys)
    assert rc == 0
    assert "pixel size 10 nm (the file's metadata); model trained at 5 nm: slices rescaled x2" in err
    rc, err = cli(base + ["-o", tmp_path / f"flag.{output}", "--pixel-size", "5"] + extra, capsys)
    assert rc == 0 and "pixel size 5 nm (--pixel-size)" in err and "no rescaling" in err
    if output.endswith("tif"):
        vol = read_volume(tmp_path / f"meta.{output}")
        assert vol.data.shape == (2, 64, 80) and vol.voxel_size == pytest.approx((40.0, 10.0, 10.0))
    else:  # the flag was used: the maps differ from the metadata's run
        assert _prob(tmp_path, f"meta.{output}").shape == (2, 64, 80)
        assert np.abs(_prob(tmp_path, f"meta.{output}") - _prob(tmp_path, f"flag.{output}")).max() > 1e-3


def test_unknown_pixel_size_and_a_model_without_one_get_a_notice(em, carded_ckpt, tiny_ckpt, tmp_path, capsys):
    rc, err = cli(["predict", em, "-o", tmp_path / "a.tif", "--model", carded_ckpt, "--device", "cpu"], capsys)
    assert rc == 0 and "pixel size unknown: the image is used at the scale it arrives in (give --pixel-size NM" in err
    assert sum("pixel size" in line for line in err.splitlines()) == 1
    rc, err = cli(["predict", em, "-o", tmp_path / "b.tif", "--model", tiny_ckpt, "--device", "cpu",
                   "--pixel-size", "6"], capsys)  # an old checkpoint: no pixel size on its card, still loads
    assert rc == 0 and "pixel size 6 nm (--pixel-size); the model records none" in err


def test_adapt_takes_the_pixel_size(em10, adaptable_model_file, tmp_path, capsys):
    rc, err = cli(["adapt", em10, "-o", tmp_path / "a.pt", "--model", adaptable_model_file, "--device", "cpu",
                   "--max-iters", "2", "--minutes", "1", "--pixel-size", "12.5"], capsys)
    assert rc == 0 and "pixel size 12.5 nm (--pixel-size); the model records none" in err
    assert (tmp_path / "a.pt").exists()
