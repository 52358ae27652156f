#!/usr/bin/env python
"""Network forward passes under the malloc environments a dask worker can have (prints; writes nothing).

Each measurement runs in a fresh process (glibc reads its malloc variables at start-up) and times
batch-1 forward passes of the shipped model on CPU, in a thread as in a dask worker, for working tiles
of 640 and 1152 pixels (a 1024-pixel chunk core plus the 112-pixel halo on one side), alternating the
environments; run it on an idle machine, or compare ratios only.

    .venv/bin/python benchmarks/profile_alloc.py [--threads 1] [--reps 2]

Environments: "plain" (no variable), "dask" (MALLOC_TRIM_THRESHOLD_=65536, the nanny's default),
"dask+mallopt" (the same, and `core/volumes/alloc.keep_memory_for_inference` called in the task, as on a worker
that mito-wda did not start) and "worker env" (`runner.WORKER_MALLOC_ENV`, what `mito-wda predict`'s
LocalCluster gives its workers).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ENVS = {"plain": {}, "dask": {"MALLOC_TRIM_THRESHOLD_": "65536"}, "dask+mallopt": {"MALLOC_TRIM_THRESHOLD_": "65536"}}


def child(tile: int, threads: int, mallopt: bool) -> None:
    import threading
    import time

    import torch

    from napari_mito_wda.core.data.checkpoint import load_checkpoint
    from napari_mito_wda.core.engine.device import pick_device
    from napari_mito_wda.core.engine.tiling import _forward
    from napari_mito_wda.core.volumes.alloc import keep_memory_for_inference

    torch.set_num_threads(threads)
    dev = pick_device("cpu")
    model = load_checkpoint(None, device="cpu").model.eval().to(memory_format=torch.channels_last)
    out = []

    def task():
        if mallopt:
            keep_memory_for_inference()
        x = torch.rand(1, 1, tile, tile)
        with torch.no_grad():
            _forward(model, x, dev, False)
            n = max(2, int(3e6 // tile**2))
            t = time.perf_counter()
            for _ in range(n):
                _forward(model, x, dev, False)
        out.append(n * tile**2 / (time.perf_counter() - t) / 1e6)

    th = threading.Thread(target=task)
    th.start()
    th.join()
    print(out[0])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--child", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--mallopt", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        child(a.child, a.threads, a.mallopt)
        return
    sys.path.insert(0, str(ROOT / "src"))
    from napari_mito_wda.core.volumes.runner import WORKER_MALLOC_ENV

    envs = ENVS | {"worker env": WORKER_MALLOC_ENV}
    base = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    base["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])
    for tile in (640, 1152):
        rates = {name: [] for name in envs}
        for rep in range(a.reps):
            for name in (list(envs) if rep % 2 == 0 else list(envs)[::-1]):
                cmd = [sys.executable, __file__, "--child", str(tile), "--threads", str(a.threads)]
                cmd += ["--mallopt"] if name == "dask+mallopt" else []
                out = subprocess.run(cmd, env=base | envs[name], capture_output=True, text=True, check=True)
                rates[name].append(float(out.stdout.split()[-1]))
        ref = sum(rates["dask"]) / len(rates["dask"])
        for name, r in rates.items():
            mean = sum(r) / len(r)
            runs = ", ".join(f"{v:.3f}" for v in r)
            print(f"tile {tile}: {name:13s} {mean:.3f} Mpx/s ({runs})  x{mean / ref:.2f} vs dask")


if __name__ == "__main__":
    main()
