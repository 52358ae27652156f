"""Chunked instances stitched across faces and corners equal the in-memory instances (up to ids)."""

import numpy as np
import pytest
from scipy import ndimage as ndi

from napari_mito_wda.core.engine.instances import instances_volume
from napari_mito_wda.core.volumes.stitching import instances_in_chunks


def same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    """True when a and b are the same labelling up to a renaming of ids."""
    if not np.array_equal(a > 0, b > 0):
        return False
    fg = a > 0
    pairs = np.unique(np.stack([a[fg], b[fg]]).astype(np.int64), axis=1)
    return pairs.shape[1] == np.unique(a[fg]).size == np.unique(b[fg]).size


def maps_from_objects(shape, centres, radius=11.0, sigma=4.0):
    """Probability (1 inside discs, soft edge) and a centre heatmap with one peak per disc centre.

    Peak heights differ per disc, as a network's float heatmap does: skimage's watershed breaks ties
    between *equally high* seeds by heap position, which depends on the other objects in the image.
    """
    Z, H, W = shape
    yy, xx = np.mgrid[:H, :W]
    prob = np.zeros(shape, np.float32)
    heat = np.zeros(shape, np.float32)
    for i, (z, cy, cx, r) in enumerate(centres):
        d = np.hypot(yy - cy, xx - cx)
        prob[z] = np.maximum(prob[z], np.clip(r + 0.5 - d, 0, 1))
        heat[z] = np.maximum(heat[z], (1 - 0.01 * i) * np.exp(-0.5 * (d / sigma) ** 2) * (d < r))
    return prob, heat


def test_same_partition_can_fail():
    a = np.array([[1, 1, 2, 2]])
    assert same_partition(a, a * 5)
    assert not same_partition(a, np.array([[1, 1, 1, 1]]))  # merged
    assert not same_partition(np.array([[1, 1, 1, 1]]), a)  # split


def test_objects_across_faces_and_corners_match_in_memory():
    chunks = (2, 40, 48)
    shape = (5, 100, 130)
    # Discs centred on chunk corners (40, 48), (80, 96), on faces, and a pair of touching discs
    # (one blob, two centres: the watershed splits it) straddling the face x = 48.
    centres = [(0, 40, 48, 11), (1, 80, 96, 12), (2, 40, 70, 9), (3, 60, 96, 10), (4, 20, 20, 8),
               (0, 75, 42, 9), (0, 75, 56, 9), (2, 79, 47, 7), (4, 39, 95, 13), (1, 5, 128, 6)]
    prob, heat = maps_from_objects(shape, centres)
    ref = instances_volume(prob, heat)
    got, st, cut = instances_in_chunks(prob, heat, chunks, halo=32)
    assert cut == 0 and st.mismatches == 0
    assert same_partition(ref, got)
    assert got.max() == st.n_instances == len(np.unique(ref)) - 1
    # The touching pair stays two instances in both (so the test sees watershed splits across a face).
    assert len(np.unique(got[0, 65:85, 30:70])) - 1 == 2


def test_synthetic_em_like_objects(rng):
    from napari_mito_wda.core.data.synthetic import make_volume

    _, labels = make_volume((4, 120, 150), n_objects=25, seed=2)
    prob = ndi.gaussian_filter((labels > 0).astype(np.float32), (0, 1, 1))
    dist = np.stack([ndi.distance_transform_edt(s > 0) for s in labels]).astype(np.float32)
    tone = 1 - 0.003 * np.arange(labels.max() + 1)  # distinct peak heights (see maps_from_objects)
    heat = dist / max(dist.max(), 1) * tone[labels]
    ref = instances_volume(prob, heat)
    for chunks in [(1, 32, 32), (3, 50, 41), (4, 120, 150)]:
        got, st, cut = instances_in_chunks(prob, heat, chunks, halo=48)
        assert cut == 0
        assert same_partition(ref, got), chunks


def test_too_small_a_halo_is_reported():
    prob, heat = maps_from_objects((1, 80, 80), [(0, 40, 40, 25)])
    got, st, cut = instances_in_chunks(prob, heat, (1, 40, 40), halo=4)
    assert cut > 0


@pytest.mark.parametrize("min_size", [64, 300])
def test_size_filter_sees_whole_objects(min_size):
    """A disc of ~380 px split 4 ways by a corner is kept or dropped as a whole."""
    prob, heat = maps_from_objects((1, 64, 64), [(0, 32, 32, 11)])
    ref = instances_volume(prob, heat, min_size=min_size)
    got, _, _ = instances_in_chunks(prob, heat, (1, 32, 32), halo=16, min_size=min_size)
    assert same_partition(ref, got) and got.max() == ref.max() == (1 if min_size == 64 else 1)
