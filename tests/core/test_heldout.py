"""Held-out clicks: never trained on, they pick the kept model and estimate its quality (core/adapt/heldout.py)."""

import numpy as np
import pytest
import tifffile

import napari_mito_wda.core.adapt.loop as loop
from napari_mito_wda.cli import main
from napari_mito_wda.core.adapt import AdaptSettings, adapt, points_by_slice, save_adapted, selection_score
from napari_mito_wda.core.adapt.heldout import MIN_CLICKS, ClickSplit, describe_quality, held_out_count
from napari_mito_wda.core.adapt.points import simulate_clicks
from napari_mito_wda.core.data.checkpoint import load_checkpoint
from napari_mito_wda.core.data.synthetic import make_volume
from tests.core.test_adapt import FAST, setup  # noqa: F401  (the fixture)


def _keys(pts):
    return {tuple(np.round(p, 1)) for p in np.asarray(pts).reshape(-1, 3)}


def test_how_many_clicks_are_held_out():
    assert [held_out_count(n, 0.2) for n in range(MIN_CLICKS)] == [0] * MIN_CLICKS
    assert [held_out_count(n, 0.2) for n in (5, 7, 10, 16, 50)] == [1, 1, 2, 3, 10]
    assert held_out_count(50, 0.0) == 0


def test_the_split_is_seeded_and_every_click_goes_to_one_side():
    pts = np.column_stack([np.arange(20) % 4, np.arange(20) * 3.0, np.arange(20) * 2.0 + 1])
    train, held = ClickSplit(0.2, seed=0).split(pts)
    assert len(held) == 4 and len(train) == 16
    assert _keys(train) | _keys(held) == _keys(pts) and not _keys(train) & _keys(held)
    again = ClickSplit(0.2, seed=0).split(pts[::-1])[1]  # the order given does not matter
    assert _keys(again) == _keys(held)
    assert any(_keys(ClickSplit(0.2, seed=s).split(pts)[1]) != _keys(held) for s in (1, 2, 3))
    with pytest.raises(ValueError, match="held-out share"):
        ClickSplit(1.0)


def test_a_click_keeps_its_role_when_more_clicks_arrive():
    pts = np.column_stack([np.zeros(30), np.arange(30) * 3.0, np.arange(30) * 5.0])
    split = ClickSplit(0.2, seed=0)
    train1, held1 = split.split(pts[:10])
    train2, held2 = split.split(pts)
    assert _keys(held1) <= _keys(held2) and _keys(train1) <= _keys(train2)
    assert len(held2) == held_out_count(30, 0.2)
    gone = next(iter(_keys(held1)))  # a deleted held-out click frees its place for a new one
    rest = np.array([p for p in pts if tuple(np.round(p, 1)) != gone])
    train3, held3 = split.split(rest)
    assert gone not in _keys(held3) and _keys(train2) - {gone} >= _keys(train3) - _keys(held2)


@pytest.fixture
def many_clicks(setup):  # noqa: F811
    img, inst, loaded, source, _ = setup
    clicks = simulate_clicks(inst, 1.0, seed=0)
    assert len(clicks) >= 10
    return img, loaded, source, clicks


def test_held_out_clicks_are_never_trained_on_even_when_clicks_arrive(many_clicks, monkeypatch):
    img, loaded, source, clicks = many_clicks
    seen = []  # every click dict the training side was handed (the real functions still run)
    for name in ("build_round", "round_prototypes", "detector_trusted"):
        real = getattr(loop, name)
        arg = {"build_round": 3, "round_prototypes": 3, "detector_trusted": 1}[name]

        def spy(*a, _real=real, _arg=arg, **k):
            seen.append(a[_arg])
            return _real(*a, **k)
        monkeypatch.setattr(loop, name, spy)
    current = {"pts": clicks[: len(clicks) // 2]}
    for rep in adapt(img, None, loaded, AdaptSettings(**FAST), source_data=source, get_clicks=lambda: current["pts"]):
        if rep.stage == "label":
            current["pts"] = clicks  # more clicks during the first round
    trained = set()
    for by_z in seen:
        trained |= {(float(z), *np.round(p, 1)) for z, ps in by_z.items() for p in ps}
    split = ClickSplit(0.2, seed=0)  # the loop's split, replayed: half the clicks, then all
    held = split.split(clicks[: len(clicks) // 2])[1]
    train_all, held_all = split.split(clicks)
    assert len(held_all) == held_out_count(len(clicks), 0.2) and _keys(held) <= _keys(held_all)
    assert not trained & _keys(held_all)  # no held-out click ever reached training
    assert trained == _keys(train_all)    # and every training click did
    assert rep.quality["n_heldout"] == len(held_all)


def test_the_kept_model_is_judged_and_reported_on_the_held_out_clicks(many_clicks, tmp_path):
    img, loaded, source, clicks = many_clicks
    settings = AdaptSettings(**FAST)
    reports = list(adapt(img, clicks, loaded, settings, source_data=source))
    done = reports[-1]
    _, held = ClickSplit(0.2, seed=0).split(clicks)
    held_w = points_by_slice(held)
    pred = done.prediction
    assert done.score == pytest.approx(selection_score(pred["prob"], pred["heat"], held_w, pred["slices"]))
    q = done.quality
    assert q["n_heldout"] == len(held) and 0.0 <= q["heldout_hit_rate"] <= 1.0
    assert all(type(q[k]) is float for k in ("heldout_hit_rate", "heldout_centring", "start_hit_rate"))
    assert q["start_hit_rate"] is not None and "held out" in reports[0].message
    assert f"/{len(held)} (" in describe_quality(q)
    back = load_checkpoint(save_adapted(tmp_path / "a.pt", loaded, settings, clicks, done))
    assert back.meta["adaptations"][-1]["quality"] == q


def test_with_few_clicks_nothing_is_held_out_and_no_estimate_is_claimed(setup):  # noqa: F811
    img, _, loaded, source, clicks = setup
    done = list(adapt(img, clicks, loaded, AdaptSettings(**FAST), source_data=source))[-1]
    assert done.quality["n_heldout"] == 0 and done.quality["heldout_hit_rate"] is None
    line = describe_quality(done.quality)
    assert line.startswith("quality estimate: flip agreement") and "; no estimate: with fewer than 5" in line


@pytest.mark.parametrize("margin", [1.0, -1.0])
def test_without_clicks_a_trained_model_must_beat_adabn_by_the_margin(setup, margin):  # noqa: F811
    img, _, loaded, source, _ = setup
    done = list(adapt(img, None, loaded, AdaptSettings(**FAST | {"uda_margin": margin}), source_data=source))[-1]
    if margin == 1.0:  # no score in [0, 1] beats another by 1: the AdaBN model (step 0) or the start stays
        assert done.kept_step in (None, 0)
    else:  # every later candidate wins: the last one is kept
        assert done.kept_step == done.step


def test_the_cli_prints_and_saves_the_held_out_estimate(adaptable_model_file, tmp_path, capsys):
    img, _ = make_volume((4, 96, 96), n_objects=6, seed=3)
    tifffile.imwrite(tmp_path / "em.tif", img)
    pts = [(z, y, x) for z in range(3) for y, x in ((20, 30), (60, 70))]
    rows = [f"{i},{z},{y},{x}" for i, (z, y, x) in enumerate(pts)]
    (tmp_path / "clicks.csv").write_text("index,axis-0,axis-1,axis-2\n" + "\n".join(rows) + "\n")
    out = tmp_path / "adapted.pt"
    assert main(["adapt", str(tmp_path / "em.tif"), "--points", str(tmp_path / "clicks.csv"), "-o", str(out),
                 "--model", str(adaptable_model_file), "--max-iters", "2", "--minutes", "1"]) == 0
    cap = capsys.readouterr()
    assert "6 clicks (1 held out to judge the result)" in cap.err
    assert "kept model: quality estimate: " in cap.err and "held-out clicks inside a predicted object:" in cap.err
    assert "held-out clicks inside a predicted object:" in cap.out and "/1 (" in cap.out  # the summary
    (run,) = load_checkpoint(out).meta["adaptations"]
    assert run["quality"]["n_heldout"] == 1 and run["n_clicks"] == 6


def test_a_share_of_the_negative_clicks_is_held_out_too_judges_and_never_trains(many_clicks, monkeypatch):
    img, loaded, source, clicks = many_clicks
    rng = np.random.default_rng(3)
    negatives = np.column_stack([rng.integers(0, img.shape[0], 10), rng.integers(2, img.shape[1] - 2, 10),
                                 rng.integers(2, img.shape[2] - 2, 10)]).astype(float)
    given = []  # the negative clicks the training side was handed (the real function still runs)
    real = loop.build_round

    def spy(*a, **k):
        given.append(k["negatives"])
        return real(*a, **k)

    monkeypatch.setattr(loop, "build_round", spy)
    reports = list(adapt(img, clicks, loaded, AdaptSettings(**FAST), source_data=source, negative_points=negatives))
    done = reports[-1]
    neg_train, neg_held = ClickSplit(0.2, seed=1).split(negatives)  # the loop's split of the negatives
    assert len(neg_held) == held_out_count(10, 0.2) == 2
    trained = {(float(z), *np.round(p, 1)) for by_z in given for z, ps in by_z.items() for p in ps}
    assert given and trained == _keys(neg_train) and not trained & _keys(neg_held)
    pred = done.prediction
    held = ClickSplit(0.2, seed=0).split(clicks)[1]
    held_w = points_by_slice(held)
    expected = selection_score(pred["prob"], pred["heat"], held_w, pred["slices"], negatives=points_by_slice(neg_held))
    assert done.score == pytest.approx(expected)
    assert done.quality["n_heldout_negative"] == 2 and 0.0 <= done.quality["heldout_negative_spared"] <= 1.0
    assert "'not mitochondria' clicks left as background" in describe_quality(done.quality)
    assert f"({len(held) + 2} held out" in reports[0].message


def test_the_guard_allows_one_click_in_five_lost_and_counts_negative_clicks_on_objects_as_wrong():
    from napari_mito_wda.core.adapt.selection import clicks_answered, guard_holds

    start = np.zeros((1, 60, 120), np.float32)
    centres = [(10.0, 10.0 + 20 * i) for i in range(5)]
    for _, x in centres:
        start[0, 5:16, int(x) - 5:int(x) + 6] = 0.9
    clicks = {0: np.array(centres)}
    assert clicks_answered(start, [0], clicks) == (5, 5)
    one_lost, two_lost = start.copy(), start.copy()
    one_lost[0, :, :20] = 0.0
    two_lost[0, :, :40] = 0.0
    assert guard_holds(one_lost, start, [0], clicks, None, 0.2)
    assert not guard_holds(two_lost, start, [0], clicks, None, 0.2)
    assert guard_holds(two_lost, start, [0], clicks, None, 0.4)  # round(0.4 x 5) = 2 may be lost
    neg = {0: np.array([[10.0, 10.0], [40.0, 100.0]])}  # one on an object the start shows, one on background
    assert clicks_answered(start, [0], clicks, neg) == (6, 7)
    assert clicks_answered(one_lost, [0], clicks, neg) == (6, 7)  # a click lost, a false object gone
    assert guard_holds(two_lost, start, [0], {}, None, 0.2)  # no clicks: nothing to lose


def test_the_guarded_selection_keeps_the_latest_model_that_passes(many_clicks):
    img, loaded, source, clicks = many_clicks
    done = list(adapt(img, clicks, loaded, AdaptSettings(**FAST | {"guard_tolerance": 1.0}), source_data=source))[-1]
    assert done.kept_step == done.step  # every click may be lost: the last model passes and is kept
    assert "the latest model that answers the held-out clicks" in done.message


@pytest.mark.parametrize("bad", [{"selection": "guard"}, {"selection": "best"}, {"guard_tolerance": -0.1},
                                 {"guard_tolerance": 1.5}])
def test_a_misspelt_selection_or_a_tolerance_outside_0_1_is_refused(bad):
    with pytest.raises(ValueError, match="selection must be one of|guard_tolerance"):
        AdaptSettings(**bad)
    with pytest.raises(ValueError):
        AdaptSettings.preset("quick", **bad)  # the CLI's and the widget's way in
