#!/usr/bin/env python
"""A seeded adaptation small enough to run before and after a refactoring: the numbers must match.

Adapts the shipped model on the first 20 Lucchi train slices (15% simulated clicks, seed 0, 30 iterations,
CPU fp32, one torch thread, the last model kept) and scores it on the first 10 test slices:

    PYTHONPATH=src .venv/bin/python benchmarks/check_same_result.py

It imports the engine from the short path `napari_mito_wda` and falls back to the flat modules of
commits before the package split (11785e5 and earlier), so that the same script runs on both sides.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("MITO_WDA_DEVICE", "cpu")

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import SHARED  # noqa: E402


def main() -> None:
    import tifffile
    import torch

    torch.set_num_threads(1)
    try:
        from napari_mito_wda import (
            AdaptSettings,
            adapt,
            evaluate_volume,
            load_checkpoint,
            pick_device,
            segment_volume,
            simulate_clicks,
        )
    except ImportError:  # the flat layout before the package split
        from napari_mito_wda.core.adapt import AdaptSettings, adapt
        from napari_mito_wda.core.checkpoint import load_checkpoint
        from napari_mito_wda.core.device import pick_device
        from napari_mito_wda.core.metrics import evaluate_volume
        from napari_mito_wda.core.points import simulate_clicks
        from napari_mito_wda.core.segment import segment_volume

    dev = pick_device(precision="fp32")
    train = tifffile.imread(SHARED / "lucchi" / "train_image.tif")[:20]
    train_lab = tifffile.imread(SHARED / "lucchi" / "train_labels.tif")[:20]
    test = tifffile.imread(SHARED / "lucchi" / "test_image.tif")[:10]
    test_lab = tifffile.imread(SHARED / "lucchi" / "test_labels.tif")[:10]
    loaded = load_checkpoint(None, device=dev.device)
    clicks = simulate_clicks(train_lab, 0.15, seed=0)
    # A time budget so long that the 30 iterations decide and the learning-rate schedule (which follows
    # whichever budget is closer to running out) no longer depends on the machine's load. selection "last":
    # the label-free score keeps the starting model after so few steps, which would leave training unchecked.
    settings = AdaptSettings(minutes=1e6, max_iters=30, seed=0, click_fraction=0.15, selection="last")
    for rep in adapt(train, clicks, loaded, settings, dev=dev):
        last = rep
    m = evaluate_volume(segment_volume(test, loaded, dev).labels, test_lab, per_slice=False)
    print(f"steps {last.step} kept_step {last.kept_step} clicks {len(clicks)} score {last.best_score:.4f}")
    print(f"Dice {m['dice']:.4f} AJI {m['aji']:.4f}")


if __name__ == "__main__":
    main()
