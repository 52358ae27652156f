"""Synthetic EM-like data: shapes, determinism, label sanity, look and the SOURCE/TARGET domain shift."""

from dataclasses import replace

import numpy as np
import pytest
from scipy import ndimage as ndi

from napari_mito_wda.core.data.synthetic import SOURCE, TARGET, Domain, make_pair, make_slice, make_volume

SHAPE = (8, 96, 96)


@pytest.fixture(scope="module")
def pair():
    return make_pair(SHAPE, 10, seed=3)


def test_dtype_shape():
    img, lab = make_volume((4, 64, 64), 5, SOURCE, seed=1)
    assert img.shape == lab.shape == (4, 64, 64)
    assert img.dtype == np.uint8 and lab.dtype == np.uint16
    img2, lab2 = make_slice((80, 72), 4, SOURCE, seed=1)
    assert img2.shape == lab2.shape == (80, 72)
    assert img2.dtype == np.uint8 and lab2.dtype == np.uint16
    assert lab2.max() >= 1


def test_deterministic_per_seed():
    a = make_volume((4, 64, 64), 6, SOURCE, seed=7)
    b = make_volume((4, 64, 64), 6, SOURCE, seed=7)
    c = make_volume((4, 64, 64), 6, SOURCE, seed=8)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])
    assert not np.array_equal(a[1], c[1])


@pytest.mark.parametrize("domain", [SOURCE, TARGET])
def test_labels_consecutive_present_non_overlapping(domain):
    _, lab = make_volume(SHAPE, 10, domain, seed=2)
    ids = np.unique(lab)
    n = int(lab.max())
    assert n >= 5
    # Every placed id 1..n has voxels (and nothing else is there).
    np.testing.assert_array_equal(ids, np.arange(n + 1))
    # Non-overlap plus a gap: each 3D connected component holds exactly one id, and no two different
    # ids touch (6-connectivity).
    comps, n_comps = ndi.label(lab > 0)
    assert n_comps >= n
    for axis in range(3):
        a = np.moveaxis(lab, axis, 0)
        lo, hi = a[:-1], a[1:]
        touching = (lo > 0) & (hi > 0) & (lo != hi)
        assert not touching.any()


def test_full_volume_gives_up_gracefully():
    _, lab = make_volume((2, 40, 40), 200, replace(SOURCE, object_radius=10.0), seed=0)
    n = int(lab.max())
    assert 1 <= n < 200
    np.testing.assert_array_equal(np.unique(lab), np.arange(n + 1))


@pytest.mark.parametrize("domain", [SOURCE, TARGET, Domain()])
def test_objects_darker_than_background(domain):
    img, lab = make_volume(SHAPE, 10, domain, seed=4)
    fg = lab > 0
    assert img[fg].mean() < img[~fg].mean() - 10


def test_invert_flips_intensities():
    img, lab = make_volume(SHAPE, 10, replace(SOURCE, invert=True), seed=4)
    fg = lab > 0
    assert img[fg].mean() > img[~fg].mean() + 10


def test_domain_shift_is_real(pair):
    (src, lab_s), (tgt, lab_t) = pair["source"], pair["target"]
    # Global brightness and background spread (noise + clutter) differ clearly.
    assert abs(float(src.mean()) - float(tgt.mean())) > 10
    assert tgt[lab_t == 0].std() > 1.3 * src[lab_s == 0].std()
    # Object/background contrast (relative to noise) drops clearly in the target.
    def cnr(img, lab):
        fg = lab > 0
        return (img[~fg].mean() - img[fg].mean()) / img[~fg].std()

    assert cnr(tgt, lab_t) < 0.8 * cnr(src, lab_s)
    # Per-slice high-frequency noise (Laplacian energy in the background) differs too.
    def hf(img, lab):
        return np.abs(ndi.laplace(img.astype(float))[lab == 0]).mean()

    assert abs(hf(tgt, lab_t) - hf(src, lab_s)) > 0.2 * hf(src, lab_s)


def test_target_objects_are_larger(pair):
    def mean_area(lab):
        # Mean area of all per-slice cross-sections.
        areas = np.concatenate([np.bincount(s.ravel())[1:] for s in lab])
        return areas[areas > 0].mean()

    def mean_max_area(lab):
        # Largest cross-section of each 3D object (its central slice).
        n = int(lab.max())
        return np.mean([max((s == i).sum() for s in lab) for i in range(1, n + 1)])

    assert mean_max_area(pair["target"][1]) > 1.5 * mean_max_area(pair["source"][1])
    assert mean_area(pair["target"][1]) > mean_area(pair["source"][1])


def test_objects_span_several_slices_and_shrink_at_ends():
    _, lab = make_volume((10, 96, 96), 8, SOURCE, seed=5)
    spans, smooth = [], []
    for i in range(1, int(lab.max()) + 1):
        area = (lab == i).sum(axis=(1, 2))
        zs = np.flatnonzero(area)
        # Contiguous in z.
        assert zs[-1] - zs[0] + 1 == zs.size
        spans.append(zs.size)
        # Away from the volume border an object is largest in the middle, smaller at its ends.
        if zs[0] > 0 and zs[-1] < lab.shape[0] - 1 and zs.size >= 3:
            smooth.append(area[zs[0]] < area.max() and area[zs[-1]] < area.max())
    assert np.median(spans) >= 3
    assert smooth and all(smooth)


def test_texture_is_background_only():
    plain = replace(SOURCE, texture=0.0, noise=0.0)
    busy = replace(SOURCE, texture=0.6, noise=0.0)
    img0, lab0 = make_volume(SHAPE, 10, plain, seed=6)
    img1, lab1 = make_volume(SHAPE, 10, busy, seed=6)
    np.testing.assert_array_equal(lab0, lab1)
    bg = lab0 == 0
    assert img1[bg].astype(float).var() > 2 * img0[bg].astype(float).var() + 1
    # Deep inside objects (away from the blurred border) the clutter changes nothing.
    inner = ndi.binary_erosion(lab0 > 0, structure=np.ones((1, 7, 7)))
    assert inner.any()
    np.testing.assert_array_equal(img0[inner], img1[inner])


def test_small_volume_cheap_and_2d_slice_has_full_sections():
    img, lab = make_volume((4, 64, 64), 6, SOURCE, seed=0)
    assert lab.max() >= 1
    img2, lab2 = make_slice((128, 128), 8, TARGET, seed=0)
    assert lab2.max() >= 3
    fg = lab2 > 0
    assert img2[fg].mean() < img2[~fg].mean()
