"""Reader and writer contributions: TIFF <-> layers, voxel size kept, no silent overwrite."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile

from napari_mito_wda._reader import get_reader
from napari_mito_wda._writer import voxel_size_from_layer, write_labels
from napari_mito_wda.core.data.io import InputError


def _labels(shape=(4, 40, 48)):
    lab = np.zeros(shape, np.uint16)
    lab[1:3, 5:15, 6:20] = 1
    lab[0:4, 25:35, 30:44] = 7
    lab[2, 2:4, 40:46] = 300
    return lab


@pytest.mark.parametrize("name", ["a.png", "a.zarr", "a.tif.json", "a.npy"])
def test_reader_declines_non_tiff(tmp_path, name):
    assert get_reader(str(tmp_path / name)) is None
    assert get_reader([str(tmp_path / "x.tif"), str(tmp_path / name)]) is None


@pytest.mark.parametrize("name", ["a.tif", "a.TIFF", "b.tiff"])
def test_reader_accepts_tiff(tmp_path, name):
    assert callable(get_reader(str(tmp_path / name)))


def test_round_trip_keeps_voxel_size(tmp_path):
    lab = _labels()
    path = tmp_path / "inst.tif"
    written = write_labels(str(path), lab, {"scale": (30.0, 5.0, 4.0), "name": "my instances"})
    assert [Path(p).name for p in written] == ["inst.tif", "inst.json"]

    side = json.loads((tmp_path / "inst.json").read_text())
    assert side["plugin_version"] and side["date"] and side["layer_name"] == "my instances"
    assert side["voxel_size_nm_zyx"] == [30.0, 5.0, 4.0]
    assert side["n_instances"] == 3

    with tifffile.TiffFile(path) as tif:
        assert tif.asarray().dtype == np.uint16

    (data, meta, kind), = get_reader(str(path))(str(path))
    assert kind == "image"
    np.testing.assert_array_equal(data, lab)
    assert tuple(meta["scale"]) == pytest.approx((30.0, 5.0, 4.0))
    assert meta["name"] == "inst"


def test_unit_scale_means_unknown_voxel_size(tmp_path):
    path = tmp_path / "plain.tif"
    write_labels(str(path), _labels(), {"scale": (1.0, 1.0, 1.0), "name": "x"})
    (_data, meta, _), = get_reader(str(path))(str(path))
    assert tuple(meta["scale"]) == (1.0, 1.0, 1.0)
    assert json.loads((tmp_path / "plain.json").read_text())["voxel_size_nm_zyx"] is None


def test_2d_round_trip_gives_2d_layer(tmp_path):
    lab = _labels()[1]
    path = tmp_path / "slice.tif"
    write_labels(str(path), lab, {"scale": (6.0, 6.0), "name": "s"})
    (data, meta, _), = get_reader(str(path))(str(path))
    assert data.shape == lab.shape
    assert tuple(meta["scale"]) == pytest.approx((6.0, 6.0))


def test_voxel_size_units_converted_to_nm():
    assert voxel_size_from_layer((0.03, 0.005, 0.005), ("micrometer",) * 3) == pytest.approx((30, 5, 5))
    assert voxel_size_from_layer((2, 2, 2), ("pixel",) * 3) == (2.0, 2.0, 2.0)
    assert voxel_size_from_layer((1, 1, 1)) is None


def test_writer_refuses_to_overwrite(tmp_path):
    path = tmp_path / "inst.tif"
    write_labels(str(path), _labels(), {"scale": (1, 1, 1), "name": "a"})
    before_tif, before_json = path.read_bytes(), (tmp_path / "inst.json").read_bytes()
    with pytest.raises(FileExistsError, match="already exists"):
        write_labels(str(path), _labels() * 0, {"scale": (1, 1, 1), "name": "b"})
    assert path.read_bytes() == before_tif
    assert (tmp_path / "inst.json").read_bytes() == before_json


def test_writer_refuses_when_only_sidecar_exists(tmp_path):
    (tmp_path / "inst.json").write_text("{}")
    with pytest.raises(FileExistsError, match="inst.json"):
        write_labels(str(tmp_path / "inst.tif"), _labels(), {"scale": (1, 1, 1), "name": "a"})
    assert not (tmp_path / "inst.tif").exists()


def test_reader_reports_bad_files_clearly(tmp_path):
    junk = tmp_path / "junk.tif"
    junk.write_bytes(b"this is not a tiff at all")
    with pytest.raises(InputError, match="junk.tif"):
        get_reader(str(junk))(str(junk))

    rgb = tmp_path / "rgb.tif"
    tifffile.imwrite(rgb, np.zeros((64, 64, 3), np.uint8), photometric="rgb")
    with pytest.raises(InputError, match="RGB"):
        get_reader(str(rgb))(str(rgb))


@pytest.mark.gui
def test_napari_open_and_save_use_the_plugin(make_napari_viewer, tmp_path):
    """Through napari itself: viewer.open picks our reader, layers.save our writer (and refuses overwrite)."""
    lab = _labels()
    src = tmp_path / "in.tif"
    write_labels(str(src), lab, {"scale": (30, 5, 5), "name": "src"})

    viewer = make_napari_viewer()
    (layer,) = viewer.open(str(src), plugin="napari-mito-wda")
    assert layer.__class__.__name__ == "Image"
    assert tuple(layer.scale) == pytest.approx((30, 5, 5))

    prov = {"model_path": "adapted.pt", "adaptation": {"runs": [{"steps": np.int64(12)}]}, "image": "em"}
    labels = viewer.add_labels(lab, name="instances", scale=(30, 5, 5), metadata={"mito_wda": prov})
    out = tmp_path / "out.tif"
    saved = labels.save(str(out), plugin="napari-mito-wda")
    assert Path(saved[0]) == out and (tmp_path / "out.json").exists()
    np.testing.assert_array_equal(tifffile.imread(out), lab)
    side = json.loads((tmp_path / "out.json").read_text())  # File > Save keeps the widget's provenance
    assert side["model_path"] == "adapted.pt" and side["adaptation"]["runs"][0]["steps"] == 12
    before = out.read_bytes()
    with pytest.raises(FileExistsError):
        labels.save(str(out), plugin="napari-mito-wda")
    assert out.read_bytes() == before
