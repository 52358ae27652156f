"""`mito-wda`: the command line over the same engine as the napari plugin.

    mito-wda demo                                   # the shipped model on the shipped sample, adapted
    mito-wda predict IMAGE.tif -o INSTANCES.tif     # instances of your own volume
    mito-wda predict BIG.zarr -o OUT.zarr [--chunks 8,2048,2048] [--workers 2] [--scheduler ADDR]
                                                    # larger than memory: chunked, on dask.distributed
    mito-wda evaluate PRED.tif GT.tif [--json M.json]
    mito-wda suggest IMAGE.tif -n 20 -o SUGGESTED.csv    # where a click would teach the model most
    mito-wda pretrain --image IMG.tif --labels LAB.tif -o MODEL.pt
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

# The module docstring is the --help text; the commands that adapt a model are in _cli_adapt.py.
from ._cli_adapt import cmd_adapt, cmd_demo
from ._cli_common import add_pixel_size, check_output, check_pixel_size_flag, model_and_device, pixel_size_for
from ._cli_progress import Progress
from ._cli_suggest import add_parser as add_suggest_parser


def _is_chunked(args) -> bool:
    """Chunked (dask) when asked for, or when input or output is a chunked format."""
    from .core.volumes.lazy_io import volume_kind

    asked = any(v is not None for v in (args.chunks, args.workers, args.scheduler, args.dataset))
    chunked_output = str(args.output).rstrip("/").lower().endswith(".zarr")
    return asked or chunked_output or volume_kind(args.image) in ("zarr", "hdf5")


def _parse_chunks(text: str) -> tuple[int, int, int]:
    from .core.data.io import InputError

    try:
        parts = tuple(int(v) for v in text.split(","))
    except ValueError:
        parts = ()
    if len(parts) != 3 or min(parts) < 1:
        raise InputError(f"--chunks must be three positive integers Z,Y,X (e.g. 8,2048,2048), got {text!r}.")
    return parts


def _check_predict_options(args, chunked: bool) -> None:
    """Settings are checked before anything is read: a typo fails at once, not after a long run."""
    from .core.data.io import InputError
    from .core.engine.device import pick_device, requested_precision

    if not 0.0 < args.threshold < 1.0:
        raise InputError(f"--threshold takes a probability between 0 and 1 (default 0.5), got {args.threshold}.")
    if args.min_size < 0:
        raise InputError(f"--min-size takes a number of pixels, 0 or more, got {args.min_size}.")
    check_pixel_size_flag(args)
    requested_precision(args.precision)  # $MITO_WDA_PRECISION too
    if not (chunked and args.scheduler not in (None, "sync")):  # a remote cluster's workers pick their own device
        pick_device(args.device, args.precision)
    if not chunked:
        return
    if args.negative_points or args.points:
        raise InputError("--negative-points and --points act on TIFF predictions held in memory, not on chunked "
                         "runs: predict a TIFF crop, or leave the clicks out.")
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

    from . import (
        ChunkSettings,
        ClusterSettings,
        InputError,
        load_checkpoint,
        open_volume,
        read_labels,
        segment_to_zarr,
        write_labels_tiff,
    )

    out = Path(args.output.rstrip("/"))
    if args.link_3d:
        raise InputError("--3d links slices one after another over the whole volume; it is not available for "
                         "chunked runs (zarr/HDF5 input or output, --chunks/--workers/--scheduler).")
    if args.orthoplanes == "on":  # xz and yz planes cross every chunk face along z: not in this path
        raise InputError("--orthoplanes predicts whole xz and yz planes of a volume held in memory; it is not "
                         "available for chunked runs (zarr/HDF5 input or output, --chunks/--workers/--scheduler): "
                         "convert a volume that fits in memory to TIFF, or leave --orthoplanes out.")
    to_tiff = out.suffix.lower() in (".tif", ".tiff")
    if not to_tiff and out.suffix.lower() != ".zarr":
        raise InputError(f"{out}: name the output *.zarr (chunked) or *.tif (for volumes that fit in memory).")
    check_output(out, (out.suffix.lower(),), "output", args.overwrite)
    _check_predict_options(args, chunked=True)
    settings = ChunkSettings(flips=args.flips, threshold=args.threshold, min_size=args.min_size, device=args.device,
                             precision=args.precision, instance_halo=args.instance_halo,
                             torch_threads=args.torch_threads)
    if args.chunks:
        settings.chunks = _parse_chunks(args.chunks)
    cluster = ClusterSettings(scheduler=args.scheduler, workers=args.workers or 1,
                              threads_per_worker=args.threads_per_worker, memory_limit=args.memory_limit)
    bars: dict = {}

    def show(ev) -> None:
        if not bars:  # the first report: the inputs passed their checks (errors stay the only line)
            print(said, file=sys.stderr)
        if ev.stage not in bars:  # made at the stage's first event, so its clock starts with the stage
            bars[ev.stage] = Progress(ev.stage + (f" (resumed, {ev.skipped} done before)" if ev.skipped else ""))
        if ev.total and (ev.done > ev.skipped or ev.done == ev.total):
            bars[ev.stage](ev.done, ev.total)

    # Said once the run starts; it opens the file and the model again (lazily, cheap), for its workers.
    model_nm = load_checkpoint(args.model, device="cpu").pixel_size_nm
    pixel_size, said = pixel_size_for(check_pixel_size_flag(args), open_volume(args.image, args.dataset).voxel_size,
                                      model_nm)
    # A TIFF result is made from a zarr store beside it, removed once the TIFF is written.
    store = out.with_name(f".{out.name}.work.zarr") if to_tiff else out
    try:
        res = segment_to_zarr(args.image, store, model=args.model, settings=settings, cluster=cluster,
                              dataset=args.dataset, overwrite=args.overwrite or to_tiff, progress=show,
                              pixel_size=pixel_size)
    except KeyboardInterrupt:
        partial = store.with_name(store.name + ".partial")
        print(f"\nmito-wda: interrupted: the finished chunks are kept in {partial}; run the same command again "
              "to resume (or delete it to start over).", file=sys.stderr)
        return 130
    if to_tiff:
        labels, voxel = read_labels(store)
        write_labels_tiff(out, labels[...], voxel, overwrite=args.overwrite,
                          metadata={"source_image": str(args.image), "model": args.model,
                                    "chunks": list(settings.chunks)})
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
    from ._cli_common import read_clicks
    from .core.adapt.negatives import drop_negated
    from .core.data import file_sha256
    from .core.data.provenance import provenance
    from .core.engine.orthoplanes import CHOICES
    from .core.engine.orthoplanes import choice as orthoplanes_choice

    if _is_chunked(args):
        return cmd_predict_chunked(args)
    out = Path(args.output)
    check_output(out, (".tif", ".tiff"), "instances", args.overwrite)
    _check_predict_options(args, chunked=False)
    vol = read_volume(args.image)
    negatives = read_clicks(args.negative_points, vol.data.shape, "--negative-points")
    positives = read_clicks(args.points, vol.data.shape)
    loaded, dev = model_and_device(args)
    print(f"{vol.path}: {vol.data.shape} {vol.data.dtype}; model {loaded.path}; {dev.describe()}", file=sys.stderr)
    pixel_size, said = pixel_size_for(check_pixel_size_flag(args), vol.voxel_size, loaded.pixel_size_nm)
    print(said, file=sys.stderr)
    orthoplanes, why = orthoplanes_choice(vol.data.shape, loaded.model.config, vol.voxel_size,
                                          CHOICES[args.orthoplanes], pixel_size)
    print(f"predicting along {why}", file=sys.stderr)
    seg = segment_volume(
        vol.data, loaded, dev, progress=Progress("predict" + (" xy, xz, yz planes" if orthoplanes else "")),
        flips=args.flips, link_3d=args.link_3d, threshold=args.threshold, min_size=args.min_size,
        pixel_size=pixel_size, orthoplanes=orthoplanes, voxel_size=vol.voxel_size,
    )
    left_out = {}
    if negatives is not None:  # the user's "not this" holds in the written instances (_shown_negatives)
        dropped, spared, _ = drop_negated(seg.labels, negatives, positives, linked=args.link_3d)
        left_out = {"negative_points": str(args.negative_points), "left_out_by_negative_clicks": dropped}
        print(f"{dropped} object(s) under the {len(negatives)} negative clicks left out"
              + (f", {spared} spared by a positive click (--points) on them" if spared else ""), file=sys.stderr)
    meta = provenance() | left_out | {
        "source_image": str(vol.path), "model": loaded.path, "model_sha256": file_sha256(loaded.path),
        "flips": args.flips, "orthoplanes": orthoplanes, "link_3d": args.link_3d, "threshold": args.threshold,
        "min_size": args.min_size,
        "pixel_size_nm": pixel_size, "model_pixel_size_nm": loaded.pixel_size_nm,
    }
    write_labels_tiff(out, seg.labels, vol.voxel_size, overwrite=args.overwrite, metadata=meta)
    print(f"wrote {out}: {seg.labels.shape} {seg.labels.dtype}, {int(seg.labels.max())} instances")
    return 0


def cmd_evaluate(args) -> int:
    from . import InputError, evaluate_volume, format_table, read_volume
    from .core.data import write_json

    if args.json:
        check_output(Path(args.json), (".json",), "metrics file", args.overwrite)
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


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    ap = argparse.ArgumentParser(prog="mito-wda", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--version", action="version", version=f"napari-mito-wda {__version__}")
    sub = ap.add_subparsers(dest="command", required=True)

    def add_model(p):
        p.add_argument("--model", default=None, help="checkpoint (.pt); default: the shipped source model")
        p.add_argument("--device", choices=["cpu", "cuda"], default=None, help="default: CUDA when present")
        p.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto",
                       help="network precision; auto: $MITO_WDA_PRECISION if set, else bf16 on GPUs and on CPUs with "
                            "native bf16 (AMX), fp32 elsewhere")

    p = sub.add_parser("predict",
                       help="segment mitochondria instances in a TIFF stack, or a zarr/HDF5 volume of any size")
    p.add_argument("image", help="TIFF, zarr or HDF5 volume")
    p.add_argument("-o", "--output", required=True, help="instance labels: TIFF, or a zarr store (chunked run)")
    add_model(p)
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    p.add_argument("--flips", action="store_true",
                   help="average 4 flips (4x the inference time; +0.006-0.010 Dice on Lucchi, docs/benchmarks.md)")
    p.add_argument("--orthoplanes", nargs="?", const="on", default="auto", choices=["auto", "on", "off"],
                   help="also predict along xz and yz and average (about 3x the time), for near-isotropic volumes "
                        "(z spacing within 1.5x of the pixel size, at least 32 voxels a side); TIFF in and out "
                        "only, not chunked runs. auto (default): on when the file's voxel size says so and the "
                        "stack is at most 4x 80 x 768 x 1024; --orthoplanes alone = on (docs/benchmarks.md: what "
                        "it gains)")
    p.add_argument("--3d", dest="link_3d", action="store_true", help="link 2D instances across slices into 3D ids")
    p.add_argument("--negative-points", default=None, metavar="NEG.csv",
                   help="'not mitochondria' clicks (napari Points CSV or .npy): the objects under them are left out "
                        "of the output (with --3d, the whole 3D object), as the plugin leaves them out of its layer")
    p.add_argument("--points", default=None, metavar="CLICKS.csv",
                   help="with --negative-points: centre clicks; an object holding one stays (the positive wins)")
    p.add_argument("--threshold", type=float, default=0.5)
    p.add_argument("--min-size", type=int, default=64,
                   help="smallest instance kept, in pixels per slice at the model's pixel size (fewer on a coarser "
                        "image whose pixel size is known)")
    add_pixel_size(p)
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
    p.add_argument("--negative-points", default=None,
                   help="'not mitochondria' clicks (same formats): the objects under them become background")
    p.add_argument("--corrections", default=None, metavar="EDITED.tif",
                   help="instances you proofread (painted, erased, split, merged): the objects you changed become "
                        "exact labels (changed = mitochondrion with its mask, erased = background); with --predicted")
    p.add_argument("--predicted", default=None, metavar="PREDICTED.tif",
                   help="the prediction (mito-wda predict -o) that --corrections was edited from")
    p.add_argument("-o", "--output", required=True, help="adapted checkpoint (.pt) to write")
    add_model(p)
    p.add_argument("--resume", default=None, help="continue from an adapted checkpoint")
    p.add_argument("--minutes", type=float, default=None,
                   help="wall-clock budget (default: 8 for quick, 240 for thorough)")
    p.add_argument("--max-iters", type=int, default=None, help="iteration budget (whichever comes first)")
    p.add_argument("--preset", choices=["quick", "thorough"], default="quick",
                   help="quick (default): crop, slices and rounds fitted to the volume; thorough: the paper's schedule")
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
    p.add_argument("--cross-views", choices=["auto", "on", "off"], default="auto",
                   help="pseudo-labels from the xz and yz views too, for near-isotropic stacks of 32+ slices such as "
                        "FIB-SEM (auto: on when the file's voxel size says so)")
    add_pixel_size(p)
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=cmd_adapt)

    add_suggest_parser(sub, add_model)

    p = sub.add_parser("demo", help="the shipped model on the shipped real sample, adapted from its shipped clicks")
    p.add_argument("--out", default="mito-wda-demo", help="folder for the results (a new run-* folder each time)")
    p.add_argument("--no-adapt", dest="adapt", action="store_false",
                   help="only the source model: skip the adaptation (about 3 minutes on a 2-core CPU)")
    # --adapt was the opt-in before adaptation became the default; still accepted
    p.add_argument("--adapt", action="store_true", default=True, help=argparse.SUPPRESS)
    p.add_argument("--minutes", type=float, default=3.0, help="adaptation budget in minutes")
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
