"""Pixel size handling (issue 19, part 2): the image is rescaled from its pixel size to the model's for the
network, and every output comes back on the image's own grid, in memory, in chunks and in adaptation.

The rescaling itself (core/engine/rescale.py), the pixel size read from TIFF / zarr / HDF5 metadata and the
API's `pixel_size=`; the `--pixel-size` flag is in test_pixel_size_cli.py.
"""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
import torch
import zarr

from napari_mito_wda.core.data.checkpoint import load_checkpoint
from napari_mito_wda.core.data.io import read_volume
from napari_mito_wda.core.data.pixel_size import check_pixel_size, in_plane, pixel_scale
from napari_mito_wda.core.engine import rescale, tiling
from napari_mito_wda.core.engine.device import pick_device
from napari_mito_wda.core.engine.model import ModelConfig, MultiTaskUNet
from napari_mito_wda.core.engine.segment import segment_volume
from napari_mito_wda.core.volumes.lazy_io import open_volume

CPU = torch.device("cpu")


# --------------------------------------------------------------------------- the rescaling


def test_generic_taps_give_the_integer_path_at_the_models_pixel_size(rng):
    """At zoom 1/f the taps are the f x f means and torch's exact-factor bilinear growth: the same arithmetic."""
    img = rng.random((2, 101, 77)).astype(np.float32)
    read = lambda ya, yb, xa, xb: img[:, ya:yb, xa:xb]  # noqa: E731
    a = tiling._working_window(read, (3, 51), (0, 39), (101, 77), 2, CPU)
    b = rescale.working_window(read, (3, 51), (0, 39), (101, 77), 0.5, CPU)
    np.testing.assert_allclose(b.numpy(), a.numpy(), atol=1e-6)
    work = torch.from_numpy(rng.random((2, 51, 39)).astype(np.float32))
    span_y, span_x = tiling._bilinear_span(5, 101, 2, 51), tiling._bilinear_span(0, 77, 2, 39)
    assert (span_y, span_x) == (rescale.span(5, 101, 51, 0.5), rescale.span(0, 77, 39, 0.5))
    np.testing.assert_allclose(rescale.grow(work, (5, 101), (0, 77), (0, 0), (51, 39), 0.5).numpy(),
                               tiling._grow(work, (5, 101), (0, 77), span_y, span_x, (0, 0), 2).numpy(), atol=1e-6)


@pytest.mark.parametrize("zoom", [0.23, 0.5, 1.37, 2.5])
def test_rescaling_round_trip_keeps_shape_and_content(zoom):
    """Image grid -> working grid -> image grid: the image's shape again, and a smooth image nearly unchanged."""
    yy, xx = np.mgrid[0:150, 0:211].astype(np.float32)
    img = (0.5 + 0.4 * np.sin(yy / 23.0) * np.cos(xx / 31.0)).astype(np.float32)
    work = rescale.resample_slice(img, zoom)
    assert work.shape == (rescale.working_size(150, zoom), rescale.working_size(211, zoom))
    back = rescale.grow(torch.from_numpy(work)[None], (0, 150), (0, 211), (0, 0), work.shape, zoom)[0].numpy()
    assert back.shape == img.shape
    inner = (slice(8, -8), slice(8, -8))  # the borders repeat the last pixel, as the integer path does
    assert np.abs(back - img)[inner].max() < 0.03
    assert np.abs(back - img)[inner].max() > 0 or zoom == 1.0  # it did resample


@pytest.mark.parametrize("scale", [2.17, 0.43])
def test_a_rescaled_region_equals_the_whole_slice_cropped(scale, rng):
    """The halo-exact tiling stays exact with a pixel-size ratio: what makes chunked runs equal in-memory ones."""
    torch.manual_seed(0)
    model = MultiTaskUNet(ModelConfig(base=4, depth=2, downsample=2)).eval()
    dev = pick_device("cpu", "fp32")
    img = rng.random((1, 150, 190)).astype(np.float32)
    whole_p, whole_h = tiling.predict_exact(model, img, dev, scale=scale)
    assert whole_p.shape == img.shape
    read = lambda ya, yb, xa, xb: img[:, ya:yb, xa:xb]  # noqa: E731
    for region in [(0, 61, 0, 190), (61, 150, 37, 111), (17, 18, 150, 190)]:
        p, h = tiling.predict_region(model, read, (150, 190), region, dev, max_core=16, scale=scale)
        y0, y1, x0, x1 = region
        np.testing.assert_allclose(p, whole_p[:, y0:y1, x0:x1], atol=1e-5)
        np.testing.assert_allclose(h, whole_h[:, y0:y1, x0:x1], atol=1e-4)
    plain, _ = tiling.predict_exact(model, img, dev)
    assert np.abs(plain - whole_p).max() > 1e-3  # the ratio changed what the network saw


def test_pixel_scale_and_checks():
    assert pixel_scale(10.0, 5.0) == 2.0 and pixel_scale(None, 5.0) == 1.0 and pixel_scale(5.0, None) == 1.0
    assert pixel_scale(5.05, 5.0) == 1.0  # within 2%: the integer path, bit-identical to no pixel size
    assert check_pixel_size("4.6") == 4.6 and check_pixel_size(None) is None
    for bad in (0, -5, float("nan"), float("inf"), 5000, 0.001, "abc"):
        with pytest.raises(ValueError, match="nm per pixel"):
            check_pixel_size(bad, "--pixel-size")
    assert in_plane((40.0, 4.0, 6.0)) == 5.0 and in_plane((50.0, 352777.0, 352777.0)) is None and in_plane(None) is None


# --------------------------------------------------------------------------- the model's pixel size


def test_the_shipped_model_knows_its_pixel_size_and_an_old_checkpoint_still_loads(tiny_ckpt, rng):
    assert load_checkpoint(None).pixel_size_nm == pytest.approx(4.6)  # its card: training_data.voxel_size_nm
    old = load_checkpoint(tiny_ckpt)  # a card without training_data
    assert old.pixel_size_nm is None
    img = rng.integers(0, 255, (1, 64, 64)).astype(np.uint8)
    a = segment_volume(img, old, pick_device("cpu", "fp32"), pixel_size=10.0)  # known image, unknown model
    b = segment_volume(img, old, pick_device("cpu", "fp32"))
    np.testing.assert_array_equal(a.prob, b.prob)  # used at the scale it arrives in, as before


# --------------------------------------------------------------------------- metadata


def _tiff(path, **kw):
    tifffile.imwrite(path, np.zeros((2, 32, 32), np.uint8), **kw)
    return path


@pytest.mark.parametrize("kind", ["memory", "lazy"])
def test_pixel_size_read_from_tiff_metadata(kind, tmp_path):
    read = (lambda p: read_volume(p).voxel_size) if kind == "memory" else (lambda p: open_volume(p).voxel_size)
    ome = _tiff(tmp_path / "ome.ome.tif", ome=True, metadata={"PhysicalSizeX": 0.0046, "PhysicalSizeY": 0.0046,
                                                               "PhysicalSizeZ": 0.05})
    assert read(ome) == pytest.approx((50.0, 4.6, 4.6))  # OME: um by default
    ome_nm = _tiff(tmp_path / "nm.ome.tif", ome=True, metadata={"PhysicalSizeX": 8.0, "PhysicalSizeXUnit": "nm",
                                                                 "PhysicalSizeY": 8.0, "PhysicalSizeYUnit": "nm"})
    assert read(ome_nm) == pytest.approx((8.0, 8.0, 8.0))
    ij = _tiff(tmp_path / "ij.tif", imagej=True, resolution=(1 / 0.01, 1 / 0.01),
               metadata={"axes": "ZYX", "spacing": 0.04, "unit": "\\u00B5m"})  # as ImageJ writes um
    assert read(ij) == pytest.approx((40.0, 10.0, 10.0))
    cm = _tiff(tmp_path / "cm.tif", resolution=(1 / 6e-7, 1 / 6e-7), resolutionunit="CENTIMETER")
    assert read(cm)[1:] == pytest.approx((6.0, 6.0))
    screen = _tiff(tmp_path / "screen.tif", resolution=(72, 72), resolutionunit="INCH")  # not a pixel size
    assert read(screen) is None
    assert read(_tiff(tmp_path / "plain.tif", photometric="minisblack")) is None


def test_pixel_size_read_from_zarr_and_hdf5_metadata(tmp_path):
    import h5py

    ome = zarr.open_group(str(tmp_path / "ome.zarr"), mode="w")
    ome.create_array("0", shape=(2, 32, 32), dtype="uint8")
    ome.attrs["multiscales"] = [{
        "axes": [{"name": n, "type": "space", "unit": "micrometer"} for n in "zyx"],
        "datasets": [{"path": "0", "coordinateTransformations": [{"type": "scale", "scale": [0.03, 0.008, 0.008]}]}],
    }]
    assert open_volume(tmp_path / "ome.zarr").voxel_size == pytest.approx((30.0, 8.0, 8.0))
    for attr, value, expect in (("resolution", [40, 4, 4], (40.0, 4.0, 4.0)), ("pixel_size", 7.5, (7.5, 7.5, 7.5)),
                                ("voxel_size_nm", [1e6, 1e6, 1e6], None)):  # absurd: ignored
        arr = zarr.open_array(str(tmp_path / f"{attr}.zarr"), mode="w", shape=(2, 32, 32), dtype="uint8")
        arr.attrs[attr] = value
        got = open_volume(tmp_path / f"{attr}.zarr").voxel_size
        assert got == (pytest.approx(expect) if expect else None)
    with h5py.File(tmp_path / "a.h5", "w") as fh:
        fh.create_dataset("raw", data=np.zeros((2, 32, 32), np.uint8)).attrs["element_size_um"] = [0.04, 0.006, 0.006]
        fh.create_dataset("cremi", data=np.zeros((2, 32, 32), np.uint8)).attrs["resolution"] = [40.0, 4.0, 4.0]
    assert open_volume(tmp_path / "a.h5", "raw").voxel_size == pytest.approx((40.0, 6.0, 6.0))
    assert open_volume(tmp_path / "a.h5", "cremi").voxel_size == pytest.approx((40.0, 4.0, 4.0))


def test_segment_volume_takes_the_pixel_size_from_a_file_and_an_explicit_one_wins(carded_ckpt, tmp_path, rng):
    img = rng.integers(0, 255, (2, 80, 96)).astype(np.uint8)
    path = tmp_path / "ten.tif"
    tifffile.imwrite(path, img, imagej=True, resolution=(1 / 10.0, 1 / 10.0),
                     metadata={"axes": "ZYX", "spacing": 40.0, "unit": "nm"})
    loaded, dev = load_checkpoint(carded_ckpt), pick_device("cpu", "fp32")
    from_file = segment_volume(path, loaded, dev)
    assert from_file.prob.shape == img.shape and from_file.labels.shape == img.shape
    np.testing.assert_array_equal(from_file.prob, segment_volume(img, loaded, dev, pixel_size=10.0).prob)
    plain = segment_volume(img, loaded, dev)  # an array carries no pixel size
    assert np.abs(plain.prob - from_file.prob).max() > 1e-3
    np.testing.assert_array_equal(segment_volume(path, loaded, dev, pixel_size=5.0).prob, plain.prob)


def test_small_object_limits_follow_the_pixel_size():
    """min_size and min_distance are meant in model pixels: an object keeps its size in nm on any grid."""
    from napari_mito_wda.core.engine.instances import instances_2d, sizes_at_scale

    assert sizes_at_scale(1.0) == {"min_size": 64, "min_distance": 9}
    assert sizes_at_scale(2.0) == {"min_size": 16, "min_distance": 4}  # 10 nm image, 5 nm model
    assert sizes_at_scale(0.5) == {"min_size": 256, "min_distance": 18}
    assert sizes_at_scale(40.0)["min_size"] == 1  # never below one pixel
    prob = np.zeros((40, 40), np.float32)
    prob[5:10, 5:10] = 1.0  # 25 px: a 100-model-pixel object at scale 2, kept; at the model's scale, dropped
    assert instances_2d(prob).max() == 0
    assert instances_2d(prob, **sizes_at_scale(2.0)).max() == 1


def test_segment_volume_sizes_objects_in_model_pixels(carded_ckpt):
    """At 10 nm (twice the model's 5 nm pixel) the limit of 4 s model pixels keeps objects of s image pixels."""
    from napari_mito_wda.core.data.synthetic import make_volume
    from napari_mito_wda.core.engine.instances import instances_volume

    img, _ = make_volume((1, 96, 112), n_objects=8, seed=3)
    loaded, dev = load_checkpoint(carded_ckpt), pick_device("cpu", "fp32")
    first = segment_volume(img, loaded, dev, pixel_size=10.0, min_size=4)
    sizes = np.bincount(first.labels.ravel())[1:]
    s = int(np.median(sizes[sizes > 0]))  # an object size this image has
    coarse = segment_volume(img, loaded, dev, pixel_size=10.0, min_size=4 * s)
    scaled = instances_volume(first.prob, first.heat, min_size=s, min_distance=4)
    unscaled = instances_volume(first.prob, first.heat, min_size=4 * s, min_distance=9)
    assert not np.array_equal(scaled > 0, unscaled > 0)  # the two limits differ on this image
    np.testing.assert_array_equal(coarse.labels, scaled)


# --------------------------------------------------------------------------- all paths


def test_chunked_run_rescales_like_the_in_memory_one(carded_ckpt, tmp_path, rng):
    """A zarr store at 8 nm, in chunks, gives the in-memory maps and objects at 8 nm, on the store's grid."""
    from napari_mito_wda.core.data.synthetic import make_volume
    from napari_mito_wda.core.volumes.chunked import ChunkSettings, read_labels, segment_to_zarr
    from napari_mito_wda.core.volumes.runner import ClusterSettings

    img, _ = make_volume((2, 120, 150), n_objects=8, seed=3)
    arr = zarr.open_array(str(tmp_path / "in.zarr"), mode="w", shape=img.shape, dtype=img.dtype, chunks=(1, 64, 64))
    arr[...] = img
    arr.attrs["voxel_size_nm"] = [40.0, 8.0, 8.0]
    loaded = load_checkpoint(carded_ckpt)
    mem = segment_volume(img, loaded, pick_device("cpu", "fp32"), pixel_size=8.0, max_core=16, min_size=4)
    settings = ChunkSettings(chunks=(1, 48, 64), instance_halo=48, device="cpu", precision="fp32", min_size=4)
    res = segment_to_zarr(tmp_path / "in.zarr", tmp_path / "out.zarr", carded_ckpt, settings=settings,
                          cluster=ClusterSettings(scheduler="sync"))
    out = zarr.open_group(str(tmp_path / "out.zarr"), mode="r")
    assert out.attrs["mito_wda"]["scale"] == pytest.approx(1.6) and res.voxel_size == pytest.approx((40, 8, 8))
    np.testing.assert_allclose(out["prob"][...], mem.prob, atol=1e-5)
    labels, voxel = read_labels(tmp_path / "out.zarr")
    assert labels.shape == img.shape and voxel == pytest.approx((40.0, 8.0, 8.0))
    assert res.n_instances == len(np.unique(mem.labels)) - 1


def test_adaptation_trains_at_the_models_pixel_size(adaptable_model_file, tmp_path):
    """The target's working slices and clicks are rescaled as prediction rescales them."""
    from napari_mito_wda.core.adapt import AdaptSettings, adapt
    from napari_mito_wda.core.data.synthetic import make_volume

    from ..conftest import TINY_ADAPT

    image, instances = make_volume((2, 96, 120), n_objects=5, seed=4)
    clicks = np.array([[0, 40.0, 60.0]])
    shapes = {}
    for nm in (None, 10.0):
        loaded = load_checkpoint(adaptable_model_file)
        loaded.meta["training_data"] = {"voxel_size_nm": [40.0, 5.0, 5.0]}
        reps = list(adapt(image, clicks, loaded, AdaptSettings(**TINY_ADAPT | {"max_iters": 2}),
                          dev=pick_device("cpu", "fp32"), pixel_size=nm))
        shapes[nm] = reps[-1].prediction["prob"][0].shape
    assert shapes[None] == (48, 60)  # the working grid: 1/2
    assert shapes[10.0] == (96, 120)  # 10 nm at a 5 nm model: x2, then 1/2
