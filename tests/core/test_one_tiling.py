"""One tiling for both paths: a volume in memory and the same volume in chunks give the same objects.

Issue 17: the in-memory path once blended overlapping tiles while the chunked one used halo-exact
tiles, so a TIFF and a zarr store of one volume gave different instances (1,259 vs 1,260 objects).
Here objects cross tile borders (a small max_core: 12 tiles a slice) and chunk faces (16 chunks a
slice, with instance windows smaller than the slice), under both precisions a CPU may pick.
"""

import numpy as np
import pytest
import zarr

from napari_mito_wda.core.data.checkpoint import load_checkpoint
from napari_mito_wda.core.engine.device import pick_device
from napari_mito_wda.core.engine.segment import segment_volume
from napari_mito_wda.core.volumes.chunked import ChunkSettings, read_labels, segment_to_zarr
from napari_mito_wda.core.volumes.runner import ClusterSettings

from .test_stitching import same_partition

CHUNKS = (1, 96, 136)  # 4 x 4 chunks a slice of 384 x 512, faces at y = 96, 192, 288 and x = 136, 272, 408


def matched_objects(a: np.ndarray, b: np.ndarray) -> int:
    """Number of objects of `a` that have an object of `b` with the identical mask (ids may differ)."""
    fg = (a > 0) | (b > 0)
    pairs, counts = np.unique(np.stack([a[fg], b[fg]]).astype(np.int64), axis=1, return_counts=True)
    size_a = dict(zip(*np.unique(a[a > 0], return_counts=True)))
    size_b = dict(zip(*np.unique(b[b > 0], return_counts=True)))
    return sum(1 for (i, j), n in zip(pairs.T, counts) if i and j and n == size_a[i] == size_b[j])


def crossing(labels: np.ndarray, ys, xs) -> int:
    """Objects with pixels on both sides of one of the lines y = ys or x = xs."""
    ids = set()
    for y in ys:
        ids |= set(np.intersect1d(labels[:, y - 1], labels[:, y]).tolist())
    for x in xs:
        ids |= set(np.intersect1d(labels[:, :, x - 1], labels[:, :, x]).tolist())
    return len(ids - {0})


def test_matched_objects_can_fail():
    a = np.array([[1, 1, 0, 2, 2]])
    assert matched_objects(a, a * 3) == 2
    assert matched_objects(a, np.array([[1, 1, 1, 2, 2]])) == 1  # one object grew by a pixel
    assert matched_objects(a, np.array([[1, 1, 0, 1, 1]])) == 0  # merged


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_in_memory_and_chunked_give_the_same_objects(precision, tmp_path):
    from napari_mito_wda.sample import load_lucchi_sample

    image = np.ascontiguousarray(load_lucchi_sample()[0][:2, :384, :512])  # real EM, the CHUNKS' geometry
    dev = pick_device("cpu", precision=precision)
    loaded = load_checkpoint(None, device=dev.device)
    mem = segment_volume(image, loaded, dev, max_core=64)  # 3 x 4 tiles of 64 working pixels a slice
    settings = ChunkSettings(chunks=CHUNKS, instance_halo=128, precision=precision, device="cpu")
    res = segment_to_zarr(image, tmp_path / "out.zarr", loaded, settings=settings,
                          cluster=ClusterSettings(scheduler="sync"))
    out = zarr.open_group(str(tmp_path / "out.zarr"), mode="r")
    np.testing.assert_allclose(out["prob"][...], mem.prob, atol=1e-5, rtol=0)
    np.testing.assert_allclose(out["heat"][...], mem.heat, atol=1e-4, rtol=1e-4)
    got = read_labels(tmp_path / "out.zarr")[0][...]
    n = len(np.unique(mem.labels)) - 1
    assert n >= 20  # enough objects for the comparison to mean something ...
    # ... and many of them cross chunk faces, and tile borders (every 64 working = 128 full pixels).
    assert crossing(mem.labels, ys=(96, 192, 288), xs=(136, 272, 408)) >= 5
    assert crossing(mem.labels, ys=(128, 256), xs=(128, 256, 384)) >= 5
    assert res.cut_objects == 0  # every object fits the instance window: stitching is exact
    assert res.n_instances == n == len(np.unique(got)) - 1
    assert matched_objects(mem.labels, got) == n
    assert same_partition(mem.labels, got)
