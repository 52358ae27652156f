"""Suggested clicks on hand-made maps, and `mito-wda suggest` writing a CSV that `adapt` reads back."""

import numpy as np
import pytest
import tifffile

from napari_mito_wda.core.adapt.points import read_points, validate_points, write_points_csv
from napari_mito_wda.core.adapt.suggest import suggest_points
from napari_mito_wda.core.data.synthetic import make_volume

from .conftest import cli


def _maps(z=3):
    prob = np.full((z, 96, 96), 0.01, np.float32)
    heat = np.zeros_like(prob)
    prob[0, 10:30, 10:30] = 0.99      # confident object with its centre peak
    heat[0, 20, 20] = 1.0
    prob[0, 60:80, 60:80] = 0.6       # unsure object, no peak: the heads disagree
    prob[1, 10:30, 60:80] = 0.4       # near miss
    heat[2, 70, 20] = 0.8             # a centre peak on background
    return prob, heat


def test_an_ambiguous_object_ranks_above_a_confident_one():
    prob, heat = _maps()
    sug = suggest_points(prob, heat, 10)
    assert len(sug) == 4 and "4 candidate(s), 0 already clicked" in sug.message

    def at(z, y0, x0):  # the suggestion inside the 20 x 20 square at (y0, x0) of slice z
        (i,) = [i for i, (pz, y, x) in enumerate(sug.points) if pz == z and y0 <= y < y0 + 20 and x0 <= x < x0 + 20]
        return sug.scores[i], sug.kinds[i]

    assert at(0, 60, 60)[1] == "object without a centre" and at(0, 10, 10)[1] == "unsure object"
    assert at(0, 60, 60)[0] > at(1, 10, 60)[0] > at(0, 10, 10)[0] and at(1, 10, 60)[1] == "near miss"
    assert at(2, 70, 20)[1] == "centre without an object"


def test_flip_disagreement_lifts_an_object_the_mirrored_image_does_not_confirm():
    prob = np.full((1, 64, 128), 0.01, np.float32)
    prob[0, 20:40, 10:30] = prob[0, 20:40, 90:110] = 0.9  # two equally sure objects
    heat = np.zeros_like(prob)
    heat[0, 30, 20] = heat[0, 30, 100] = 1.0
    plain = suggest_points(prob, heat, 1)
    assert plain.points[0][2] < 64  # a tie: the lower x wins
    flipped = prob.copy()
    flipped[0, 20:40, 90:110] = 0.3  # the mirrored image sees the right one much weaker
    sug = suggest_points(prob, heat, 2, flipped_prob=flipped)
    assert sug.points[0][2] > 64 and sug.scores[0] == pytest.approx(plain.scores[0] + 0.6, abs=1e-5)
    assert sug.scores[1] == pytest.approx(plain.scores[0], abs=1e-6)
    with pytest.raises(ValueError, match="flipped_prob"):
        suggest_points(prob, heat, 1, flipped_prob=flipped[:, :32])


def test_mirrored_prob_is_the_prediction_of_the_flipped_image_on_the_image_grid(adaptable_model_file):
    from napari_mito_wda.core.adapt.suggest import mirrored_prob
    from napari_mito_wda.core.data.checkpoint import load_model
    from napari_mito_wda.core.engine.segment import segment_volume

    img, _ = make_volume((2, 64, 96), n_objects=4, seed=5)
    loaded = load_model(adaptable_model_file)
    got = mirrored_prob(img, loaded)
    want = segment_volume(np.ascontiguousarray(img[:, ::-1, ::-1]), loaded).prob[:, ::-1, ::-1]
    assert got.shape == img.shape and np.allclose(got, want, atol=1e-6)
    assert np.allclose(mirrored_prob(img[0], loaded), got[0], atol=1e-6)  # a 2D image too


def test_n_is_respected_best_first_and_the_result_is_deterministic():
    prob, heat = _maps()
    one = suggest_points(prob, heat, 1)
    assert len(one) == 1 and one.points[0][0] == 0 and 60 <= one.points[0][1] < 80 and one.message == ""
    again = suggest_points(prob, heat, 1)
    assert np.array_equal(one.points, again.points) and np.array_equal(one.scores, again.scores)


def test_an_already_clicked_object_is_never_suggested():
    prob, heat = _maps()
    clicked = np.array([[0, 62, 75]])     # off-centre, on the unsure object
    sug = suggest_points(prob, heat, 10, existing_points=clicked)
    assert not any(z == 0 and 60 <= y < 80 and 60 <= x < 80 for z, y, x in sug.points)
    assert any(z == 0 and 10 <= y < 30 and 10 <= x < 30 for z, y, x in sug.points)


def test_picks_are_spread_over_slices_and_kept_apart():
    prob = np.full((4, 64, 256), 0.01, np.float32)
    for x in range(8, 248, 40):          # six unsure objects on slice 0, one on slice 3
        prob[0, 20:36, x:x + 16] = 0.55
    prob[3, 20:36, 20:36] = 0.9
    heat = np.zeros_like(prob)
    sug = suggest_points(prob, heat, 3, per_slice=2)
    assert sorted(sug.points[:, 0].astype(int).tolist()) == [0, 0, 3]
    tight = suggest_points(prob, heat, 10, min_distance=100)  # neighbours closer than 100 px are not picked
    xs = sorted(p[2] for p in tight.points if p[0] == 0)
    assert np.diff(xs).min() >= 100


def test_an_empty_prediction_gives_a_clear_empty_result():
    sug = suggest_points(np.zeros((2, 32, 32)), np.zeros((2, 32, 32)), 5)
    assert len(sug) == 0 and sug.points.shape == (0, 3) and "nothing to suggest" in sug.message
    with pytest.raises(ValueError):
        suggest_points(np.zeros((2, 32, 32)), np.zeros((2, 32, 31)), 5)


def test_a_written_csv_reads_back_as_clicks_and_is_never_overwritten_silently(tmp_path):
    pts = np.array([[1, 40.5, 30], [2, 60, 70.25]])
    path = write_points_csv(tmp_path / "s.csv", pts, {"score": [0.9, 0.1], "kind": ["near miss", "unsure object"]})
    assert np.array_equal(read_points(path), pts)
    with pytest.raises(FileExistsError):
        write_points_csv(path, pts[:1])
    assert len(read_points(path)) == 2


def test_the_suggest_command_writes_a_csv_that_adapt_takes_as_points_and_negative_points(
        adaptable_model_file, tmp_path, capsys):
    from napari_mito_wda.core.data.checkpoint import load_checkpoint

    img, _ = make_volume((3, 96, 96), n_objects=6, seed=3)
    tifffile.imwrite(tmp_path / "em.tif", img, photometric="minisblack")
    out = tmp_path / "suggested.csv"
    args = ["suggest", tmp_path / "em.tif", "-n", 4, "-o", out, "--model", adaptable_model_file]
    rc, err = cli(args, capsys)
    assert rc == 0, err
    pts = read_points(out)
    assert 0 < len(pts) <= 4 and validate_points(pts, img.shape)[0].shape == pts.shape
    assert out.read_text().splitlines()[0] == "index,axis-0,axis-1,axis-2,score,kind"
    rc, err = cli(args, capsys)
    assert rc == 2 and "already exists" in err
    # the answered suggestions go back in: the first as a mitochondrion, the others as false objects
    write_points_csv(tmp_path / "pos.csv", pts[:1])
    write_points_csv(tmp_path / "neg.csv", pts[1:])
    rc, err = cli(["adapt", tmp_path / "em.tif", "--points", tmp_path / "pos.csv", "--negative-points",
                   tmp_path / "neg.csv", "-o", tmp_path / "a.pt", "--model", adaptable_model_file,
                   "--max-iters", 1, "--minutes", 1], capsys)
    assert rc == 0, err
    (run,) = load_checkpoint(tmp_path / "a.pt").meta["adaptations"]
    assert run["n_clicks"] == 1 and len(run["negative_clicks_zyx"]) == len(pts) - 1
    # clicks already given are not suggested again
    rc, _ = cli(["suggest", tmp_path / "em.tif", "-n", 4, "-o", tmp_path / "again.csv", "--model",
                 adaptable_model_file, "--points", tmp_path / "pos.csv"], capsys)
    again = read_points(tmp_path / "again.csv")
    assert rc == 0 and not any(np.array_equal(p, pts[0]) for p in again)


def test_suggest_refuses_bad_options_before_any_work(em, tmp_path, capsys):
    rc, err = cli(["suggest", em, "-n", 0, "-o", tmp_path / "s.csv"], capsys)
    assert rc == 2 and "-n takes a number of suggestions" in err
    rc, err = cli(["suggest", em, "-o", tmp_path / "s.tif"], capsys)
    assert rc == 2 and "*.csv" in err
    rc, err = cli(["suggest", em, "-o", tmp_path / "s.csv", "--negative-points", tmp_path / "none.csv"], capsys)
    assert rc == 2 and err.startswith("mito-wda: error: --negative-points: Points file not found")
    assert not (tmp_path / "s.csv").exists()


def test_with_the_shown_instances_a_blob_too_small_to_be_one_is_a_near_miss_and_instances_rank():
    prob = np.full((1, 96, 96), 0.01, np.float32)
    heat = np.zeros_like(prob)
    prob[0, 10:40, 10:40] = 0.7       # an unsure instance, shown to the user
    prob[0, 60:66, 60:66] = 0.9       # a blob above threshold that the instance step dropped (too small)
    prob[0, 10:40, 55:65] = 0.99      # two touching instances, each confident
    prob[0, 10:40, 65:90] = 0.99
    labels = np.zeros((1, 96, 96), np.int32)
    labels[0, 10:40, 10:40] = 3
    labels[0, 10:40, 55:65] = 7
    labels[0, 10:40, 65:90] = 9
    old = suggest_points(prob, heat, 10, min_distance=1)
    new = suggest_points(prob, heat, 10, labels=labels, min_distance=1)
    kind_at = {tuple(p[1:].astype(int)): k for p, k in zip(new.points, new.kinds)}
    # one candidate per shown instance, at a pixel of that instance; the touching two stay apart
    on = sorted(int(labels[0, y, x]) for (y, x), k in kind_at.items() if k != "near miss")
    assert on == [3, 7, 9]
    (blob,) = [(y, x) for (y, x), k in kind_at.items() if k == "near miss"]
    assert 60 <= blob[0] < 66 and 60 <= blob[1] < 66
    # without the labels the blob was an object and the touching instances one
    assert sum(k != "near miss" for k in old.kinds) == 3 and "near miss" not in old.kinds
    # the unsure instance ranks first
    best = new.points[int(np.argmax(new.scores))].astype(int)
    assert labels[0, best[1], best[2]] == 3
    with pytest.raises(ValueError, match="labels"):
        suggest_points(prob, heat, 3, labels=labels[:, :50])
