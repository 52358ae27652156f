"""Segment volumes larger than memory, chunk by chunk, on dask.distributed, into a zarr store.

    result = segment_to_zarr("BIG.zarr", "OUT.zarr", model="adapted.pt",
                             settings=ChunkSettings(chunks=(8, 2048, 2048)),
                             cluster=ClusterSettings(workers=2))

Stages (each chunk task reads only its chunk plus a halo, so memory is bounded by the chunk size):

1. normalise: per-slice intensity range from the same strided subsample as the in-memory path;
2. predict: probability + centre heatmap per chunk (`tiling.predict_region`, halo = receptive field),
   equal to the whole-slice prediction; written to `prob` / `heat`;
3. instances: per chunk with an instance halo, from the stored maps (`stitching.chunk_instances`);
4. stitch (on the client, small): union-find over the chunks' face records -> one lookup per chunk;
5. relabel: `labels` = lookup[local ids], chunk by chunk.

Safety: everything is written into OUT.zarr.partial; a chunk is done only when its marker file exists,
and markers are written after the chunk's data, so a crashed or failed write is redone on resume. A
second run with the same settings resumes, skipping done chunks; the finished store is renamed to
OUT.zarr at the very end (an existing OUT.zarr is replaced only with overwrite=True).
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from collections.abc import Callable, Generator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..data.io import InputError, apply_range, intensity_range, sample_strides
from .alloc import keep_memory_for_inference
from .lazy_io import LazyVolume, open_volume
from .runner import ClusterSettings, Runner
from .stitching import INSTANCE_DEFAULTS, ChunkInstances, chunk_instances, stitch, window_box

FORMAT = "napari-mito-wda chunked segmentation"


@dataclass
class ChunkSettings:
    chunks: tuple[int, int, int] = (8, 2048, 2048)  # task = output chunk (Z, Y, X)
    instance_halo: int = 256  # px each side in Y/X: objects crossing faces must fit in it to be exact
    max_core: int = 1024  # largest tile core in working pixels (bounds network memory)
    flips: bool = False
    threshold: float = 0.5
    min_size: int = 64
    peak_threshold: float = 0.5
    min_distance: int = 9
    torch_threads: int | None = None  # per task; default: cores / worker threads on a LocalCluster
    precision: str = "auto"
    device: str | None = None  # "cpu" / "cuda" / None = best on each worker
    batch_size: int = 1  # slices per network call: on CPU, batches of large tiles run slower per pixel
    keep_maps: bool = True  # keep `prob` and `heat` in the output (else removed at the end)

    def instance_kw(self) -> dict:
        return {k: getattr(self, k) for k in INSTANCE_DEFAULTS}


@dataclass
class Progress:
    stage: str
    done: int
    total: int
    skipped: int = 0  # chunks found done by an earlier run


@dataclass
class ChunkedResult:
    path: str
    shape: tuple[int, int, int]
    n_instances: int
    cut_objects: int  # objects too large for the instance halo (0 = exact stitching)
    chunks: int
    resumed_chunks: int
    seconds: float
    where: str
    voxel_size: tuple[float, float, float] | None = None


# ------------------------------------------------------------------------------ chunk grid


@dataclass
class Grid:
    shape: tuple[int, int, int]
    chunks: tuple[int, int, int]

    @property
    def counts(self) -> tuple[int, int, int]:
        return tuple(-(-s // c) for s, c in zip(self.shape, self.chunks))

    def __len__(self) -> int:
        a, b, c = self.counts
        return a * b * c

    def box(self, i: int) -> tuple[int, int, int, int, int, int]:
        nz, ny, nx = self.counts
        iz, rem = divmod(i, ny * nx)
        iy, ix = divmod(rem, nx)
        (Z, H, W), (cz, cy, cx) = self.shape, self.chunks
        return (iz * cz, min(Z, (iz + 1) * cz), iy * cy, min(H, (iy + 1) * cy), ix * cx, min(W, (ix + 1) * cx))


# ------------------------------------------------------------------------------ what tasks share


@dataclass
class ModelPayload:
    """Weights and architecture, shipped once per worker; `token` names the model in the worker cache."""

    token: str
    config: dict
    state: dict


@dataclass
class TaskContext:
    source: LazyVolume
    work: str  # the .partial store
    grid: Grid
    settings: ChunkSettings
    torch_threads: int | None
    norm: np.ndarray | None = None  # (Z, 2) per-slice intensity range
    client_pid: int = 0  # tasks in another process (a worker) tune its allocator (core/volumes/alloc.py)


_MODELS: dict = {}
_MODELS_LOCK = threading.Lock()  # a worker's threads share one model; only one of them builds it
MODEL_BUILDS = {"count": 0}  # models built in this process (tests check: once per worker, not per chunk)


def _model_on_worker(payload: ModelPayload, settings: ChunkSettings):
    key = (payload.token, settings.device, settings.precision)
    with _MODELS_LOCK:
        return _MODELS[key] if key in _MODELS else _build_model(key, payload, settings)


def _build_model(key, payload: ModelPayload, settings: ChunkSettings):
    import torch

    from ..engine.device import pick_device
    from ..engine.model import ModelConfig, MultiTaskUNet

    dev = pick_device(settings.device, settings.precision)
    model = MultiTaskUNet(ModelConfig.from_dict(payload.config))
    model.load_state_dict(payload.state)
    model.to(dev.device).to(memory_format=torch.channels_last).eval()
    _MODELS.clear()  # one model per worker at a time
    _MODELS[key] = (model, dev)
    MODEL_BUILDS["count"] += 1
    return _MODELS[key]


def _set_threads(n: int | None) -> None:
    if n:
        import torch

        if torch.get_num_threads() != n:
            torch.set_num_threads(n)


# ------------------------------------------------------------------------------ markers


def _marker(work: str, stage: str, i: int) -> Path:
    return Path(work) / "_work" / "done" / stage / str(i)


def _mark_done(work: str, stage: str, i: int) -> None:
    path = _marker(work, stage, i)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.part")
    tmp.write_text("")
    os.replace(tmp, path)  # atomic: a marker is there whole or not at all


def _is_done(work: str, stage: str, i: int) -> bool:
    return _marker(work, stage, i).exists()


def _array(work: str, name: str, mode: str = "r+"):
    import zarr

    return zarr.open_array(store=work, path=name, mode=mode)


# ------------------------------------------------------------------------------ tasks (run on workers)


def _norm_task(z_range: tuple[int, int], ctx: TaskContext) -> tuple[int, np.ndarray]:
    """Per-slice (lo, hi) of slices z0..z1-1 from the strided subsample, read chunk by chunk."""
    z0, z1 = z_range
    src = ctx.source
    _, H, W = src.shape
    sy, sx = sample_strides((H, W))
    cy, cx = ctx.grid.chunks[1:]
    rows = []
    for ya in range(0, H, cy):  # block by block: bounded memory whatever the slice size
        cols = []
        for xa in range(0, W, cx):
            y_first, x_first = -(-ya // sy) * sy, -(-xa // sx) * sx
            cols.append(src.read(z0, z1, y_first, min(H, ya + cy), x_first, min(W, xa + cx), (sy, sx)))
        rows.append(np.concatenate(cols, axis=2))
    sample = np.concatenate(rows, axis=1)
    _check_finite(sample, src, z0)
    return z0, np.array([intensity_range(s) for s in sample], np.float64)


def _check_finite(arr: np.ndarray, src: LazyVolume, z0: int) -> None:
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        z = z0 + int(np.nonzero(~np.isfinite(arr).reshape(arr.shape[0], -1).all(axis=1))[0][0])
        raise InputError(f"{src.describe()}: slice {z} has NaN or infinite pixels; replace them and retry.")


def _predict_task(i: int, ctx: TaskContext, payload: ModelPayload) -> int:
    from ..engine.tiling import predict_region

    if _is_done(ctx.work, "predict", i):  # a retried or resubmitted task after a worker loss
        return i
    _set_threads(ctx.torch_threads)
    if os.getpid() != ctx.client_pid:
        keep_memory_for_inference()
    model, dev = _model_on_worker(payload, ctx.settings)
    z0, z1, y0, y1, x0, x1 = ctx.grid.box(i)
    src, (_, H, W) = ctx.source, ctx.source.shape
    norm = ctx.norm[z0:z1]

    def read(ya, yb, xa, xb):
        raw = src.read(z0, z1, ya, yb, xa, xb)
        _check_finite(raw, src, z0)
        return np.stack([apply_range(s, lo, hi) for s, (lo, hi) in zip(raw, norm)])

    s = ctx.settings
    prob, heat = predict_region(model, read, (H, W), (y0, y1, x0, x1), dev, max_core=s.max_core, flips=s.flips,
                                batch_size=s.batch_size)
    box = (slice(z0, z1), slice(y0, y1), slice(x0, x1))
    _array(ctx.work, "prob")[box] = prob
    _array(ctx.work, "heat")[box] = heat
    _mark_done(ctx.work, "predict", i)
    return i


def _instances_task(i: int, ctx: TaskContext) -> int:
    if _is_done(ctx.work, "instances", i):
        return i
    z0, z1, y0, y1, x0, x1 = ctx.grid.box(i)
    shape = ctx.source.shape
    win = window_box((y0, y1, x0, x1), shape[1:], ctx.settings.instance_halo)
    wbox = (slice(z0, z1), slice(win[0], win[1]), slice(win[2], win[3]))
    prob, heat = _array(ctx.work, "prob", "r")[wbox], _array(ctx.work, "heat", "r")[wbox]
    part = chunk_instances(prob, heat, z0, (y0, y1, x0, x1), win, shape, **ctx.settings.instance_kw())
    _array(ctx.work, "_local")[z0:z1, y0:y1, x0:x1] = part.local
    side = Path(ctx.work) / "_work" / "faces" / f"{i}.npz"
    side.parent.mkdir(parents=True, exist_ok=True)
    tmp = side.with_name(f".{i}.{os.getpid()}.part.npz")
    np.savez(tmp, n_ids=part.n_ids, cut=part.cut, inner_keys=part.inner_keys, inner_ids=part.inner_ids,
             outer_keys=part.outer_keys, outer_ids=part.outer_ids)
    os.replace(tmp, side)
    _mark_done(ctx.work, "instances", i)
    return i


def _relabel_task(item: tuple[int, np.ndarray], ctx: TaskContext) -> int:
    i, lut = item
    if _is_done(ctx.work, "relabel", i):
        return i
    z0, z1, y0, y1, x0, x1 = ctx.grid.box(i)
    local = _array(ctx.work, "_local", "r")[z0:z1, y0:y1, x0:x1]
    _array(ctx.work, "labels")[z0:z1, y0:y1, x0:x1] = lut[local]
    _mark_done(ctx.work, "relabel", i)
    return i


def _load_faces(work: str, i: int) -> ChunkInstances:
    with np.load(Path(work) / "_work" / "faces" / f"{i}.npz") as d:
        return ChunkInstances(np.zeros((0, 0, 0), np.uint32), int(d["n_ids"]), d["inner_keys"], d["inner_ids"],
                              d["outer_keys"], d["outer_ids"], int(d["cut"]))


# ------------------------------------------------------------------------------ the driver


def _payload(model) -> tuple[ModelPayload, dict]:
    """(payload, description) from a path, None (shipped model) or a LoadedModel."""
    import hashlib

    from ..data.checkpoint import LoadedModel, file_sha256, load_checkpoint

    loaded = model if isinstance(model, LoadedModel) else load_checkpoint(model, device="cpu")
    state = {k: v.detach().cpu() for k, v in loaded.model.state_dict().items()}
    if loaded.path and Path(loaded.path).exists() and not isinstance(model, LoadedModel):
        digest = file_sha256(loaded.path)
    else:  # an in-memory model (e.g. just adapted in napari): hash the weights themselves
        h = hashlib.sha256()
        for k in sorted(state):
            h.update(k.encode())
            h.update(state[k].numpy().tobytes())
        digest = h.hexdigest()
    return ModelPayload(digest, loaded.model.config.to_dict(), state), {"model": loaded.path, "model_sha256": digest}


def _prepare_output(output: Path, overwrite: bool) -> Path:
    if output.suffix.lower() not in (".zarr",):
        raise InputError(f"{output}: chunked output is a zarr store; name it *.zarr.")
    if output.exists() and not overwrite:
        raise FileExistsError(f"{output} already exists; choose another name or pass overwrite (--overwrite).")
    if not output.parent.exists():
        raise InputError(f"{output.parent}: output folder does not exist.")
    return output.with_name(output.name + ".partial")


def _open_or_create(work: Path, run: dict, grid: Grid, voxel) -> bool:
    """Create the .partial store, or check that the one there is this run's; True when resuming."""
    import zarr

    run_file = work / "_work" / "run.json"
    if work.exists():
        try:
            before = json.loads(run_file.read_text())
        except (OSError, json.JSONDecodeError):
            before = None
        if before != json.loads(json.dumps(run)):
            raise InputError(
                f"{work} holds an unfinished run with other inputs or settings; delete it to start over, "
                "or rerun with the same input, model and settings to resume it."
            )
        return True
    group = zarr.open_group(str(work), mode="w-")
    attrs = {"voxel_size_nm": list(voxel) if voxel else None}
    for name, dtype in (("prob", "float32"), ("heat", "float32"), ("_local", "uint32"), ("labels", "uint32")):
        arr = group.create_array(name, shape=grid.shape, chunks=grid.chunks, dtype=dtype, fill_value=0)
        arr.attrs.update(attrs)
    run_file.parent.mkdir(parents=True, exist_ok=True)
    run_file.write_text(json.dumps(run, indent=1))
    return False


def segment_to_zarr_iter(
    source,
    output: str | os.PathLike,
    model=None,
    settings: ChunkSettings | None = None,
    cluster: ClusterSettings | None = None,
    dataset: str | None = None,
    overwrite: bool = False,
) -> Generator[Progress, None, ChunkedResult]:
    """Generator form of :func:`segment_to_zarr`: yields Progress after every finished chunk."""
    import zarr

    t0 = time.perf_counter()
    settings = settings or ChunkSettings()
    cluster = cluster or ClusterSettings()
    settings.chunks = tuple(int(c) for c in settings.chunks)
    if len(settings.chunks) != 3 or min(settings.chunks) < 1:
        raise InputError(f"chunks must be three positive sizes Z,Y,X, got {settings.chunks}.")
    if min(settings.chunks[1:]) < 16:
        raise InputError("chunks must be at least 16 pixels in Y and X.")
    src = open_volume(source, dataset)
    output = Path(output)
    work = _prepare_output(output, overwrite)
    grid = Grid(src.shape, tuple(min(c, s) for c, s in zip(settings.chunks, src.shape)))
    payload, model_info = _payload(model)
    # What the result depends on: a .partial made with anything else is not resumed into this run.
    result_settings = {k: v for k, v in asdict(settings).items() if k not in ("torch_threads", "keep_maps")}
    run = {"format": FORMAT, "source": src.path or "array", "dataset": src.dataset, "shape": list(src.shape),
           "settings": result_settings | {"chunks": list(grid.chunks)}, **model_info}
    resumed = _open_or_create(work, run, grid, src.voxel_size)
    n = len(grid)

    with Runner(cluster) as runner:
        threads = settings.torch_threads
        if threads is None and not runner.is_sync and not cluster.scheduler:
            threads = max(1, (os.cpu_count() or 1) // runner.n_threads())
        ctx = TaskContext(src, str(work), grid, settings, threads, client_pid=os.getpid())
        # 1. per-slice normalisation ranges (cheap; recomputed on resume unless stored)
        norm_file = work / "_work" / "norm.npy"
        if norm_file.exists():
            ctx.norm = np.load(norm_file)
        else:
            slabs = [(z, min(src.shape[0], z + grid.chunks[0])) for z in range(0, src.shape[0], grid.chunks[0])]
            norm = np.zeros((src.shape[0], 2), np.float64)
            shared = runner.share(ctx)
            for k, (_, (z0, ranges)) in enumerate(runner.map(_norm_task, slabs, shared, name="normalise")):
                norm[z0 : z0 + len(ranges)] = ranges
                yield Progress("normalise", k + 1, len(slabs))
            tmp = work / "_work" / ".norm.part.npy"
            np.save(tmp, norm)
            os.replace(tmp, norm_file)
            ctx.norm = norm
        resumed_chunks = 0
        # 2.-3. predict, then instances: only chunks without a marker
        for stage, fn, extra in (("predict", _predict_task, (runner.share(payload),)), ("instances", _instances_task, ())):
            todo = [i for i in range(n) if not _is_done(str(work), stage, i)]
            if stage == "predict":
                resumed_chunks = n - len(todo)
            shared = runner.share(ctx)
            yield Progress(stage, n - len(todo), n, n - len(todo))
            for k, _ in enumerate(runner.map(fn, todo, shared, *extra, name=stage)):
                yield Progress(stage, n - len(todo) + k + 1, n, n - len(todo))
        # 4. stitch on the client: only the face records travel
        parts = [_load_faces(str(work), i) for i in range(n)]
        st = stitch(parts)
        cut = sum(p.cut for p in parts)
        yield Progress("stitch", 1, 1)
        # 5. relabel
        todo = [(i, st.luts[i]) for i in range(n) if not _is_done(str(work), "relabel", i)]
        shared = runner.share(ctx)
        for k, _ in enumerate(runner.map(_relabel_task, todo, shared, name="relabel")):
            yield Progress("relabel", n - len(todo) + k + 1, n, n - len(todo))
        where = runner.describe()
        _MODELS.clear()  # the sync runner's model lives in this process: free it

    group = zarr.open_group(str(work), mode="r+")
    del group["_local"]
    if not settings.keep_maps:
        del group["prob"], group["heat"]
    voxel = src.voxel_size
    group.attrs["mito_wda"] = run | {"status": "complete", "n_instances": st.n_instances, "cut_objects": cut,
                                     "voxel_size_nm": list(voxel) if voxel else None}
    shutil.rmtree(work / "_work")
    _replace_dir(work, output)
    return ChunkedResult(str(output), src.shape, st.n_instances, cut, n, resumed_chunks if resumed else 0,
                         time.perf_counter() - t0, where, voxel)


def _replace_dir(src: Path, dst: Path) -> None:
    """Move the finished store into place; an existing one (overwrite) is removed only afterwards."""
    old = None
    if dst.exists():
        old = dst.with_name(f".{dst.name}.old-{os.getpid()}")
        os.replace(dst, old)
    os.replace(src, dst)
    if old is not None:
        shutil.rmtree(old) if old.is_dir() else old.unlink()


def segment_to_zarr(source, output, model=None, settings=None, cluster=None, dataset=None, overwrite=False,
                    progress: Callable[[Progress], None] | None = None) -> ChunkedResult:
    """Segment a (large) volume into OUT.zarr (`labels`, and `prob`/`heat` unless keep_maps=False).

    source: a TIFF/zarr/HDF5 path or an array-like; model: checkpoint path, LoadedModel or None (shipped).
    """
    gen = segment_to_zarr_iter(source, output, model, settings, cluster, dataset, overwrite)
    while True:
        try:
            event = next(gen)
        except StopIteration as stop:
            return stop.value
        if progress is not None:
            progress(event)


def read_labels(path: str | os.PathLike):
    """(lazy labels array, voxel size or None) of a finished output store; refuses unfinished ones."""
    import zarr

    path = Path(path)
    if not path.exists():
        partial = path.with_name(path.name + ".partial")
        hint = f" (an unfinished run is in {partial}; rerun the same command to resume it)" if partial.exists() else ""
        raise InputError(f"{path}: no such store{hint}.")
    group = zarr.open_group(str(path), mode="r")
    meta = dict(group.attrs).get("mito_wda", {})
    if meta.get("status") != "complete":
        raise InputError(f"{path}: not a finished napari-mito-wda segmentation.")
    vox = meta.get("voxel_size_nm")
    return group["labels"], (tuple(vox) if vox else None)
