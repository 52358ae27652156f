"""The shown instances keep the user's word: objects under "not a mitochondrion" clicks are left out by rule
(core.adapt.negatives.drop_negated), on hand-made instance maps."""

import numpy as np
import pytest

from napari_mito_wda.core.adapt.live import SlicePreview, leave_out_negated
from napari_mito_wda.core.adapt.negatives import drop_negated
from napari_mito_wda.core.data.io import InputError


def _per_slice_map():
    """3 slices, ids numbered per slice (as previews are): id 1 at rows 2-6 on slices 0 and 1 (two different
    objects that share an id), id 2 at rows 10-14 on slice 0."""
    lab = np.zeros((3, 20, 20), np.uint32)
    lab[0, 2:7, 2:7] = 1
    lab[1, 2:7, 2:7] = 1
    lab[0, 10:15, 10:15] = 2
    return lab


def test_the_object_under_a_negative_click_goes_on_its_slice_only():
    lab = _per_slice_map()
    before = lab.copy()
    dropped, spared, changed = drop_negated(lab, [[0, 3, 5]])
    assert (dropped, spared, changed) == (1, 0, [0])
    assert not (lab[0] == 1).any()                           # the clicked object is gone whole
    assert np.array_equal(lab[1], before[1])                 # the same id on the next slice is another object
    assert np.array_equal(lab[0] == 2, before[0] == 2)       # the other object stays


def test_a_positive_click_on_the_same_object_of_that_slice_spares_it():
    lab = _per_slice_map()
    dropped, spared, changed = drop_negated(lab, [[0, 3, 3]], positives=[[0, 5, 5]])
    assert (dropped, spared, changed) == (0, 1, [])
    assert (lab[0] == 1).sum() == 25
    # a positive click on the same id of another slice is another object: it spares nothing here
    lab = _per_slice_map()
    assert drop_negated(lab, [[0, 3, 3]], positives=[[1, 4, 4]])[:2] == (1, 0)


def test_linked_instances_go_as_whole_3d_objects_unless_a_positive_click_lies_anywhere_on_them():
    lab = np.zeros((4, 20, 20), np.uint32)
    lab[0:3, 2:7, 2:7] = 5       # one 3D object on slices 0-2
    lab[3, 12:16, 12:16] = 6
    dropped, _, changed = drop_negated(lab, [[1, 4, 4]], linked=True)
    assert dropped == 1 and changed == [0, 1, 2] and not (lab == 5).any() and (lab == 6).sum() == 16
    lab[0:3, 2:7, 2:7] = 5
    assert drop_negated(lab, [[1, 4, 4]], positives=[[2, 3, 3]], linked=True)[:2] == (0, 1)
    assert (lab == 5).sum() == 75


def test_clicks_on_background_or_none_change_nothing_and_two_clicks_on_one_object_count_once():
    lab = _per_slice_map()
    before = lab.copy()
    assert drop_negated(lab, [[0, 18, 18]]) == (0, 0, [])
    assert drop_negated(lab, None) == (0, 0, [])
    assert np.array_equal(lab, before)
    assert drop_negated(lab, [[0, 2, 2], [0, 6, 6], [0, 12, 12]])[:2] == (2, 0)
    assert not lab[0].any()


def test_a_2d_map_takes_yx_clicks_and_a_click_outside_the_map_is_refused_clearly():
    lab = np.zeros((20, 20), np.int32)
    lab[2:7, 2:7] = 3
    assert drop_negated(lab, [[4.4, 4.6]])[0] == 1 and not lab.any()
    with pytest.raises(InputError, match="outside"):
        drop_negated(np.zeros((2, 20, 20), np.uint32), [[0, 25, 3]])


def test_previews_leave_out_the_objects_under_the_negative_clicks_of_their_own_slice():
    lab = np.zeros((20, 20), np.int32)
    lab[2:7, 2:7] = 1
    lab[10:15, 10:15] = 2
    previews = [SlicePreview(z, lab.copy(), None, None) for z in (3, 4)]
    n = leave_out_negated(previews, negatives=np.array([[3, 4, 4], [4, 12, 12], [9, 12, 12]], float),
                          positives=np.array([[4, 11, 11]], float))
    assert n == 1                                               # slice 4's click is spared by its positive
    assert not (previews[0].labels == 1).any() and (previews[0].labels == 2).sum() == 25
    assert np.array_equal(previews[1].labels, lab)
