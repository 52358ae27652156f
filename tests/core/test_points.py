import numpy as np
import pytest

from napari_mito_wda.core.adapt.points import points_by_slice, read_points, validate_points
from napari_mito_wda.core.data.io import InputError


def test_valid_3d_points_pass_unchanged_and_z_snaps_to_its_slice():
    pts, warns = validate_points([[1.2, 5.0, 6.5], [4.0, 19.4, 0.0]], (5, 20, 30))
    # z = 1.2 labels slice 1; y/x keep their sub-pixel position.
    np.testing.assert_allclose(pts, [[1.0, 5.0, 6.5], [4.0, 19.4, 0.0]])
    assert warns == []


@pytest.mark.parametrize("empty", [None, [], np.zeros((0, 3)), np.zeros((0, 2))])
def test_no_clicks_is_an_empty_n_by_3_array(empty):
    pts, warns = validate_points(empty, (5, 20, 30))
    assert pts.shape == (0, 3) and warns == []


def test_2d_points_on_a_2d_image_get_z_zero():
    for shape in [(20, 30), (1, 20, 30)]:
        pts, _ = validate_points(np.array([[3.0, 4.0], [10.0, 20.0]]), shape)
        np.testing.assert_allclose(pts, [[0, 3, 4], [0, 10, 20]])


def test_2d_points_on_a_stack_are_refused():
    with pytest.raises(InputError, match="2D points"):
        validate_points([[3.0, 4.0]], (5, 20, 30))


def test_out_of_volume_click_is_named_with_its_coordinates_and_the_shape():
    with pytest.raises(InputError) as err:
        validate_points([[1, 2, 3], [2, 25, 3]], (5, 20, 30))
    msg = str(err.value)
    assert "click 1" in msg and "(2, 25, 3)" in msg and "(5, 20, 30)" in msg
    assert "click 0" not in msg


def test_volume_border_follows_pixel_extent():
    # Pixel i spans [i - 0.5, i + 0.5): y = 19.5 rounds to row 20, outside 20 rows; y = -0.5 is row 0.
    validate_points([[0, -0.5, 29.49]], (5, 20, 30))
    with pytest.raises(InputError, match="outside"):
        validate_points([[0, 19.5, 0]], (5, 20, 30))
    with pytest.raises(InputError, match="outside"):
        validate_points([[0, -0.6, 0]], (5, 20, 30))
    # Half-way values round up (not to even): y = 20.5 is row 21, outside 21 rows; z = 2.5 is slice 3.
    with pytest.raises(InputError, match="outside"):
        validate_points([[0, 20.5, 0]], (5, 21, 30))
    pts, _ = validate_points([[2.5, 1, 1]], (5, 21, 30))
    assert pts[0, 0] == 3


def test_nan_click_is_named():
    with pytest.raises(InputError, match=r"click 2 .*nan"):
        validate_points([[0, 1, 1], [0, 5, 5], [0, np.nan, 3]], (5, 20, 30))


@pytest.mark.parametrize("bad", [np.zeros((2, 4)), np.zeros((2, 1)), np.zeros((2, 3, 1))])
def test_wrong_number_of_columns(bad):
    with pytest.raises(InputError, match="columns"):
        validate_points(bad, (5, 20, 30))


def test_duplicates_are_merged_into_the_first_click_with_warnings():
    pts, warns = validate_points(
        [
            [1, 5.0, 5.0],
            [1, 5.3, 5.2],   # same voxel (5, 5) as click 0 -> merged
            [1, 6.5, 5.0],   # voxel (7, 5) but 1.5 px from click 0 on slice 1 -> merged
            [2, 5.0, 5.0],   # same y, x on another slice -> kept
            [1, 7.1, 5.0],   # 2.1 px from click 0 -> kept
        ],
        (5, 20, 30),
    )
    np.testing.assert_allclose(pts, [[1, 5, 5], [2, 5, 5], [1, 7.1, 5]])
    assert len(warns) == 2
    assert "click 1" in warns[0] and "click 0" in warns[0]
    assert "click 2" in warns[1] and "1.5 px" in warns[1]


def test_read_napari_csv_3d_2d_and_extra_columns(tmp_path):
    (tmp_path / "a.csv").write_text("index,axis-0,axis-1,axis-2\n0,1.0,2.0,3.0\n1,4,5,6.5\n")
    np.testing.assert_allclose(read_points(tmp_path / "a.csv"), [[1, 2, 3], [4, 5, 6.5]])
    (tmp_path / "b.csv").write_text("index,axis-0,axis-1\n0,7,8\n")
    np.testing.assert_allclose(read_points(tmp_path / "b.csv"), [[7, 8]])
    # Columns in another order plus a property column: axes are taken by number.
    (tmp_path / "c.csv").write_text("axis-2,label,axis-0,axis-1\n3,mito,1,2\n")
    np.testing.assert_allclose(read_points(tmp_path / "c.csv"), [[1, 2, 3]])
    (tmp_path / "d.csv").write_text("index,axis-0,axis-1,axis-2\n")
    assert read_points(tmp_path / "d.csv").shape == (0, 3)


def test_read_npy(tmp_path):
    np.save(tmp_path / "p.npy", np.array([[1, 2, 3]], dtype=np.int32))
    np.testing.assert_allclose(read_points(tmp_path / "p.npy"), [[1, 2, 3]])


def test_read_errors_are_clear(tmp_path):
    with pytest.raises(InputError, match="not found"):
        read_points(tmp_path / "missing.csv")
    (tmp_path / "g.csv").write_text("index,axis-0,axis-1,axis-2\n0,1,2,3\n1,1,abc,3\n")
    with pytest.raises(InputError, match="line 3"):
        read_points(tmp_path / "g.csv")
    (tmp_path / "h.csv").write_text("name,colour\nx,red\n")
    with pytest.raises(InputError, match="axis-0"):
        read_points(tmp_path / "h.csv")
    (tmp_path / "bin.csv").write_bytes(b"\xff\xfe\x00\x81\x93garbage")
    with pytest.raises(InputError):
        read_points(tmp_path / "bin.csv")
    (tmp_path / "bad.npy").write_bytes(b"not numpy")
    with pytest.raises(InputError, match="npy"):
        read_points(tmp_path / "bad.npy")
    (tmp_path / "p.json").write_text("[]")
    with pytest.raises(InputError, match="unsupported"):
        read_points(tmp_path / "p.json")


def test_points_by_slice_groups_rounded_z():
    groups = points_by_slice(np.array([[1, 2, 3], [2.6, 7, 8], [1, 4, 5]], dtype=float))
    assert sorted(groups) == [1, 3]
    np.testing.assert_allclose(groups[1], [[2, 3], [4, 5]])
    np.testing.assert_allclose(groups[3], [[7, 8]])
    assert points_by_slice(np.zeros((0, 3))) == {}


def test_simulated_clicks_follow_the_benchmark_protocol():
    from napari_mito_wda.core.adapt.points import simulate_clicks

    lab = np.zeros((2, 40, 60), np.uint8)
    for i in range(10):                      # 10 objects on slice 0 (5x5 squares)
        lab[0, 2 + (i // 5) * 20 : 7 + (i // 5) * 20, 2 + (i % 5) * 11 : 7 + (i % 5) * 11] = 1
    lab[1, 10:31, 10:21] = 1                 # one 21x11 object on slice 1: deepest on x = 15, y in 15..25
    pts = simulate_clicks(lab, fraction=0.2, seed=0)
    assert (pts[:, 0] == 0).sum() == 2 and (pts[:, 0] == 1).sum() == 1   # 20% of 10, and at least 1
    z, y, x = pts[pts[:, 0] == 1][0]
    assert x == 15 and 15 <= y <= 25                                     # on the innermost ridge
    for z, y, x in pts[pts[:, 0] == 0].astype(int):
        assert lab[z, y, x] == 1 and lab[z, y - 2 : y + 3, x - 2 : x + 3].all()  # centre of a 5x5 square
    np.testing.assert_array_equal(pts, simulate_clicks(lab, fraction=0.2, seed=0))
    assert len(simulate_clicks(lab, fraction=1.0, seed=0, max_total=4)) == 4
