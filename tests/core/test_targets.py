import numpy as np
import pytest

from napari_mito_wda.core.training.targets import centre_heatmap, count_estimate, instance_centres, peak_mass


def test_centres_of_components_drop_tiny_ones():
    mask = np.zeros((40, 40), np.uint8)
    mask[2:7, 2:7] = 1        # 5x5 square centred at (4, 4)
    mask[20:24, 10:30] = 1    # 4x20 bar centred at (21.5, 19.5)
    mask[35, 35] = 1          # a single pixel: noise, dropped
    cents = instance_centres(mask)
    assert sorted(map(tuple, cents.tolist())) == [(4.0, 4.0), (21.5, 19.5)]


def test_centres_from_touching_instance_ids_stay_separate():
    lab = np.zeros((20, 20), np.int32)
    lab[5:10, 0:10] = 1
    lab[5:10, 10:20] = 2
    cents = instance_centres(lab)
    assert cents.tolist() == [[7.0, 4.5], [7.0, 14.5]]


def test_heatmap_peak_height_and_count_estimate():
    centres = np.array([[20, 20], [20, 70], [60, 45]])
    heat = centre_heatmap((90, 100), centres, sigma=4.0)
    assert heat[20, 20] == pytest.approx(1.0, abs=0.02)
    assert heat[40, 45] < 1e-3
    assert heat.sum() == pytest.approx(3 * peak_mass(4.0), rel=0.01)
    assert count_estimate(heat, sigma=4.0) == 3
    assert count_estimate(np.zeros((10, 10)), sigma=4.0) == 0


def test_empty_mask_gives_no_centres():
    assert instance_centres(np.zeros((10, 10), np.uint8)).shape == (0, 2)
    assert centre_heatmap((10, 10), np.zeros((0, 2)), 3.0).max() == 0
