#!/usr/bin/env python
"""What giving the pixel size buys: the shipped model (trained at 4.6 nm) on Lucchi test slices shown at 10 nm.

The Lucchi test stack (about 5 nm per pixel, ../shared/data/lucchi/README.md) is shrunk 2x (2 x 2 means) to
10 nm per pixel, its labels likewise (a pixel is mitochondrion where most of its 2 x 2 block is). The shipped
model segments it without a pixel size (the network sees mitochondria at half the size it was trained on)
and with pixel_size=10 (rescaled to 4.6 nm for the network, labels on the 10 nm grid); the native 5 nm
result, without and with its pixel size, is the reference. Foreground Dice against the labels of the same grid.

    .venv/bin/python benchmarks/bench_pixel_size.py [--slices 8] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import SHARED, markdown_table, update_section  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "pixel_size_results.jsonl"
NATIVE_NM, SHRUNK_NM = 5.0, 10.0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--slices", type=int, default=8, help="first N slices of the Lucchi test stack")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--no-doc", action="store_true", help="print the table, leave docs/benchmarks.md alone")
    args = ap.parse_args()
    folder = SHARED / "lucchi"
    if not (folder / "test_image.tif").exists():
        print(f"bench_pixel_size: {folder} holds no Lucchi test stack; see CONTRIBUTING.md", file=sys.stderr)
        return 2

    import numpy as np
    import tifffile
    import torch

    from napari_mito_wda.core.data.checkpoint import load_checkpoint
    from napari_mito_wda.core.engine.device import pick_device
    from napari_mito_wda.core.engine.inference import to_working
    from napari_mito_wda.core.engine.segment import segment_volume
    from napari_mito_wda.core.evaluation.foreground import dice

    torch.set_num_threads(args.threads)
    image = tifffile.imread(folder / "test_image.tif")[: args.slices]
    truth = tifffile.imread(folder / "test_labels.tif")[: args.slices] > 0
    # 2 x 2 means: the engine's own area shrink (io helpers: no second copy of the arithmetic).
    small = np.stack([to_working(s.astype(np.float32), 2) for s in image]).round().astype(np.uint8)
    small_truth = np.stack([to_working(s.astype(np.float32), 2) for s in truth]) > 0.5
    dev = pick_device()
    loaded = load_checkpoint(None, device=dev.device)
    runs = [("native 5 nm, no pixel size", image, truth, None),
            ("native 5 nm, pixel size given", image, truth, NATIVE_NM),
            ("10 nm, no pixel size", small, small_truth, None),
            ("10 nm, pixel size given", small, small_truth, SHRUNK_NM)]
    rows, records = [], []
    for name, img, gt, nm in runs:
        t0 = time.perf_counter()
        seg = segment_volume(img, loaded, dev, pixel_size=nm)
        seconds = time.perf_counter() - t0
        score = dice(seg.labels > 0, gt)
        n_objects = int(len(np.unique(seg.labels)) - 1)
        rows.append([name, "x".join(map(str, img.shape)), score, n_objects, f"{seconds:.1f}"])
        records.append({"run": name, "shape": list(img.shape), "pixel_size_nm": nm, "dice": score, "seconds": seconds})
        print(f"{name}: Dice {score:.3f} ({seconds:.1f} s)", file=sys.stderr)
    from napari_mito_wda.core.data.provenance import provenance

    prov = provenance()
    machine = f"{platform.machine()}, {dev.describe()}"
    RESULTS.parent.mkdir(exist_ok=True)
    with open(RESULTS, "a") as fh:
        fh.write(json.dumps({"machine": machine, "slices": args.slices, "results": records,
                             "commit": prov["commit"], "date": prov["date"][:10]}) + "\n")
    table = markdown_table(["run", "shape (z, y, x)", "Dice", "objects (2D, summed)", "seconds"], rows)
    body = (f"## Pixel size\n\nThe shipped model (trained at 4.6 nm per pixel) on the first {args.slices} Lucchi test "
            "slices, native (about 5 nm) and shrunk 2x to 10 nm per pixel, without and with the pixel size given; "
            f"foreground Dice against the labels on the same grid.\n\n{table}\n\n"
            f"Measured {prov['date'][:10]} at commit {prov['commit']} on {prov['machine']} ({dev.describe()}). "
            f"Reproduce: `.venv/bin/python benchmarks/bench_pixel_size.py --slices {args.slices} "
            f"--threads {args.threads}`\n")
    print(body)
    if not args.no_doc:
        update_section("pixel-size", body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
