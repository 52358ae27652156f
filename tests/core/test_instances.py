import numpy as np

from napari_mito_wda.core.engine.instances import instances_2d, instances_volume, link_slices
from napari_mito_wda.core.training.targets import centre_heatmap


def _two_touching_disks():
    yy, xx = np.mgrid[:60, :80]
    a = (yy - 30) ** 2 + (xx - 25) ** 2 < 15**2
    b = (yy - 30) ** 2 + (xx - 52) ** 2 < 15**2
    prob = (a | b).astype(np.float32)
    heat = centre_heatmap((60, 80), np.array([[30, 25], [30, 52]]), sigma=5)
    return prob, heat, a, b


def test_heat_peaks_split_touching_objects():
    prob, heat, a, b = _two_touching_disks()
    lab = instances_2d(prob, heat, min_size=10)
    assert lab.max() == 2
    assert len(np.unique(lab[a & ~b])) == 1 and len(np.unique(lab[b & ~a])) == 1
    assert lab[30, 25] != lab[30, 52]
    assert instances_2d(prob, None, min_size=10).max() == 1  # without centres they merge


def test_blob_without_peak_and_small_specks():
    prob = np.zeros((50, 50), np.float32)
    prob[5:20, 5:20] = 1      # no heat peak -> still one instance
    prob[40:42, 40:42] = 1    # 4 px speck -> dropped
    lab = instances_2d(prob, np.zeros_like(prob), min_size=10)
    assert lab.max() == 1 and lab[10, 10] == 1 and lab[41, 41] == 0


def test_link_slices_joins_overlaps_and_keeps_others_apart():
    stack = np.zeros((3, 30, 30), np.int32)
    stack[0, 5:15, 5:15] = 1
    stack[1, 6:16, 6:16] = 2      # overlaps object 1 -> same 3D id
    stack[1, 20:28, 20:28] = 3    # new object
    stack[2, 21:28, 21:28] = 4    # continues object 3
    out = link_slices(stack)
    assert out[0, 10, 10] == out[1, 10, 10] != 0
    assert out[1, 24, 24] == out[2, 24, 24] != out[1, 10, 10]
    assert len(np.unique(out)) == 3  # background + two 3D objects


def test_volume_ids_are_unique_across_slices_without_linking():
    prob = np.zeros((2, 40, 40), np.float32)
    prob[:, 10:30, 10:30] = 1
    lab = instances_volume(prob, None, min_size=10)
    assert lab[0, 20, 20] != lab[1, 20, 20]
    lab3 = instances_volume(prob, None, link_3d=True, min_size=10)
    assert lab3[0, 20, 20] == lab3[1, 20, 20]


def test_a_bump_on_the_shoulder_of_a_peak_does_not_split_its_object():
    """Two peaks 1.0 and 0.65 in one elongated blob: with a shallow saddle (0.44) the second is not
    prominent and the blob stays whole; with a deep saddle (far apart) it splits."""
    yy, xx = np.mgrid[:60, :120]
    prob = (((yy - 30) / 14.0) ** 2 + ((xx - 60) / 50.0) ** 2 < 1).astype(np.float32)

    def heat_with_second_peak_at(x2):
        return np.maximum(centre_heatmap((60, 120), np.array([[30, 40]]), sigma=9),
                          0.65 * centre_heatmap((60, 120), np.array([[30, x2]]), sigma=9))

    shallow, deep = heat_with_second_peak_at(60), heat_with_second_peak_at(90)
    assert instances_2d(prob, shallow, min_size=10).max() == 1
    assert instances_2d(prob, shallow, min_size=10, peak_prominence=0).max() == 2  # the old rule split it
    assert instances_2d(prob, deep, min_size=10).max() == 2
