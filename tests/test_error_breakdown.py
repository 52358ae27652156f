"""The benchmark's error split on hand-made masks (benchmarks/error_breakdown.py)."""

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from error_breakdown import breakdown  # noqa: E402


def test_errors_split_into_borders_false_objects_and_missed_objects():
    gt = np.zeros((1, 40, 40), bool)
    gt[0, 5:15, 5:15] = True      # found, but predicted 1 px too wide all round
    gt[0, 25:35, 25:35] = True    # missed entirely
    pred = np.zeros_like(gt)
    pred[0, 4:16, 4:16] = True
    pred[0, 30:34, 2:6] = True    # a false object far from any true one
    b = breakdown(pred, gt)
    area = 200
    assert b["fp"] == pytest.approx((144 - 100 + 16) / area)
    assert b["fp_near"] == pytest.approx(44 / area)      # the 1-px ring lies within 3 px of the true border
    assert b["fp_obj"] == pytest.approx(16 / area)
    assert b["fn"] == pytest.approx(100 / area) and b["fn_obj"] == pytest.approx(100 / area)
    assert b["fn_near"] == pytest.approx(84 / area)      # the missed square less its 4 x 4 core (> 3 px deep)
    assert b["dice"] == pytest.approx(2 * 100 / (160 + 200))
    assert b["dice_er1"] > b["dice"]                     # shrinking by 1 px removes the ring and the false object's rim


def test_recall_is_given_per_band_of_image_rows():
    gt = np.zeros((2, 8, 6), bool)
    gt[:, 0:2] = True     # band 0 (rows 0-3): 24 true pixels, half of them found
    gt[:, 5:7] = True     # band 1 (rows 4-7): 24 true pixels, none found
    pred = np.zeros_like(gt)
    pred[:, 0] = True
    b = breakdown(pred, gt, band=4)
    assert b["band_recall"] == pytest.approx([0.5, 0.0]) and b["band_share"] == pytest.approx([0.5, 0.5])
