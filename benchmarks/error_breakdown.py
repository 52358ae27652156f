#!/usr/bin/env python
"""Where a model's foreground errors lie on Lucchi test: at object borders, or whole objects.

Development tool: segments every 4th Lucchi test slice with the shipped source model and with adapted
models that `bench_adaptation.py` left in benchmarks/cache (state dicts), and splits the errors, as
shares of the ground-truth mito area:
  false pos.        pixels called mito that are not
    near border     ... of them within 3 px (full resolution) of a true object
    false objects   ... of them in predicted 2D objects that touch no true object
  missed            true mito pixels called background
    near border     ... of them within 3 px of the true object's border
    missed objects  ... of them in true 2D objects the prediction does not touch at all
  Dice eroded 1/2   Dice after shrinking every mask by 1 / 2 px: how much a boundary convention costs
                    (uses the labels; a diagnosis, not something the product could do)
A second table gives the share of the true mito pixels found (recall) in bands of 128 image rows: the
missed objects gather in the bottom rows of the Lucchi test images.

    .venv/bin/python benchmarks/error_breakdown.py [--adapted benchmarks/cache/adapted_wda15_15min_seed0.pt ...]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, SHARED, markdown_table, update_section  # noqa: E402

BAND = 128  # image rows per band of the recall-by-rows table


def breakdown(pred: np.ndarray, gt: np.ndarray, near: float = 3.0, band: int = BAND) -> dict:
    from scipy import ndimage as ndi

    from napari_mito_wda.core.evaluation import dice

    area = max(int(gt.sum()), 1)
    fp, fn = pred & ~gt, ~pred & gt
    near_fp = near_fn = false_obj = missed_obj = 0
    for p, g in zip(pred, gt):
        near_fp += int((p & ~g & (ndi.distance_transform_edt(~g) <= near)).sum())
        near_fn += int((~p & g & (ndi.distance_transform_edt(g) <= near)).sum())
        lp, _ = ndi.label(p)
        false_obj += int((p & ~np.isin(lp, np.unique(lp[g]))).sum())
        lg, _ = ndi.label(g)
        missed_obj += int((g & ~np.isin(lg, np.unique(lg[p]))).sum())

    starts = range(0, gt.shape[1], band)
    band_recall = [float((pred[:, y:y + band] & gt[:, y:y + band]).sum() / max(gt[:, y:y + band].sum(), 1))
                   for y in starts]
    band_share = [float(gt[:, y:y + band].sum() / area) for y in starts]
    eroded = [np.stack([ndi.binary_erosion(s, iterations=it) for s in pred]) for it in (1, 2)]
    return {"dice": dice(pred, gt), "fp": fp.sum() / area, "fp_near": near_fp / area, "fp_obj": false_obj / area,
            "fn": fn.sum() / area, "fn_near": near_fn / area, "fn_obj": missed_obj / area,
            "dice_er1": dice(eroded[0], gt), "dice_er2": dice(eroded[1], gt), "band_recall": band_recall,
            "band_share": band_share}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cached = (ROOT / "benchmarks" / "cache").glob("adapted_wda15_15min_seed*.pt")
    ap.add_argument("--adapted", nargs="*", default=sorted(str(p) for p in cached))
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    if not (SHARED / "lucchi" / "test_image.tif").exists():
        sys.exit(f"needs the Lucchi data in {SHARED / 'lucchi'}")
    import tifffile
    import torch

    from napari_mito_wda.core.adapt import adabn
    from napari_mito_wda.core.data.checkpoint import load_checkpoint
    from napari_mito_wda.core.data.io import normalize_slice
    from napari_mito_wda.core.data.provenance import provenance
    from napari_mito_wda.core.engine.device import pick_device
    from napari_mito_wda.core.engine.inference import to_working
    from napari_mito_wda.core.engine.segment import segment_volume

    torch.set_num_threads(a.threads)
    dev = pick_device()
    test = tifffile.imread(SHARED / "lucchi" / "test_image.tif")[::4]
    gt = tifffile.imread(SHARED / "lucchi" / "test_labels.tif")[::4] > 0
    rows, bands = [], []
    for name in ["source", "adabn"] + list(a.adapted):
        loaded = load_checkpoint(None, device=dev.device)
        if name == "adabn":  # the adaptation's starting point: BatchNorm statistics of Lucchi train
            train = tifffile.imread(SHARED / "lucchi" / "train_image.tif")
            f = loaded.model.config.downsample
            adabn(loaded.model, [to_working(normalize_slice(s), f) for s in train], dev, 256, seed=0)
        elif name != "source":
            loaded.model.load_state_dict(torch.load(name, map_location=dev.device))
        t = time.perf_counter()
        b = breakdown(segment_volume(test, loaded, dev).labels > 0, gt)
        label = {"source": "shipped source model", "adabn": "source + AdaBN"}.get(name, Path(name).stem)
        rows.append([label] + [b[k] for k in ("dice", "fp", "fp_near", "fp_obj", "fn", "fn_near", "fn_obj",
                                              "dice_er1", "dice_er2")])
        bands.append([label] + b["band_recall"])
        print(f"{label}: {time.perf_counter() - t:.0f} s", flush=True)
    table = markdown_table(["model", "Dice", "false pos.", "near border", "false objects", "missed", "near border",
                            "missed objects", "Dice eroded 1 px", "Dice eroded 2 px"], rows)
    band_head = [f"rows {y}-{min(y + BAND, gt.shape[1])}" for y in range(0, gt.shape[1], BAND)]
    share = [f"{v:.2f}" for v in b["band_share"]]  # the same ground truth for every model
    band_table = markdown_table(["recall by image rows"] + band_head, [["share of the true mito area"] + share] + bands)
    prov = provenance()
    body = f"""## Where the errors lie (Lucchi test, every 4th slice)

Errors as shares of the true mito area; "near border" = within 3 px (full resolution) of the true
object's border; "false objects" / "missed objects" = whole 2D objects that touch nothing on the other
side. The eroded columns shrink every predicted mask by 1 / 2 px (a diagnosis that uses the labels).
Adapted models: the state dicts `bench_adaptation.py` leaves in `benchmarks/cache` (not committed).

{table}

{band_table}

Measured {prov['date'][:10]} at commit {prov['commit']} on {prov['machine']}. Reproduce:
`.venv/bin/python benchmarks/error_breakdown.py --adapted {" ".join(os.path.relpath(m, ROOT) for m in a.adapted)}`
"""
    update_section("error-breakdown", body)
    print(body)


if __name__ == "__main__":
    main()
