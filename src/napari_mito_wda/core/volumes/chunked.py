"""Segment volumes larger than memory, chunk by chunk, on dask.distributed, into a zarr store.

    result = segment_to_zarr("BIG.zarr", "OUT.zarr", model="adapted.pt",
                             settings=ChunkSettings(chunks=(8, 2048, 2048)),
                             cluster=ClusterSettings(workers=2))

Stages (each chunk task, in chunk_tasks.py, reads only its chunk plus a halo, so memory is bounded by
the chunk size):

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
import time
from collections.abc import Callable, Generator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..data.io import InputError, check_new_path
from ..data.pixel_size import check_pixel_size, in_plane, pixel_scale
from ..engine.instances import MIN_DISTANCE, MIN_SIZE, sizes_at_scale
from .chunk_tasks import (
    Grid,
    ModelPayload,
    TaskContext,
    instances_task,
    is_done,
    load_faces,
    norm_task,
    predict_task,
    relabel_task,
    release_models,
)
from .lazy_io import open_volume
from .runner import ClusterSettings, Runner
from .stitching import INSTANCE_DEFAULTS, stitch

FORMAT = "napari-mito-wda chunked segmentation"


@dataclass
class ChunkSettings:
    chunks: tuple[int, int, int] = (8, 2048, 2048)  # task = output chunk (Z, Y, X)
    instance_halo: int = 256  # px each side in Y/X: objects crossing faces must fit in it to be exact
    max_core: int = 1024  # largest tile core in working pixels (bounds network memory)
    flips: bool = False
    threshold: float = 0.5
    min_size: int = MIN_SIZE
    peak_threshold: float = 0.5
    min_distance: int = MIN_DISTANCE
    peak_prominence: float = 0.3
    torch_threads: int | None = None  # per task; default: cores / worker threads on a LocalCluster
    precision: str = "auto"
    device: str | None = None  # "cpu" / "cuda" / None = best on each worker
    batch_size: int = 1  # slices per network call: on CPU, batches of large tiles run slower per pixel
    keep_maps: bool = True  # keep `prob` and `heat` in the output (else removed at the end)

    def instance_kw(self, scale: float = 1.0) -> dict:
        """The instance step's settings on the image grid (scale: image nm / model nm, as segment_volume)."""
        kw = {k: getattr(self, k) for k in INSTANCE_DEFAULTS}
        return kw | sizes_at_scale(scale, self.min_size, self.min_distance)


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
    return ModelPayload(digest, loaded.model.config.to_dict(), state), {"model": loaded.path, "model_sha256": digest,
                                                                          "model_pixel_size_nm": loaded.pixel_size_nm}


def _prepare_output(output: Path, overwrite: bool) -> Path:
    if output.suffix.lower() not in (".zarr",):
        raise InputError(f"{output}: chunked output is a zarr store; name it *.zarr.")
    check_new_path(output, overwrite)
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
    pixel_size: float | None = None,
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
    pixel_size = check_pixel_size(pixel_size, "pixel_size")
    src = open_volume(source, dataset)
    pixel_size = pixel_size if pixel_size is not None else in_plane(src.voxel_size)
    output = Path(output)
    work = _prepare_output(output, overwrite)
    grid = Grid(src.shape, tuple(min(c, s) for c, s in zip(settings.chunks, src.shape)))
    payload, model_info = _payload(model)
    # What the result depends on: a .partial made with anything else is not resumed into this run.
    result_settings = {k: v for k, v in asdict(settings).items() if k not in ("torch_threads", "keep_maps")}
    run = {"format": FORMAT, "source": src.path or "array", "dataset": src.dataset, "shape": list(src.shape),
           "settings": result_settings | {"chunks": list(grid.chunks)}, **model_info,
           "pixel_size_nm": pixel_size, "scale": pixel_scale(pixel_size, model_info["model_pixel_size_nm"])}
    resumed = _open_or_create(work, run, grid, src.voxel_size)
    n = len(grid)

    with Runner(cluster) as runner:
        threads = settings.torch_threads
        if threads is None and not runner.is_sync and not cluster.scheduler:
            threads = max(1, (os.cpu_count() or 1) // runner.n_threads())
        ctx = TaskContext(src, str(work), grid, settings, threads, client_pid=os.getpid(), scale=run["scale"])
        # 1. per-slice normalisation ranges (cheap; recomputed on resume unless stored)
        norm_file = work / "_work" / "norm.npy"
        if norm_file.exists():
            ctx.norm = np.load(norm_file)
        else:
            slabs = [(z, min(src.shape[0], z + grid.chunks[0])) for z in range(0, src.shape[0], grid.chunks[0])]
            norm = np.zeros((src.shape[0], 2), np.float64)
            shared = runner.share(ctx)
            try:
                for k, (_, (z0, ranges)) in enumerate(runner.map(norm_task, slabs, shared, name="normalise")):
                    norm[z0 : z0 + len(ranges)] = ranges
                    yield Progress("normalise", k + 1, len(slabs))
            except InputError:  # a bad source (NaN pixels): a store this run just made holds nothing to resume
                if not resumed:
                    shutil.rmtree(work, ignore_errors=True)
                raise
            tmp = work / "_work" / ".norm.part.npy"
            np.save(tmp, norm)
            os.replace(tmp, norm_file)
            ctx.norm = norm
        resumed_chunks = 0
        # 2.-3. predict, then instances: only chunks without a marker
        stages = (("predict", predict_task, (runner.share(payload),)), ("instances", instances_task, ()))
        for stage, fn, extra in stages:
            todo = [i for i in range(n) if not is_done(str(work), stage, i)]
            if stage == "predict":
                resumed_chunks = n - len(todo)
            shared = runner.share(ctx)
            yield Progress(stage, n - len(todo), n, n - len(todo))
            for k, _ in enumerate(runner.map(fn, todo, shared, *extra, name=stage)):
                yield Progress(stage, n - len(todo) + k + 1, n, n - len(todo))
        # 4. stitch on the client: only the face records travel
        parts = [load_faces(str(work), i) for i in range(n)]
        st = stitch(parts)
        cut = sum(p.cut for p in parts)
        yield Progress("stitch", 1, 1)
        # 5. relabel
        todo = [(i, st.luts[i]) for i in range(n) if not is_done(str(work), "relabel", i)]
        shared = runner.share(ctx)
        for k, _ in enumerate(runner.map(relabel_task, todo, shared, name="relabel")):
            yield Progress("relabel", n - len(todo) + k + 1, n, n - len(todo))
        where = runner.describe()
        release_models()  # the sync runner's model lives in this process: free it

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
                    progress: Callable[[Progress], None] | None = None, pixel_size: float | None = None
                    ) -> ChunkedResult:
    """Segment a (large) volume into OUT.zarr (`labels`, and `prob`/`heat` unless keep_maps=False).

    source: a TIFF/zarr/HDF5 path or an array-like; model: checkpoint path, LoadedModel or None (shipped).
    pixel_size: the source's in-plane nm per pixel (default: its metadata); each chunk is rescaled to the
    model's pixel size through the same halo-exact tiling as in memory, the output is on the source's grid.
    """
    gen = segment_to_zarr_iter(source, output, model, settings, cluster, dataset, overwrite, pixel_size)
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
