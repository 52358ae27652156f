"""The user-like benchmark's pure logic (benchmarks/bench_user.py): the slices clicked, the crop, the targets."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from bench_user import central_block, clicked_slices  # noqa: E402
from user_report import spearman, targets  # noqa: E402


def test_clicks_go_on_one_three_or_five_slices_spread_over_the_crop():
    assert clicked_slices(0, 32) == []
    assert clicked_slices(10, 16) == [8]                  # one slice: the middle one
    assert clicked_slices(25, 32) == [5, 16, 26]          # centres of three equal parts
    assert clicked_slices(50, 80) == [8, 24, 40, 56, 72]
    assert clicked_slices(200, 80) == [8, 24, 40, 56, 72]  # never more than 5 slices
    assert clicked_slices(50, 3) == [0, 1, 2]              # nor more than the crop holds


def test_a_crop_is_a_central_block_capped_at_the_volume():
    assert central_block(80, 16) == slice(32, 48)
    assert central_block(80, 80) == slice(0, 80)
    assert central_block(20, 32) == slice(0, 20)


def _row(**kw):
    r = {"kind": "adapt", "domain": "lucchi", "crop": 32, "n_clicks": 25, "n_clicked_slices": 3, "minutes": 3.0,
         "dice": 0.84, "estimate": None}
    return r | kw


def test_targets_apply_by_clicks_domain_and_crop():
    src, ab = {"dice": 0.75}, {"dice": 0.80}
    assert targets(_row(), src, ab) == "✓ ≥ AdaBN, ✓ ≥ source + 0.05, ✓ ≥ 0.83"
    assert targets(_row(dice=0.82), src, ab) == "✓ ≥ AdaBN, ✓ ≥ source + 0.05, ✗ ≥ 0.83"
    assert targets(_row(n_clicks=0, n_clicked_slices=0, dice=0.7995), src, ab) == "✓ ≥ AdaBN"  # float noise
    assert targets(_row(n_clicks=10, n_clicked_slices=1, dice=0.79), {"dice": 0.7}, ab) == (
        "✗ ≥ AdaBN, ✓ ≥ source + 0.05")
    assert targets(_row(domain="sbem", crop=20, dice=0.84), src, ab) == (
        "✓ ≥ AdaBN, ✓ ≥ source + 0.05, ✗ ≥ source + 0.10")
    assert targets(_row(kind="source"), src, ab) == "-"


def test_rank_correlation_over_runs_with_clicks_only():
    rows = [_row(estimate=e, dice=d) for e, d in [(0.2, 0.70), (0.5, 0.75), (0.9, 0.85)]]
    rows.append(_row(n_clicks=0, estimate=None, dice=0.99))
    assert spearman(rows) == (1.0, 3)
    assert spearman(rows[:2]) == (None, 2)  # too few runs to rank


def test_the_flip_agreement_ranks_uda_runs_too():
    rows = [_row(flip_agreement=f, dice=d) for f, d in [(0.80, 0.62), (0.88, 0.78), (0.90, 0.83)]]
    rows.append(_row(n_clicks=0, flip_agreement=0.85, dice=0.70))
    assert spearman(rows, "flip_agreement", clicks_only=False) == (1.0, 4)
    assert spearman(rows, "flip_agreement") == (1.0, 3)  # the UDA run left out when only clicks count


def test_rows_of_the_two_kinds_of_cpu_are_kept_apart():
    from user_report import _latest

    base = _row(seed=0, test_slices=80, estimate=None)
    rows = _latest([base | {"native_bf16": True, "dice": 0.83}, base | {"native_bf16": False, "dice": 0.81},
                    base | {"native_bf16": False, "dice": 0.80}])
    assert sorted(r["dice"] for r in rows) == [0.80, 0.83]  # the newest of each kind


def test_rows_with_and_without_the_cross_views_are_kept_apart_and_their_command_says_so(monkeypatch):
    import user_report
    from user_report import _commands, _latest, views

    monkeypatch.setattr(user_report, "n_slices", lambda path: 80)  # the test stack's depth, without ../shared

    base = _row(seed=0, test_slices=80, estimate=None, threads=1, concurrent=2, clicks_asked=25, crops_asked=[32])
    xy = base | {"settings": {"cross_views": False}, "dice": 0.81}
    cv = base | {"settings": {"cross_views": True}, "dice": 0.84}
    assert views(xy) == "xy" and views(cv) == "xy, xz, yz" and views(cv | {"kind": "adabn"}) == "xy"
    assert sorted(r["dice"] for r in _latest([xy, cv])) == [0.81, 0.84]
    commands = _commands([xy, cv])
    assert len(commands) == 2 and sum("--cross-views on" in c for c in commands) == 1
