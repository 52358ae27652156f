#!/usr/bin/env python
"""Source models without adaptation, on every labelled domain, and whether their detector can be trusted.

For each model (default: the shipped one; others with --models A.pt,B.pt): Dice / AJI / PQ on the VNC III
hold-out (slices 17-19, the source domain), on the Lucchi test stack (FIB-SEM) and on the SBEM validation
block (../shared/data/cdeep3m_sbem, val_*), and the centre detector's heat at the innermost pixel of every
true 2D mitochondrion of the Lucchi test slices (where a user clicks), before and after AdaBN on Lucchi
train: the median and the share at or above the adaptation's trust level (AdaptSettings.detector_trust).
Nothing is tuned on the SBEM labels.

    .venv/bin/python benchmarks/bench_source.py [--models shipped,benchmarks/cache/X.pt] [--lucchi-slices 80] \\
        [--threads 1 --concurrent 2]

Results are appended to benchmarks/results/source_results.jsonl; the section `source-models` of
docs/benchmarks.md is rebuilt from the rows of this run.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import SHARED, markdown_table, run_child, update_section  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "source_results.jsonl"
HEAT_COLUMNS = ("median_before", "median_after_adabn", "trusted_after_adabn")


def heat_at_true_centres(heat: np.ndarray, instances: np.ndarray) -> np.ndarray:
    """The heatmap at the innermost pixel of every 2D object of every slice."""
    from scipy import ndimage as ndi

    from napari_mito_wda.core.adapt.points import innermost_point

    vals = []
    for z in range(instances.shape[0]):
        lab, n = ndi.label(instances[z] > 0)
        for i, box in enumerate(ndi.find_objects(lab), start=1):
            if box is None:
                continue
            y, x = innermost_point(lab[box] == i)
            vals.append(float(heat[z, box[0].start + y, box[1].start + x]))
    return np.array(vals)


def child(model: str, lucchi_slices: int, threads: int) -> dict:
    import tifffile
    import torch

    from napari_mito_wda.core.adapt import AdaptSettings, adabn
    from napari_mito_wda.core.data.checkpoint import load_checkpoint
    from napari_mito_wda.core.data.io import normalize_slice
    from napari_mito_wda.core.engine.device import pick_device
    from napari_mito_wda.core.engine.inference import to_working
    from napari_mito_wda.core.engine.segment import segment_volume
    from napari_mito_wda.core.evaluation import evaluate_volume

    torch.set_num_threads(threads)
    dev = pick_device()
    loaded = load_checkpoint(None if model == "shipped" else model, device=dev.device)
    steps = loaded.meta.get("total_steps", loaded.meta.get("steps"))
    out = {"model": model, "device": dev.describe(), "steps": steps}
    data = {
        "vnc3_holdout": (SHARED / "vnc3" / "image.tif", SHARED / "vnc3" / "labels.tif", slice(17, None)),
        "lucchi_test": (SHARED / "lucchi" / "test_image.tif", SHARED / "lucchi" / "test_labels.tif",
                        slice(0, lucchi_slices)),
        "sbem_val": (SHARED / "cdeep3m_sbem" / "val_image.tif", SHARED / "cdeep3m_sbem" / "val_labels.tif",
                     slice(None)),
    }
    trust = AdaptSettings().detector_trust
    for name, (img_path, lab_path, zs) in data.items():
        if not img_path.exists():
            continue
        img, gt = tifffile.imread(img_path)[zs], tifffile.imread(lab_path)[zs]
        seg = segment_volume(img, loaded, dev)
        m = evaluate_volume(seg.labels, gt, per_slice=False)
        out[name] = {k: m[k] for k in ("dice", "aji", "pq")}
        if name == "lucchi_test":
            inst = tifffile.imread(SHARED / "lucchi" / "test_instances.tif")[zs]
            before = heat_at_true_centres(seg.heat, inst)
            f = loaded.model.config.downsample
            train = tifffile.imread(SHARED / "lucchi" / "train_image.tif")
            adabn(loaded.model, [to_working(normalize_slice(s), f) for s in train], dev, 256)
            after = heat_at_true_centres(segment_volume(img, loaded, dev).heat, inst)
            out["heat"] = {"n": int(len(before)), "median_before": float(np.median(before)),
                           "median_after_adabn": float(np.median(after)),
                           "trusted_before": float((before >= trust).mean()),
                           "trusted_after_adabn": float((after >= trust).mean()), "trust": trust}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--model", default="shipped", help=argparse.SUPPRESS)
    ap.add_argument("--models", default="shipped")
    ap.add_argument("--lucchi-slices", type=int, default=80)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--concurrent", type=int, default=1, help="models measured side by side")
    a = ap.parse_args()
    if a.child:
        print(json.dumps(child(a.model, a.lucchi_slices, a.threads)))
        return
    if not (SHARED / "lucchi" / "test_image.tif").exists():
        sys.exit(f"needs the Lucchi data in {SHARED / 'lucchi'}")
    from napari_mito_wda.core.adapt import AdaptSettings
    from napari_mito_wda.core.data.provenance import provenance

    prov = provenance()
    lock = threading.Lock()

    def one(model: str) -> dict:
        r = run_child(Path(__file__), ["--model", model, "--lucchi-slices", str(a.lucchi_slices),
                                       "--threads", str(a.threads)])
        r |= {"commit": prov["commit"], "date": prov["date"][:10], "lucchi_slices": a.lucchi_slices}
        with lock:
            RESULTS.parent.mkdir(parents=True, exist_ok=True)
            with open(RESULTS, "a") as fh:  # as they come: a stopped run keeps what it measured
                fh.write(json.dumps(r) + "\n")
            print(json.dumps(r), flush=True)
        return r

    with ThreadPoolExecutor(max_workers=max(1, a.concurrent)) as pool:
        results = list(pool.map(one, a.models.split(",")))
    rows = []
    for model, r in zip(a.models.split(","), results):
        h = r.get("heat", {})
        rows.append([Path(model).name, r["steps"], *_dice_aji(r, "vnc3_holdout"),
                     *_dice_aji(r, "lucchi_test"), *_dice_aji(r, "sbem_val"),
                     *(h.get(k, float("nan")) for k in HEAT_COLUMNS)])
    table = markdown_table(["model", "training steps", "VNC III hold-out Dice", "AJI", "Lucchi test Dice",
                            "AJI", "SBEM val Dice", "AJI", "heat at true centres (median)", "after AdaBN",
                            "share >= trust after AdaBN"], rows)
    body = f"""## Source models: every domain without adaptation, and the detector's heat at true centres

Each model predicts the VNC III hold-out (slices 17-19, its own domain), the first {a.lucchi_slices} Lucchi
test slices and the SBEM validation block (`cdeep3m_sbem/val_*`, never tuned on) with no adaptation;
instances, Dice, AJI as in the segmentation table. Heat: the centre heatmap at the innermost pixel of every
true 2D mitochondrion of those Lucchi slices (where a user's click lands), before and after AdaBN on Lucchi
train; the adaptation lets its detector select instances only when the median at the clicks reaches the trust
level ({AdaptSettings().detector_trust}).

{table}

Measured {prov['date'][:10]} at commit {prov['commit']} on {prov['machine']} ({results[-1]['device']}). Reproduce:
`.venv/bin/python benchmarks/bench_source.py --models {a.models} --lucchi-slices {a.lucchi_slices}
--threads {a.threads} --concurrent {a.concurrent}`
"""
    update_section("source-models", body)
    print(body)


def _dice_aji(result: dict, domain: str) -> tuple[float, float]:
    scores = result.get(domain, {})
    return scores.get("dice", float("nan")), scores.get("aji", float("nan"))


if __name__ == "__main__":
    main()
