#!/usr/bin/env python
"""The instance step against a model's detector: which heat peaks may split a foreground blob.

instances_2d splits a blob at detector peaks >= peak_threshold that rise at least peak_prominence above the
saddle to a higher peak of the blob (0: every local maximum min_distance apart, the rule before wave 2); a
detector that never reaches the threshold never splits, a stronger one may over-split. Each
model predicts once; the instance step is then swept. The setting is chosen on the VNC III hold-out
(the source domain, slices 17-19) only; the Lucchi test rows show what the choice does on a target.

    .venv/bin/python benchmarks/bench_instances.py [--models shipped,benchmarks/cache/X.pt]

Writes the section `instance-step` of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import tifffile

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import SHARED, markdown_table, update_section  # noqa: E402

PEAKS = (0.5, 0.7, None)  # None: no split (blobs only)
PROMINENCES = (0.0, 0.2, 0.3, 0.4)


def sweep(model_path: str, lucchi_slices: int) -> list[list]:
    from napari_mito_wda.core.data.checkpoint import load_checkpoint
    from napari_mito_wda.core.engine.device import pick_device
    from napari_mito_wda.core.engine.inference import predict_volume
    from napari_mito_wda.core.engine.instances import instances_volume
    from napari_mito_wda.core.evaluation import evaluate_volume

    dev = pick_device()
    loaded = load_checkpoint(None if model_path == "shipped" else model_path, device=dev.device)
    data = {
        "VNC III hold-out": (SHARED / "vnc3" / "image.tif", SHARED / "vnc3" / "labels.tif", slice(17, None)),
        "Lucchi test": (SHARED / "lucchi" / "test_image.tif", SHARED / "lucchi" / "test_labels.tif",
                        slice(0, lucchi_slices)),
    }
    rows = []
    for name, (img_path, lab_path, zs) in data.items():
        img, gt = tifffile.imread(img_path)[zs], tifffile.imread(lab_path)[zs]
        prob, heat = predict_volume(loaded.model, img, dev)
        for prominence in PROMINENCES:
            for peak in PEAKS:
                if peak is None and prominence:
                    continue  # "no split" does not depend on the prominence
                inst = instances_volume(prob, None if peak is None else heat, peak_threshold=peak or 0.5,
                                        peak_prominence=prominence)
                m = evaluate_volume(inst, gt, per_slice=False)
                rows.append([Path(model_path).name, name, "no split" if peak is None else peak,
                             prominence if peak is not None else "-", m["dice"], m["aji"], m["pq"],
                             int(np.unique(inst).size - 1)])
                print(rows[-1], flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="shipped")
    ap.add_argument("--lucchi-slices", type=int, default=80)
    a = ap.parse_args()
    from napari_mito_wda.core.data.provenance import provenance
    from napari_mito_wda.core.engine.device import pick_device

    prov = provenance()
    rows = [r for m in a.models.split(",") for r in sweep(m, a.lucchi_slices)]
    table = markdown_table(["model", "data", "peak threshold", "peak prominence", "Dice", "AJI", "PQ",
                            "objects"], rows)
    body = f"""## Instance step: which detector peaks split a blob

Instances = connected foreground blobs (p > 0.5), split by a watershed at detector peaks of at least the
peak threshold that rise at least the prominence above the saddle to a higher peak of their blob (9 px
apart; prominence 0 = every local maximum, the rule before wave 2; default: 0.5, 0.3). source_40dce07.pt is
the model shipped before its centre head was retrained, shipped the current one. On the VNC III hold-out
prominences 0.2-0.4 tie (one object of 74 from no split at all); the default 0.3 is their middle, not a Lucchi
choice; the Lucchi rows show what it does on a target.

{table}

Measured {prov['date'][:10]} at commit {prov['commit']} on {prov['machine']} ({pick_device().describe()}).
Reproduce: `.venv/bin/python benchmarks/bench_instances.py --models {a.models} --lucchi-slices {a.lucchi_slices}`
"""
    update_section("instance-step", body)
    print(body)


if __name__ == "__main__":
    main()
