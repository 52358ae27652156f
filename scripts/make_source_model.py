#!/usr/bin/env python
"""Train a model on a labelled EM stack. By default: re-create the shipped source model from VNC III.

    .venv/bin/python scripts/make_source_model.py --minutes 40 --threads 1

writes src/napari_mito_wda/data/source_vnc3.pt and its model card source_vnc3.json. The supervised
upper bound of the benchmark uses the same script on Lucchi train (see benchmarks/bench_segmentation.py).

    .venv/bin/python scripts/make_source_model.py --recard

writes the card of an existing model again through today's rules (e.g. no machine paths), weights
untouched.
"""

import argparse
from pathlib import Path

from napari_mito_wda.core.data.checkpoint import file_sha256, load_checkpoint, save_checkpoint
from napari_mito_wda.core.data.io import write_json
from napari_mito_wda.core.training.pretrain import pretrain
from napari_mito_wda.core.training.supervised import FitSettings

ROOT = Path(__file__).resolve().parents[1]
VNC3 = ROOT.parent / "shared" / "data" / "vnc3"

if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--image", default=str(VNC3 / "image.tif"))
    ap.add_argument("--labels", default=str(VNC3 / "labels.tif"))
    ap.add_argument("--voxel-size", default="50,4.6,4.6", help="z,y,x in nm, recorded in the model card")
    ap.add_argument("--out", default=str(ROOT / "src" / "napari_mito_wda" / "data" / "source_vnc3.pt"))
    ap.add_argument("--minutes", type=float, default=40.0)
    ap.add_argument("--holdout", type=int, default=3, help="last slices kept out of training for selection")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--init", default=None, help="continue training from this checkpoint")
    ap.add_argument("--scale", default="0.8,1.25", help="random zoom range of the crops, e.g. 0.5,2")
    ap.add_argument("--det-pos-weight", type=float, default=0.0,
                    help="detection MSE weighted 1 + W * target (0 = plain MSE)")
    ap.add_argument("--augment", type=float, default=1.0, help="intensity-augmentation strength")
    ap.add_argument("--elastic", type=float, default=0.0, help="share of crops warped elastically")
    ap.add_argument("--cut-paste", type=float, default=0.0,
                    help="share of crops with a window of another slice pasted in (labels too)")
    ap.add_argument("--degrade", type=float, default=0.0,
                    help="share of crops given coarser sampling and a random tone curve (another microscope)")
    ap.add_argument("--ema", type=float, default=0.0,
                    help="validate and keep a moving average of the weights with this decay (e.g. 0.999)")
    ap.add_argument("--det-head-only", action="store_true",
                    help="train only the centre head (trunk and segmentation frozen; use with --init)")
    ap.add_argument("--recard", action="store_true", help="rewrite the card of --out only (no training)")
    a = ap.parse_args()
    if a.recard:
        loaded = load_checkpoint(a.out)
        out = save_checkpoint(a.out, loaded.model, meta=loaded.meta, extras=loaded.extras, overwrite=True, half=True)
        card = load_checkpoint(out).meta | {"sha256": file_sha256(out)}
        write_json(out.with_suffix(".json"), card, overwrite=True)
        raise SystemExit(f"rewrote the card of {out}")
    pretrain(
        a.image, a.labels, a.out, settings=FitSettings(
            minutes=a.minutes, seed=a.seed, lr=a.lr, augment=a.augment, det_pos_weight=a.det_pos_weight,
            det_head_only=a.det_head_only, elastic=a.elastic, cut_paste=a.cut_paste, degrade=a.degrade, ema=a.ema,
            scale=tuple(float(v) for v in a.scale.split(","))), holdout=a.holdout,
        threads=a.threads, overwrite=True, voxel_size=tuple(float(v) for v in a.voxel_size.split(",")), init=a.init,
    )
