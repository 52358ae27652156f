import numpy as np
import pytest

from napari_mito_wda.core.adapt.pseudo_labels import (
    budget_anchor,
    instance_aware_pseudo_labels,
    pixel_confidence_pseudo_labels,
    ratio_schedule,
    spare_background_near,
)

SHAPE = (60, 80)


def gaussian(centre, height, sigma=3.0):
    yy, xx = np.mgrid[: SHAPE[0], : SHAPE[1]]
    return height * np.exp(-((yy - centre[0]) ** 2 + (xx - centre[1]) ** 2) / (2 * sigma**2))


def scene():
    """Confident blobs A (clicked, heat 0.9), B (heat 0.8), C (heat 0.3); a 2-px speck; a missed click."""
    prob = np.zeros(SHAPE, np.float32)
    prob[10:20, 10:20] = 0.95   # A, centroid (14.5, 14.5)
    prob[10:20, 40:50] = 0.95   # B, centroid (14.5, 44.5)
    prob[40:50, 40:50] = 0.95   # C
    prob[55, 70:72] = 0.99      # 2 px: below min_size -> ignored, never background
    prob[30, 5] = 0.5           # uncertain pixel -> ignored
    heat = (gaussian((15, 15), 0.9) + gaussian((15, 45), 0.8) + gaussian((45, 45), 0.3)).astype(np.float32)
    clicks = np.array([[15.0, 15.0], [45.0, 15.0]])   # on A, and on nothing confident (missed object)
    return prob, heat, clicks


def test_ipl_selects_clicked_and_best_unclicked_instance_only():
    prob, heat, clicks = scene()
    # Budget ceil(0.15 x 5) = ceil(0.75) = 1 peak. A's peak (0.9) lies in a clicked component and must not
    # use it up, so the one kept peak is B's (0.8), not C's (0.3).
    r = instance_aware_pseudo_labels(prob, heat, clicks, ratio=0.15, count=5, blob_radius=(4, 5),
                                     ignore_ring=2, click_exclusion_radius=10)
    lab = r.label
    assert lab.dtype == np.uint8 and set(np.unique(lab)) <= {0, 1, 255}
    assert (lab[10:20, 10:20] == 1).all()      # A: clicked
    assert (lab[10:20, 40:50] == 1).all()      # B: top peak
    assert (lab[40:50, 40:50] == 255).all()    # C: confident but not selected -> ignored, NOT background
    assert (lab[55, 70:72] == 255).all() and lab[30, 5] == 255
    assert (r.n_clicked, r.n_from_peaks, r.n_click_blobs, r.n_selected) == (1, 1, 1, 3)
    np.testing.assert_allclose(r.kept_peaks, [[15, 45]])
    # Missed click at (45, 15): ellipse radii (4, 5) = 1; (45, 20) is on its rim, (45, 21) is not.
    assert lab[45, 15] == 1 and lab[45, 20] == 1 and lab[41, 15] == 1 and lab[40, 15] != 1
    # Background needs >10 px from clicks: (45, 24) is 9 px away -> 255, (45, 26) is 11 px away -> 0.
    assert lab[45, 24] == 255 and lab[45, 26] == 0
    # Background also needs heat < 0.05: 6 px right of B's peak the heat is 0.8 e^(-36/18) = 0.108 -> 255;
    # 10 px right it is 0.8 e^(-100/18) = 0.003 -> 0 (p = 0 in both).
    assert lab[15, 51] == 255 and lab[15, 55] == 0
    # Detection targets: centroids of the pseudo-instances (A, B, the blob).
    got = sorted(map(tuple, np.round(r.centres, 3).tolist()))
    assert got == [(14.5, 14.5), (14.5, 44.5), (45.0, 15.0)]


def test_missed_click_gets_an_ignore_ring_when_background_comes_from_probability_only():
    prob, heat, clicks = scene()
    r = instance_aware_pseudo_labels(prob, heat, clicks, ratio=0.15, count=5, blob_radius=(4, 5),
                                     ignore_ring=2, bg_from_heat=False)
    lab = r.label
    assert lab[45, 20] == 1                     # blob rim
    assert lab[45, 21] == 255 and lab[45, 22] == 255   # ring: within radii (6, 7)
    assert lab[45, 23] == 0                     # outside the ring: plain p < 0.1 background
    # Along y: blob rim at 4 px, ring out to 4 + 2 = 6 px.
    assert lab[49, 15] == 1 and lab[50, 15] == 255 and lab[51, 15] == 255 and lab[52, 15] == 0
    # Without the detector, background comes right up to the instances.
    assert lab[15, 51] == 0


def test_budget_ceiling_is_robust_to_rounding_and_ranks_by_heat():
    prob = np.zeros(SHAPE, np.float32)
    heat = np.zeros(SHAPE, np.float32)
    values = [0.9, 0.7, 0.5, 0.3]
    for i, v in enumerate(values):
        prob[5:12, 5 + 18 * i: 12 + 18 * i] = 0.95
        heat += gaussian((8, 8 + 18 * i), v)
    # ratio 0.3 x count 10 = 3, but 0.1 * 3 = 0.30000000000000004 and x 10 = 3.0000000000000004 in floating
    # point: the budget must still be 3 instances, not 4; the three highest peaks win.
    r = instance_aware_pseudo_labels(prob, heat, None, ratio=0.1 * 3, count=10)
    assert r.n_from_peaks == 3 and r.n_clicked == 0 and r.n_click_blobs == 0
    assert (r.label[8, 8 + 18 * np.arange(3)] == 1).all() and r.label[8, 8 + 54] == 255
    # Round 0 (ratio 0) and no clicks: nothing is foreground.
    r0 = instance_aware_pseudo_labels(prob, heat, None, ratio=0.0, count=20)
    assert r0.n_selected == 0 and not (r0.label == 1).any() and len(r0.centres) == 0


def test_a_background_peak_spends_budget_unless_restricted_to_components():
    prob = np.zeros(SHAPE, np.float32)
    prob[30:40, 30:40] = 0.95
    heat = (gaussian((10, 60), 0.9) + gaussian((35, 35), 0.4)).astype(np.float32)  # top peak on p = 0
    r = instance_aware_pseudo_labels(prob, heat, None, ratio=1.0, count=1)
    assert r.n_from_peaks == 0 and (r.label[30:40, 30:40] == 255).all()
    np.testing.assert_allclose(r.kept_peaks, [[10, 60]])
    r = instance_aware_pseudo_labels(prob, heat, None, ratio=1.0, count=1, peaks_on_components_only=True)
    assert r.n_from_peaks == 1 and (r.label[30:40, 30:40] == 1).all()


def test_pixel_confidence_baseline():
    prob = np.array([[0.05, 0.1, 0.5, 0.9, 0.95]])
    # strict thresholds: 0.1 and 0.9 are not confident
    np.testing.assert_array_equal(pixel_confidence_pseudo_labels(prob, 0.9), [[0, 255, 255, 255, 1]])
    np.testing.assert_array_equal(pixel_confidence_pseudo_labels(prob, 0.8), [[0, 0, 255, 1, 1]])


def test_ratio_schedule():
    assert [ratio_schedule(1, r) for r in range(5)] == pytest.approx([0.0, 0.15, 0.30, 0.45, 0.60])
    assert [ratio_schedule(2, r) for r in (1, 2, 3)] == pytest.approx([0.35, 0.70, 1.0])
    with pytest.raises(ValueError):
        ratio_schedule(3, 1)


def test_budget_anchor_prefers_user_input_then_frozen_heat_count():
    assert budget_anchor(3, click_fraction=0.15) == 20            # 3 / 0.15
    assert budget_anchor(3, click_fraction=0.15, heat_count=99) == 20   # clicks win over the heat count
    assert budget_anchor(0, click_fraction=0.15, heat_count=12) == 12   # no clicks here: frozen count
    assert budget_anchor(2, heat_count=12) == 12
    assert budget_anchor(5, heat_count=3) == 5                     # never below the clicks
    assert budget_anchor(2) == 2 and budget_anchor(0) == 0
    with pytest.raises(ValueError):
        budget_anchor(3, click_fraction=0.0)


def test_background_near_given_points_becomes_ignored_and_nothing_else_changes():
    label = np.zeros((20, 30), np.uint8)
    label[0:3, 0:3] = 1
    label[15:, 25:] = 255
    out = spare_background_near(label.copy(), np.array([[10.0, 10.0], [-2.0, 40.0], [1.0, 1.0]]), radius=3)
    changed = out != label
    # a disc of radius 3 around (10, 10), and one around the clamped point (0, 29)
    assert changed[10, 13] and changed[7, 10] and not changed[10, 14] and not changed[6, 10]
    assert changed[0, 29] and changed[3, 29] and not changed[4, 29]
    assert (out[changed] == 255).all() and (label[changed] == 0).all()
    assert (out[0:3, 0:3] == 1).all()  # mito stays mito
    assert (spare_background_near(label.copy(), np.zeros((0, 2)), 3) == label).all()
