#!/usr/bin/env python
"""Volumes larger than memory: chunked segmentation on dask.distributed, 1 and 2 workers.

Synthetic EM-like volumes are made lazily, region by region, by the workers themselves
(`core/volumes/synthetic_lazy.py`): no input file exists; the output zarr goes to a temporary folder that is
deleted after each run. Each measurement runs in a fresh process that starts its own LocalCluster
(worker processes, 1 thread each, torch threads = 2 / workers, started with the glibc malloc environment
that `mito-wda predict` gives its own LocalCluster: `runner.worker_malloc_env`) and reports wall time (cluster start-up
excluded and given apart), voxels/s, per-stage time and the peak resident memory of every process
(this client + scheduler, and each worker). The in-memory baseline is `segment_volume` on the same
synthetic data in slices of 768 x 1024 (as in the segmentation benchmark), 2 torch threads.

    .venv/bin/python benchmarks/bench_large.py --quick        # smoke test, ~2 minutes, nothing written to docs
    .venv/bin/python benchmarks/bench_large.py                # 0.1, 0.5, 2 GVoxel x 1, 2 workers (~35 min idle)
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import markdown_table, peak_rss_mb, run_child, update_section  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "large_results.jsonl"
# MitoEM-like slices of 4096 x 4096; volumes grow along Z only, so time should grow linearly.
FULL = [("0.1 GVoxel", (6, 4096, 4096)), ("0.5 GVoxel", (30, 4096, 4096)), ("2 GVoxel", (120, 4096, 4096))]
FULL_CHUNKS = (8, 2048, 2048)
QUICK = [("17 MVoxel", (4, 2048, 2048))]
QUICK_CHUNKS = (4, 1024, 1024)
BASELINE_SHAPE = {"full": (16, 768, 1024), "quick": (4, 768, 1024)}
# The in-memory path on slices as large as the chunked runs' (several blended tiles per slice).
SAME_SLICE_BASELINE = (2, 4096, 4096)


def _worker_peak_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def child_chunked(shape, workers: int, chunks, halo: int) -> dict:
    from distributed import Client, LocalCluster

    from napari_mito_wda.core.volumes.chunked import ChunkSettings, segment_to_zarr
    from napari_mito_wda.core.volumes.runner import ClusterSettings, worker_malloc_env
    from napari_mito_wda.core.volumes.synthetic_lazy import LazySyntheticEM

    t0 = time.perf_counter()
    with worker_malloc_env():  # as Runner starts a LocalCluster (core/volumes/alloc.py)
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
                               memory_limit=None)
    client = Client(cluster)
    client.run(lambda: __import__("torch"))  # start-up cost apart from the run
    startup = time.perf_counter() - t0
    tmp = Path(tempfile.mkdtemp(prefix="bench_large_"))
    stamps: dict = {}

    def on_progress(ev):
        now = time.perf_counter()
        stamps.setdefault(ev.stage, [now, now])[1] = now

    try:
        settings = ChunkSettings(chunks=chunks, instance_halo=halo, torch_threads=max(1, 2 // workers), keep_maps=False)
        t1 = time.perf_counter()
        res = segment_to_zarr(LazySyntheticEM(shape, seed=0), tmp / "out.zarr", settings=settings,
                              cluster=ClusterSettings(scheduler=cluster.scheduler_address), progress=on_progress)
        wall = time.perf_counter() - t1
        worker_mb = sorted(client.run(_worker_peak_mb).values())
    finally:
        client.close()
        cluster.close()
        shutil.rmtree(tmp, ignore_errors=True)
    stage_s, prev = {}, t1
    for stage, (_, last) in stamps.items():  # stages run one after another: each ends at its last event
        stage_s[stage] = round(last - prev, 2)
        prev = last
    voxels = shape[0] * shape[1] * shape[2]
    return {"shape": list(shape), "workers": workers, "chunks": list(chunks), "wall_s": wall, "startup_s": startup,
            "voxels_per_s": voxels / wall, "n_chunks": res.chunks, "n_instances": res.n_instances,
            "cut_objects": res.cut_objects, "stage_s": stage_s, "client_peak_mb": peak_rss_mb(),
            "worker_peak_mb": worker_mb, "where": res.where}


def child_inmemory(shape) -> dict:
    import torch

    from napari_mito_wda.core.data.checkpoint import load_checkpoint
    from napari_mito_wda.core.engine.device import pick_device
    from napari_mito_wda.core.engine.segment import segment_volume
    from napari_mito_wda.core.volumes.synthetic_lazy import LazySyntheticEM

    torch.set_num_threads(2)
    image = LazySyntheticEM(shape, seed=0)[:, :, :]
    dev = pick_device()
    loaded = load_checkpoint(None, device=dev.device)
    segment_volume(image[:1], loaded, dev)  # warm-up, as the segmentation benchmark does
    t0 = time.perf_counter()
    seg = segment_volume(image, loaded, dev)
    wall = time.perf_counter() - t0
    return {"shape": list(shape), "wall_s": wall, "voxels_per_s": image.size / wall, "peak_mb": peak_rss_mb(),
            "n_instances": int(seg.labels.max()), "device": dev.describe()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--mode", default="chunked", help=argparse.SUPPRESS)
    ap.add_argument("--shape", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--workers", type=int, default=1, help=argparse.SUPPRESS)
    ap.add_argument("--quick", action="store_true", help="one small volume only; prints, writes nothing to docs")
    ap.add_argument("--chunks", default=None, help="Z,Y,X chunk (default 8,2048,2048; quick: 4,1024,1024)")
    ap.add_argument("--instance-halo", type=int, default=256)
    ap.add_argument("--sizes", default=None, help="subset of the full sizes, e.g. 0.1,0.5 (GVoxel)")
    a = ap.parse_args()
    chunks = tuple(int(v) for v in a.chunks.split(",")) if a.chunks else (QUICK_CHUNKS if a.quick else FULL_CHUNKS)
    if a.child:
        shape = tuple(int(v) for v in a.shape.split(","))
        out = (child_inmemory(shape) if a.mode == "inmemory"
               else child_chunked(shape, a.workers, chunks, a.instance_halo))
        print(json.dumps(out))
        return
    sizes = QUICK if a.quick else FULL
    if a.sizes:
        sizes = [(n, sh) for n, sh in sizes if n.split()[0] in a.sizes.split(",")]
    script = Path(__file__)
    t_all = time.perf_counter()
    base_shape = BASELINE_SHAPE["quick" if a.quick else "full"]
    base = run_child(script, ["--mode", "inmemory", "--shape", ",".join(map(str, base_shape))])
    print("in-memory baseline", json.dumps(base), flush=True)
    same = None
    if not a.quick:
        same = run_child(script, ["--mode", "inmemory", "--shape", ",".join(map(str, SAME_SLICE_BASELINE))])
        print("in-memory baseline, 4096 x 4096 slices", json.dumps(same), flush=True)
    rows, raw = [], []
    for name, shape in sizes:
        for workers in (1, 2):
            r = run_child(script, ["--shape", ",".join(map(str, shape)), "--workers", str(workers),
                                   "--chunks", ",".join(map(str, chunks)), "--instance-halo", str(a.instance_halo)])
            raw.append(r | {"size": name.split()[0]})
            if not a.quick:  # kept as they come: a run stopped before the table is written loses nothing
                with open(RESULTS, "a") as fh:
                    from napari_mito_wda.core.data.provenance import provenance

                    prov = provenance()
                    fh.write(json.dumps(raw[-1] | {"baseline_768x1024": base["voxels_per_s"],
                                                   "baseline_4096": same["voxels_per_s"],
                                                   "commit": prov["commit"], "date": prov["date"]}) + "\n")
            rel = r["voxels_per_s"] / base["voxels_per_s"]
            rel_same = f"{r['voxels_per_s'] / same['voxels_per_s']:.2f}" if same else "-"
            print(name, workers, "workers", json.dumps(r), f"throughput vs in-memory {rel:.2f} ({rel_same})",
                  flush=True)
            st = r["stage_s"]
            rows.append([name, "x".join(map(str, shape)), workers, r["n_chunks"], f"{r['wall_s']:.1f}",
                         f"{r['voxels_per_s'] / 1e6:.2f}", f"{rel:.2f} / {rel_same}",
                         f"{st.get('predict', 0):.0f} / {st.get('instances', 0):.0f} / {st.get('relabel', 0):.0f}",
                         f"{r['client_peak_mb']:.0f}", " + ".join(f"{m:.0f}" for m in r["worker_peak_mb"]),
                         f"{r['startup_s']:.0f}", r["n_instances"], r["cut_objects"]])
    total_min = (time.perf_counter() - t_all) / 60
    table = markdown_table(["volume", "Z x Y x X", "workers", "chunks", "wall s", "Mvoxel/s",
                            "vs in-memory (768x1024 / 4096² slices)",
                            "predict / instances / relabel s", "client peak MB", "worker peak MB",
                            "cluster start s", "instances", "cut objects"], rows)
    print(table)
    print(f"(all measurements: {total_min:.1f} min)")
    if a.quick:
        return
    from napari_mito_wda.core.data.provenance import provenance

    prov = provenance()
    body = _section(table, base, same, raw, chunks, a.instance_halo, prov, total_min)
    update_section("large-volumes", body)
    print(body)


def _section(table, base, same, raw, chunks, halo, prov, total_min) -> str:
    big = max(raw, key=lambda r: (r["shape"][0], -r["workers"]))
    per_chunk_net = big["stage_s"].get("predict", 0) / big["n_chunks"] * big["workers"]
    post_s = big["stage_s"].get("instances", 0) + big["stage_s"].get("relabel", 0)
    per_chunk_post = post_s / big["n_chunks"] * big["workers"]
    chunk_vox = chunks[0] * chunks[1] * chunks[2]
    mitoem_chunks = 16e9 / chunk_vox
    sizes = " --sizes " + ",".join(r["size"] for r in raw[::2]) if len(raw) < 6 else ""
    return f"""## Volumes larger than memory: chunked segmentation on dask.distributed

Synthetic EM-like volumes made lazily by the workers (`core/volumes/synthetic_lazy.py`; no input file), slices of
4096 x 4096 as in MitoEM, chunks {" x ".join(map(str, chunks))} (each chunk pays the network halo on its 2
inner sides: 112 working = 224 full pixels, see `core/engine/tiling.py`), instance halo {halo} px, \
shipped model, CPU fp32.
LocalCluster of worker processes with 1 thread each and 2 / workers torch threads, started with the glibc
malloc environment of `mito-wda predict` (`runner.worker_malloc_env`), on this 2-core machine;
the output zarr (labels; prob and heat kept during the run) went to a temporary folder, deleted after.
Wall time excludes the cluster start (given apart). Peak MB = peak resident memory of each process
(client includes the scheduler). "vs in-memory" = throughput relative to `segment_volume` on the same
kind of data, 2 threads: on slices of 768 x 1024 (one network tile each, no overlap):
{base['voxels_per_s'] / 1e6:.2f} Mvoxel/s, peak {base['peak_mb']:.0f} MB; \
and on slices of 4096 x 4096 like the chunked runs
(blended 512-pixel tiles): {same['voxels_per_s'] / 1e6:.2f} Mvoxel/s, peak {same['peak_mb']:.0f} MB.

{table}

Per chunk of {chunk_vox / 1e6:.1f} Mvoxel (largest run): network {per_chunk_net:.1f} s, instances + relabel
{per_chunk_post:.1f} s of one worker. Projection (on paper) for one MitoEM volume (1000 x 4096 x 4096 = 16
GVoxel, {mitoem_chunks:.0f} such chunks): on CPU workers like these, \
{mitoem_chunks * (per_chunk_net + per_chunk_post) / 3600:.0f} worker-hours.
On N GPU workers the network part shrinks by the GPU's speed-up S over this CPU (not measured here;
S of order 50-100 for a U-Net this size on a current GPU in bf16 is an assumption), while instances and
relabelling stay on the worker's CPU cores: \
time = {mitoem_chunks:.0f} x ({per_chunk_net:.1f} / S + {per_chunk_post:.1f} / c) s / N
with c CPU cores per worker used for post-processing, e.g. N = 4, S = 50, c = 8:
{mitoem_chunks * (per_chunk_net / 50 + per_chunk_post / 8) / 4 / 60:.0f} min. Post-processing then dominates; \
threads_per_worker = c runs c chunks' post-processing at once.

Measured {prov['date']} at commit {prov['commit']} on {prov['machine']} ({total_min:.0f} min in all). Reproduce:
`.venv/bin/python benchmarks/bench_large.py{sizes}` (quick smoke test: `--quick`).
"""


if __name__ == "__main__":
    main()
