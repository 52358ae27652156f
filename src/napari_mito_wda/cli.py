"""`mito-wda`: the command line over the same engine as the napari plugin.

    mito-wda demo                                   # the shipped model on the shipped real sample
    mito-wda predict IMAGE.tif -o INSTANCES.tif     # instances of your own volume
    mito-wda predict BIG.zarr -o OUT.zarr [--chunks 8,2048,2048] [--workers 2] [--scheduler ADDR]
                                                    # larger than memory: chunked, on dask.distributed
    mito-wda evaluate PRED.tif GT.tif [--json M.json]
    mito-wda pretrain --image IMG.tif --labels LAB.tif -o MODEL.pt
"""

from __future__ import annotations

import argparse
import datetime as _dt
import sys
import time
from pathlib import Path

from ._cli_progress import Progress


def _model_and_device(args):
    from . import load_model, pick_device

    dev = pick_device(args.device, getattr(args, "precision", "auto"))
    loaded = load_model(args.model, device=dev.device)
    return loaded, dev


def _is_chunked(args) -> bool:
    """Chunked (dask) when asked for, or when input or output is a chunked format."""
    from .core.volumes.lazy_io import volume_kind

    asked = any(v is not None for v in (args.chunks, args.workers, args.scheduler, args.dataset))
    return asked or str(args.output).rstrip("/").lower().endswith(".zarr") or volume_kind(args.image) in ("zarr", "hdf5")


def _parse_chunks(text: str) -> tuple[int, int, int]:
    from .core.data.io import InputError

    try:
        parts = tuple(int(v) for v in text.split(","))
    except ValueError:
        parts = ()
    if len(parts) != 3 or min(parts) < 1:
        raise InputError(f"--chunks must be three positive integers Z,Y,X (e.g. 8,2048,2048), got {text!r}.")
    return parts


def _check_output(out: Path, suffixes: tuple[str, ...], what: str, overwrite: bool) -> None:
    """Refuse a bad output path before any work: taken name, missing folder, wrong suffix."""
    from .core.data.io import InputError

    if out.suffix.lower() not in suffixes:
        raise InputError(f"{out}: name the {what} *{' or *'.join(suffixes)}.")
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} already exists; choose another name or pass --overwrite.")
    if not out.parent.exists():
        raise InputError(f"{out.parent}: output folder does not exist; create it or choose another output path.")


def _check_predict_options(args, chunked: bool) -> None:
    """Settings are checked before anything is read: a typo fails at once, not after a long run."""
    from .core.engine.device import pick_device, requested_precision
    from .core.data.io import InputError

    if not 0.0 < args.threshold < 1.0:
        raise InputError(f"--threshold takes a probability between 0 and 1 (default 0.5), got {args.threshold}.")
    if args.min_size < 0:
        raise InputError(f"--min-size takes a number of pixels, 0 or more, got {args.min_size}.")
    requested_precision(args.precision)  # $MITO_WDA_PRECISION too
    if not (chunked and args.scheduler not in (None, "sync")):  # a remote cluster's workers pick their own device
        pick_device(args.device, args.precision)
    if not chunked:
        return
    for flag, value, low in (("--instance-halo", args.instance_halo, 0), ("--workers", args.workers, 1),
                             ("--threads-per-worker", args.threads_per_worker, 1),
                             ("--torch-threads", args.torch_threads, 1)):
        if value is not None and value < low:
            raise InputError(f"{flag} takes a whole number, {low} or more, got {value}.")
    if args.memory_limit not in (None, "auto"):
        from dask.utils import parse_bytes

        try:
            parse_bytes(args.memory_limit)
        except (ValueError, TypeError):
            raise InputError(f"--memory-limit takes a size per worker such as 4GB or 500MB (or auto), "
                             f"got {args.memory_limit!r}.") from None


def cmd_predict_chunked(args) -> int:
    import shutil

    from . import ChunkSettings, ClusterSettings, InputError, read_labels, segment_to_zarr, write_labels_tiff

    out = Path(args.output.rstrip("/"))
    if args.link_3d:
        raise InputError("--3d links slices one after another over the whole volume; it is not available for "
                         "chunked runs (zarr/HDF5 input or output, --chunks/--workers/--scheduler).")
    to_tiff = out.suffix.lower() in (".tif", ".tiff")
    if not to_tiff and out.suffix.lower() != ".zarr":
        raise InputError(f"{out}: name the output *.zarr (chunked) or *.tif (for volumes that fit in memory).")
    _check_output(out, (out.suffix.lower(),), "output", args.overwrite)
    _check_predict_options(args, chunked=True)
    settings = ChunkSettings(flips=args.flips, threshold=args.threshold, min_size=args.min_size, device=args.device,
                             precision=args.precision, instance_halo=args.instance_halo, torch_threads=args.torch_threads)
    if args.chunks:
        settings.chunks = _parse_chunks(args.chunks)
    cluster = ClusterSettings(scheduler=args.scheduler, workers=args.workers or 1,
                              threads_per_worker=args.threads_per_worker, memory_limit=args.memory_limit)
    bars: dict = {}

    def show(ev) -> None:
        if ev.stage not in bars:  # made at the stage's first event, so its clock starts with the stage
            bars[ev.stage] = Progress(ev.stage + (f" (resumed, {ev.skipped} done before)" if ev.skipped else ""))
        if ev.total and (ev.done > ev.skipped or ev.done == ev.total):
            bars[ev.stage](ev.done, ev.total)

    # A TIFF result is made from a zarr store beside it, removed once the TIFF is written.
    store = out.with_name(f".{out.name}.work.zarr") if to_tiff else out
    try:
        res = segment_to_zarr(args.image, store, model=args.model, settings=settings, cluster=cluster,
                              dataset=args.dataset, overwrite=args.overwrite or to_tiff, progress=show)
    except KeyboardInterrupt:
        partial = store.with_name(store.name + ".partial")
        print(f"\nmito-wda: interrupted: the finished chunks are kept in {partial}; run the same command again "
              "to resume (or delete it to start over).", file=sys.stderr)
        return 130
    if to_tiff:
        labels, voxel = read_labels(store)
        write_labels_tiff(out, labels[...], voxel, overwrite=args.overwrite,
                          metadata={"source_image": str(args.image), "model": args.model, "chunks": list(settings.chunks)})
        shutil.rmtree(store)
    print(f"wrote {out}: {res.shape}, {res.n_instances} instances in {res.seconds:.0f} s on {res.where}"
          + ("" if to_tiff else " (arrays: labels, prob, heat)"))
    if res.cut_objects:
        print(f"mito-wda: warning: {res.cut_objects} objects crossing chunk faces were larger than the instance "
              f"halo ({settings.instance_halo} px) and may be split or merged; rerun with a larger --instance-halo.",
              file=sys.stderr)
    return 0


def cmd_predict(args) -> int:
    from . import read_volume, segment_volume, write_labels_tiff
    from .core.data import file_sha256
    from .core.data.provenance import provenance

    if _is_chunked(args):
        return cmd_predict_chunked(args)
    out = Path(args.output)
    _check_output(out, (".tif", ".tiff"), "instances", args.overwrite)
    _check_predict_options(args, chunked=False)
    vol = read_volume(args.image)
    loaded, dev = _model_and_device(args)
    print(f"{vol.path}: {vol.data.shape} {vol.data.dtype}; model {loaded.path}; {dev.describe()}", file=sys.stderr)
    seg = segment_volume(
        vol.data, loaded, dev, progress=Progress("predict"), flips=args.flips, link_3d=args.link_3d,
        threshold=args.threshold, min_size=args.min_size,
    )
    meta = provenance() | {
        "source_image": str(vol.path), "model": loaded.path, "model_sha256": file_sha256(loaded.path),
        "flips": args.flips, "link_3d": args.link_3d, "threshold": args.threshold, "min_size": args.min_size,
    }
    write_labels_tiff(out, seg.labels, vol.voxel_size, overwrite=args.overwrite, metadata=meta)
    print(f"wrote {out}: {seg.labels.shape} {seg.labels.dtype}, {int(seg.labels.max())} instances")
    return 0


def cmd_evaluate(args) -> int:
    from . import InputError, evaluate_volume, format_table, read_volume
    from .core.data import write_json

    if args.json:
        _check_output(Path(args.json), (".json",), "metrics file", args.overwrite)
    pred, gt = read_volume(args.prediction).data, read_volume(args.ground_truth).data
    if pred.shape != gt.shape:
        raise InputError(f"prediction {pred.shape} and ground truth {gt.shape} differ in shape.")
    m = evaluate_volume(pred, gt, per_slice=bool(args.json))
    print(format_table(m))
    if args.json:
        write_json(args.json, m | {"prediction": args.prediction, "ground_truth": args.ground_truth},
                   overwrite=args.overwrite)
        print(f"wrote {args.json}")
    return 0


def cmd_pretrain(args) -> int:
    import os

    from . import FitSettings, pretrain

    if args.device:
        os.environ["MITO_WDA_DEVICE"] = args.device
    settings = FitSettings(minutes=args.minutes, seed=args.seed, batch=args.batch)
    voxel = tuple(float(v) for v in args.voxel_size.split(",")) if args.voxel_size else None
    pretrain(args.image, args.labels, args.output, settings=settings, holdout=args.holdout,
             threads=args.threads, overwrite=args.overwrite, voxel_size=voxel)
    return 0


def cmd_adapt(args) -> int:
    import signal

    from . import AdaptSettings, CheckpointError, adapt, pick_device, read_points, read_volume, save_adapted
    from .core.adapt import validate_points, with_state

    out = Path(args.output)
    # Continuing an interrupted run in place (--resume OUT.pt -o OUT.pt) replaces the run's own file.
    overwrite = args.overwrite or bool(args.resume and Path(args.resume).resolve() == out.resolve())
    _check_output(out, (".pt",), "adapted model", overwrite)
    # Settings are checked before the volume and model are read: a typo fails at once.
    if args.source_veto is not None and not 0.0 <= args.source_veto <= 1.0:
        raise ValueError(f"--source-veto takes a probability between 0 and 1 (0 = off), got {args.source_veto}")
    if args.click_reach is not None and args.click_reach < 0:
        raise ValueError(f"--click-reach takes a number of slices, 0 (off) or more, got {args.click_reach}")
    if not args.minutes > 0:
        raise ValueError(f"--minutes takes a time budget above 0, got {args.minutes}")
    if args.max_iters is not None and args.max_iters < 1:
        raise ValueError(f"--max-iters takes a number of iterations, 1 or more, got {args.max_iters}")
    pick_device(args.device, args.precision)
    vol = read_volume(args.image)
    clicks = read_points(args.points) if args.points else None
    if clicks is not None:
        validate_points(clicks, vol.data.shape)  # named, one line, before the model is loaded
    loaded, dev = _model_and_device(argparse.Namespace(model=args.resume or args.model, device=args.device,
                                                           precision=args.precision))
    if "replay_images" not in loaded.extras:
        raise CheckpointError(f"{loaded.path}: this model carries no source replay set, so it cannot be adapted; "
                              "start from the shipped model (leave out --model) or one made by `mito-wda pretrain`.")
    over = {"minutes": args.minutes, "seed": args.seed}
    if args.max_iters:
        over["max_iters"] = args.max_iters
    for flag in ("contrastive", "cross_teaching", "detection", "adabn"):
        if getattr(args, f"no_{flag}"):
            over[flag] = False
    if args.resume:
        over["adabn"] = False  # the checkpoint already carries target statistics
    if args.pixel_pseudo_labels:
        over["pseudo"] = "pixel"
    if args.click_reach is not None:
        over["click_reach_z"] = args.click_reach
    if args.source_veto is not None:
        over["source_veto"] = args.source_veto or None
    settings = AdaptSettings.preset(args.preset, **over)
    n_clicks = 0 if clicks is None else len(clicks)
    print(f"{vol.path}: {vol.data.shape}; {n_clicks} clicks; start {loaded.path}; "
          f"{dev.describe()}; budget {settings.minutes} min", file=sys.stderr)
    if n_clicks == 0:
        # Measured on VNC III -> Lucchi (docs/benchmarks.md): UDA 0.779 < AdaBN alone 0.800 < 15% clicks 0.855.
        print("no clicks: unsupervised adaptation. On the benchmark it scored below re-estimating BatchNorm "
              "alone; clicking the centres of a few objects per slice (--points) gave the gains.", file=sys.stderr)
    stop = {"n": 0}

    def on_sigint(signum, frame):  # first Ctrl-C: finish the current step and keep the best model
        stop["n"] += 1
        if stop["n"] > 1:
            raise KeyboardInterrupt
        print("\nstopping: saving the best model so far (Ctrl-C again to abort)", file=sys.stderr)

    print(f"the best model so far is written to {out} at each round (marked unfinished); if this run dies, "
          f"continue it with the same command plus --resume {out}", file=sys.stderr)
    previous = signal.signal(signal.SIGINT, on_sigint)
    last = None
    try:
        for rep in adapt(vol.data, clicks, loaded, settings, dev=dev, stop=lambda: stop["n"] > 0):
            last = rep
            if rep.best_state is not None:  # a new best at a round start: a hard kill loses one round at most
                save_adapted(out, with_state(loaded, rep.best_state), settings, clicks, rep,
                             image_path=str(vol.path), overwrite=overwrite)
                overwrite = True  # later writes replace this run's own file
            if rep.stage in ("prepare", "label", "done"):
                extra = f" score {rep.score:.3f}" if rep.score is not None else ""
                print(f"[{rep.elapsed_s / 60:5.1f}/{rep.budget_s / 60:.1f} min] {rep.stage}: {rep.message}{extra}",
                      file=sys.stderr)
            elif rep.step % (settings.report_every * 10) == 0:
                losses = " ".join(f"{k} {v:.4f}" for k, v in rep.losses.items())
                print(f"[{rep.elapsed_s / 60:5.1f}/{rep.budget_s / 60:.1f} min] round {rep.round}/{rep.n_rounds} "
                      f"step {rep.step}: {losses} ({rep.it_per_s:.2f} it/s, ~{rep.eta_s / 60:.1f} min left)",
                      file=sys.stderr)
    finally:
        signal.signal(signal.SIGINT, previous)
    save_adapted(out, loaded, settings, clicks, last, image_path=str(vol.path), overwrite=overwrite)
    print(f"wrote {out} (best label-free score {last.best_score:.3f}); segment with: "
          f"mito-wda predict IMAGE.tif --model {out} -o INSTANCES.tif")
    return 0


def cmd_demo(args) -> int:
    """The whole mission on the shipped sample: source model, short adaptation from its clicks, adapted model."""
    from . import (AdaptSettings, adapt, evaluate_volume, format_table, read_points, save_adapted, segment_volume,
                   write_labels_tiff)
    from .core.data import write_json
    from .core.data.provenance import provenance
    from .core.evaluation import save_comparison
    from .sample import CITATION, load_lucchi_sample, sample_paths

    run = Path(args.out) / _dt.datetime.now().strftime("run-%Y%m%d-%H%M%S")
    run.mkdir(parents=True, exist_ok=False)  # a new folder per run: earlier results are never replaced
    image, gt, voxel, _ = load_lucchi_sample()
    clicks = read_points(sample_paths()["clicks"])
    loaded, dev = _model_and_device(args)
    print(f"sample: {image.shape} voxels of mouse CA1 FIB-SEM ({CITATION})")
    print(f"model: {loaded.path}\ndevice: {dev.describe()}")

    def segment_and_score(name: str) -> tuple:
        t0 = time.perf_counter()
        seg = segment_volume(image, loaded, dev, progress=Progress(f"segment ({name})"))
        dt = time.perf_counter() - t0
        write_labels_tiff(run / f"{name}_instances.tif", seg.labels, voxel,
                          metadata=provenance() | {"model": name, "image": "lucchi_sample.tif"})
        m = evaluate_volume(seg.labels, gt, per_slice=False) | {"seconds": round(dt, 2)}
        print(f"{name} model:\n{format_table(m)}")
        return seg.labels, m

    source_labels, source_m = segment_and_score("source")
    panels = {"ground truth": gt, "source model": source_labels}
    results = {"source_model": source_m, "model": loaded.path, "clicks": len(clicks)}
    if args.adapt:
        settings = AdaptSettings(minutes=args.minutes, max_iters=args.max_iters, label_slices=image.shape[0])
        print(f"adapting to the sample from its {len(clicks)} shipped centre clicks "
              f"({settings.minutes:g} min budget{'' if not args.max_iters else f', {args.max_iters} iterations'})")
        last = None
        for rep in adapt(image, clicks, loaded, settings, dev=dev):
            last = rep
            if rep.stage in ("prepare", "label", "done"):
                print(f"  [{rep.elapsed_s / 60:4.1f} min] {rep.stage}: {rep.message}", flush=True)
        save_adapted(run / "adapted_model.pt", loaded, settings, clicks, last, image_path="lucchi_sample.tif")
        adapted_labels, adapted_m = segment_and_score("adapted")
        adapted_m["adapt_seconds"] = round(last.elapsed_s, 1)
        adapted_m["iterations"] = last.step
        results["adapted_model"] = adapted_m
        panels["adapted model"] = adapted_labels
        print(f"Dice {source_m['dice']:.3f} -> {adapted_m['dice']:.3f}, AJI {source_m['aji']:.3f} -> "
              f"{adapted_m['aji']:.3f}, PQ {source_m['pq']:.3f} -> {adapted_m['pq']:.3f}")
    write_json(run / "metrics.json", results | provenance())
    save_comparison(run / "demo.png", image, panels,
                    title="Lucchi CA1 crop: shipped source model (VNC III) and the model adapted from centre clicks")
    print(f"results in {run}/: {', '.join(sorted(p.name for p in run.iterdir()))}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    ap = argparse.ArgumentParser(prog="mito-wda", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--version", action="version", version=f"napari-mito-wda {__version__}")
    sub = ap.add_subparsers(dest="command", required=True)

    def add_model(p):
        p.add_argument("--model", default=None, help="checkpoint (.pt); default: the shipped source model")
        p.add_argument("--device", choices=["cpu", "cuda"], default=None, help="default: CUDA when present")
        p.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto",
                       help="network precision; auto: $MITO_WDA_PRECISION if set, else bf16 on GPUs and on CPUs with "
                            "native bf16 (AMX), fp32 elsewhere")

    p = sub.add_parser("predict", help="segment mitochondria instances in a TIFF stack, or a zarr/HDF5 volume of any size")
    p.add_argument("image", help="TIFF, zarr or HDF5 volume")
    p.add_argument("-o", "--output", required=True, help="instance labels: TIFF, or a zarr store (chunked run)")
    add_model(p)
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    p.add_argument("--flips", action="store_true",
                   help="average 4 flips (4x the inference time; +0.006-0.010 Dice on Lucchi, docs/benchmarks.md)")
    p.add_argument("--3d", dest="link_3d", action="store_true", help="link 2D instances across slices into 3D ids")
    p.add_argument("--threshold", type=float, default=0.5)
    p.add_argument("--min-size", type=int, default=64, help="smallest instance kept, in pixels per slice")
    g = p.add_argument_group("chunked runs (volumes larger than memory; on by zarr/HDF5 or any option here)")
    g.add_argument("--chunks", default=None, help="Z,Y,X chunk = task size (default 8,2048,2048)")
    g.add_argument("--workers", type=int, default=None, help="dask workers of the local cluster (default 1)")
    g.add_argument("--threads-per-worker", type=int, default=1)
    g.add_argument("--memory-limit", default="auto", help="per worker, e.g. 4GB (default: dask's share of RAM)")
    g.add_argument("--torch-threads", type=int, default=None, help="per task (default: cores / worker threads)")
    g.add_argument("--scheduler", default=None,
                   help="address of a running dask scheduler (SLURM, Kubernetes...), or 'sync' for this process only")
    g.add_argument("--dataset", default=None, help="array inside a zarr/HDF5 file holding several")
    g.add_argument("--instance-halo", type=int, default=256,
                   help="px read around a chunk for instances; objects crossing faces must fit (default 256)")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("evaluate", help="compare predicted instances with ground truth")
    p.add_argument("prediction")
    p.add_argument("ground_truth")
    p.add_argument("--json", default=None, help="also write the metrics (with per-slice values) to this file")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("pretrain", help="train a source model on a labelled stack")
    p.add_argument("--image", required=True)
    p.add_argument("--labels", required=True, help="binary mask or instance TIFF, same shape as the image")
    p.add_argument("-o", "--output", required=True)
    p.add_argument("--minutes", type=float, default=30.0)
    p.add_argument("--holdout", type=int, default=3, help="last slices used for model selection")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--voxel-size", default=None, help="z,y,x in nm for the model card")
    p.add_argument("--device", choices=["cpu", "cuda"], default=None)
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=cmd_pretrain)

    p = sub.add_parser("adapt", help="adapt a model to a target volume from centre clicks (or none: UDA)")
    p.add_argument("image")
    p.add_argument("--points", default=None, help="clicks: napari Points CSV (index,axis-0,axis-1,axis-2) or .npy")
    p.add_argument("-o", "--output", required=True, help="adapted checkpoint (.pt) to write")
    add_model(p)
    p.add_argument("--resume", default=None, help="continue from an adapted checkpoint")
    p.add_argument("--minutes", type=float, default=8.0, help="wall-clock budget")
    p.add_argument("--max-iters", type=int, default=None, help="iteration budget (whichever comes first)")
    p.add_argument("--preset", choices=["quick", "thorough"], default="quick")
    p.add_argument("--seed", type=int, default=0)
    for flag in ("contrastive", "cross-teaching", "detection", "adabn"):
        p.add_argument(f"--no-{flag}", action="store_true", help=f"switch {flag} off (ablation)")
    p.add_argument("--pixel-pseudo-labels", action="store_true", help="plain confidence pseudo-labels instead of IPL")
    p.add_argument("--click-reach", type=int, default=None, metavar="SLICES",
                   help="a click also keeps background off its spot on this many slices either side "
                        "(default 8, for near-isotropic voxels such as FIB-SEM; fewer for thick sections, 0 = off)")
    p.add_argument("--source-veto", type=float, default=None, metavar="P",
                   help="pseudo-background only where the starting model gave a probability below P "
                        "(default 0.5; 0 = off)")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=cmd_adapt)

    p = sub.add_parser("demo", help="the shipped model on the shipped real sample (--adapt: also adapt it and compare)")
    p.add_argument("--out", default="mito-wda-demo", help="folder for the results (a new run-* folder each time)")
    # Opt-in: on this small sample a 2-minute run keeps the source model (no adapted model scores better;
    # README, docs/benchmarks.md), while the gains show on full volumes such as Lucchi.
    p.add_argument("--adapt", action="store_true",
                   help="also adapt the model to the sample from its shipped clicks (experimental) and compare")
    p.add_argument("--minutes", type=float, default=2.0, help="adaptation budget in minutes (with --adapt)")
    p.add_argument("--max-iters", type=int, default=None, help="or stop the adaptation after this many iterations")
    add_model(p)
    p.set_defaults(func=cmd_demo)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from . import CheckpointError, InputError

    try:
        return args.func(args)
    except (InputError, CheckpointError, FileExistsError, FileNotFoundError, ValueError) as exc:
        print(f"mito-wda: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"mito-wda: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("mito-wda: interrupted", file=sys.stderr)
        return 130
