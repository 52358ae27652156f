"""Chunked segmentation into zarr: equal to the whole-volume result, resumable, retried, on dask."""

import os
import platform
import subprocess
import sys

import numpy as np
import pytest
import torch
import zarr

from napari_mito_wda.core.data.checkpoint import load_checkpoint, save_checkpoint
from napari_mito_wda.core.data.io import InputError, normalize_slices
from napari_mito_wda.core.data.synthetic import make_volume
from napari_mito_wda.core.engine.device import DeviceInfo
from napari_mito_wda.core.engine.inference import predict_volume
from napari_mito_wda.core.engine.instances import instances_volume
from napari_mito_wda.core.engine.model import ModelConfig, MultiTaskUNet
from napari_mito_wda.core.engine.tiling import predict_exact
from napari_mito_wda.core.volumes import alloc, chunk_tasks
from napari_mito_wda.core.volumes.chunked import ChunkSettings, read_labels, segment_to_zarr
from napari_mito_wda.core.volumes.runner import WORKER_MALLOC_ENV, ClusterSettings, Runner

from .test_stitching import same_partition

SYNC = ClusterSettings(scheduler="sync")
CPU32 = DeviceInfo(torch.device("cpu"), None, 1)
SHAPE = (3, 120, 136)  # small synthetic volume for the tiny model
CHUNKS = (2, 48, 56)  # 2 x 3 x 3 chunks, aligned to nothing


@pytest.fixture(scope="module")
def real():
    """A real EM crop, the shipped model and the default in-memory answer (`predict_volume`).

    The in-memory path tiles as the chunked one does (tiling.py), so this compares with exactly what
    `mito-wda predict IMAGE.tif` computes.
    """
    from napari_mito_wda.sample import load_lucchi_sample

    image = load_lucchi_sample()[0][:3, :384, :512]  # the corner the sample was until session 20 (test time)
    prob, heat = predict_volume(load_checkpoint(None).model, image, CPU32)
    return image, prob, heat, instances_volume(prob, heat)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny real network (fast), a synthetic volume and its in-memory answer."""
    torch.manual_seed(0)
    model = MultiTaskUNet(ModelConfig(base=4, depth=2, proj_dim=8, downsample=2)).eval()
    ckpt = save_checkpoint(tmp_path_factory.mktemp("tiny") / "tiny.pt", model)
    image = make_volume(SHAPE, n_objects=12, seed=4)[0]
    prob, heat = predict_exact(model, normalize_slices(image), CPU32)
    return str(ckpt), image, prob, heat


def settings(**kw):
    return ChunkSettings(**({"chunks": CHUNKS, "instance_halo": 48, "precision": "fp32", "device": "cpu"} | kw))


def test_chunked_equals_in_memory_on_real_em(real, tmp_path):
    image, prob, heat, labels = real
    events = []
    res = segment_to_zarr(image, tmp_path / "out.zarr", settings=settings(chunks=(2, 192, 256), instance_halo=160),
                          cluster=SYNC, progress=events.append)
    out = zarr.open_group(str(tmp_path / "out.zarr"), mode="r")
    np.testing.assert_allclose(out["prob"][...], prob, atol=1e-5, rtol=0)
    np.testing.assert_allclose(out["heat"][...], heat, atol=1e-4, rtol=1e-4)
    got = out["labels"][...]
    assert labels.max() >= 10  # enough objects for the comparison to mean something
    crossing = [i for i in np.unique(got[:, 190:194]) if i] + [i for i in np.unique(got[:, :, 254:258]) if i]
    assert len(crossing) >= 3  # ... and some of them cross the chunk faces
    assert res.cut_objects == 0
    assert same_partition(labels, got)
    assert res.n_instances == len(np.unique(labels)) - 1
    predicted = [e.done for e in events if e.stage == "predict"]
    assert predicted[-1] == res.chunks == 8 and predicted == sorted(predicted)
    assert not (tmp_path / "out.zarr.partial").exists()


def test_output_is_refused_when_present_and_replaced_with_overwrite(tiny, tmp_path):
    ckpt, image = tiny[:2]
    out = tmp_path / "out.zarr"
    out.mkdir()
    (out / "keep").write_text("x")
    with pytest.raises(FileExistsError, match="overwrite"):
        segment_to_zarr(image[:1, :64, :64], out, ckpt, settings=settings(), cluster=SYNC)
    assert (out / "keep").exists()
    segment_to_zarr(image[:1, :64, :64], out, ckpt, settings=settings(), cluster=SYNC, overwrite=True)
    assert not (out / "keep").exists() and read_labels(out)[0].shape == (1, 64, 64)


class Flaky:
    """An array whose prediction reads of the chunks at column `bad_x` fail `fails` times (None: always).

    Prediction reads are the ones wider than a chunk (they carry the halo); the normalisation stage,
    which reads chunk by chunk, is left alone so that the failure hits the expensive stage.
    """

    def __init__(self, data, bad_x, fails):
        self.data, self.bad_x, self.fails = data, bad_x, fails
        self.shape, self.dtype = data.shape, data.dtype
        self.failed = 0

    def __getitem__(self, key):
        xs = key[2]
        wide = xs.stop - xs.start > CHUNKS[2]
        if wide and xs.start <= self.bad_x < xs.stop and (self.fails is None or self.failed < self.fails):
            self.failed += 1
            raise OSError("simulated read error")
        return self.data[key]


def test_failed_chunk_is_retried(tiny, tmp_path):
    ckpt, image, prob = tiny[:3]
    src = Flaky(image, bad_x=SHAPE[2] - 1, fails=2)
    segment_to_zarr(src, tmp_path / "out.zarr", ckpt, settings=settings(),
                    cluster=ClusterSettings(scheduler="sync", retries=2))
    assert src.failed == 2
    np.testing.assert_allclose(zarr.open_group(str(tmp_path / "out.zarr"))["prob"][...], prob, atol=1e-5, rtol=0)


def test_failure_leaves_no_output_and_a_rerun_resumes(tiny, tmp_path):
    ckpt, image, prob, heat = tiny
    out = tmp_path / "out.zarr"
    with pytest.raises(OSError, match="simulated"):
        segment_to_zarr(Flaky(image, bad_x=SHAPE[2] - 1, fails=None), out, ckpt, settings=settings(), cluster=SYNC)
    assert not out.exists()
    with pytest.raises(InputError, match="unfinished run"):
        read_labels(out)
    partial = tmp_path / "out.zarr.partial"
    done = sorted(int(p.name) for p in (partial / "_work" / "done" / "predict").iterdir())
    assert 0 < len(done) < 18
    # A crash between a chunk's data and its marker: garbage data, no marker -> must be recomputed.
    victim = done[0]
    z0, z1, y0, y1, x0, x1 = chunk_tasks.Grid(SHAPE, CHUNKS).box(victim)
    zarr.open_array(str(partial), path="prob", mode="r+")[z0:z1, y0:y1, x0:x1] = 0.123
    (partial / "_work" / "done" / "predict" / str(victim)).unlink()
    # Other settings must not mix with the unfinished run.
    with pytest.raises(InputError, match="unfinished run"):
        segment_to_zarr(image, out, ckpt, settings=settings(min_size=10), cluster=SYNC)
    res = segment_to_zarr(image, out, ckpt, settings=settings(), cluster=SYNC)
    assert res.resumed_chunks == len(done) - 1
    np.testing.assert_allclose(zarr.open_group(str(out), mode="r")["prob"][...], prob, atol=1e-5, rtol=0)
    assert same_partition(instances_volume(prob, heat), read_labels(out)[0][...])


def test_inputs_are_checked(tmp_path):
    with pytest.raises(InputError, match="zarr"):
        segment_to_zarr(np.zeros((2, 32, 32), np.uint8), tmp_path / "out.tif", cluster=SYNC)
    with pytest.raises(InputError, match="pixel type"):
        segment_to_zarr(np.zeros((2, 32, 32), bool), tmp_path / "out.zarr", cluster=SYNC)
    bad = np.zeros((2, 32, 32), np.float32)
    bad[1, 3, 3] = np.nan
    with pytest.raises(InputError, match="slice 1 has NaN"):
        segment_to_zarr(bad, tmp_path / "out.zarr", settings=settings(), cluster=SYNC)
    assert not (tmp_path / "out.zarr.partial").exists()  # nothing to resume: no leftover store


def test_on_a_dask_cluster_with_the_model_shipped_once(tiny, tmp_path):
    """A real dask.distributed cluster (a worker process) reached by its address, as a SLURM user would."""
    from distributed import Client, LocalCluster

    ckpt, image, prob = tiny[:3]
    path = tmp_path / "in.zarr"
    arr = zarr.create_array(str(path), shape=SHAPE, chunks=(1, 64, 64), dtype="uint8")
    arr[...] = image
    arr.attrs["voxel_size_nm"] = [30.0, 5.0, 5.0]
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=True, dashboard_address=None) as cluster:
        res = segment_to_zarr(str(path), tmp_path / "out.zarr", ckpt, settings=settings(torch_threads=1),
                              cluster=ClusterSettings(scheduler=cluster.scheduler_address))
        with Client(cluster.scheduler_address) as client:
            builds = client.run(lambda: chunk_tasks.MODEL_BUILDS["count"])
            tuned = client.run(
                lambda: __import__("napari_mito_wda.core.volumes.alloc", fromlist=["_STATE"])._STATE["ok"])
    assert list(builds.values()) == [1]  # 18 chunks on two threads, one model built on the worker
    if sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc":
        assert list(tuned.values()) == [True]  # a worker started without our environment: mallopt in the task
    labels, voxel = read_labels(tmp_path / "out.zarr")
    assert voxel == (30.0, 5.0, 5.0) and res.voxel_size == voxel and labels.shape == SHAPE
    np.testing.assert_allclose(zarr.open_group(str(tmp_path / "out.zarr"))["prob"][...], prob, atol=1e-5, rtol=0)
    assert "1 workers, 2 threads" in res.where


def test_local_cluster_by_default(tiny, tmp_path):
    """No scheduler given: a LocalCluster is started (threads here, to keep the test fast) and closed."""
    ckpt, image, prob = tiny[:3]
    res = segment_to_zarr(image, tmp_path / "out.zarr", ckpt, settings=settings(),
                          cluster=ClusterSettings(workers=2, processes=False))
    assert "LocalCluster: 2 workers" in res.where
    np.testing.assert_allclose(zarr.open_group(str(tmp_path / "out.zarr"))["prob"][...], prob, atol=1e-5, rtol=0)
    # Workers that are threads of this process (napari) and sync runs leave this process's allocator alone.
    segment_to_zarr(image, tmp_path / "out2.zarr", ckpt, settings=settings(), cluster=SYNC)
    assert not alloc._STATE["done"]


def test_local_cluster_workers_get_the_malloc_environment():
    """Worker processes of a LocalCluster start with WORKER_MALLOC_ENV; this process's environment is restored."""
    before = {k: os.environ.get(k) for k in WORKER_MALLOC_ENV}
    with Runner(ClusterSettings(workers=1)) as runner:
        env = runner.client.run(lambda: {k: __import__("os").environ.get(k) for k in WORKER_MALLOC_ENV})
    assert list(env.values()) == [WORKER_MALLOC_ENV]
    assert {k: os.environ.get(k) for k in WORKER_MALLOC_ENV} == before


@pytest.mark.skipif(not (sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"), reason="glibc only")
def test_malloc_settings_take_effect_on_glibc():
    code = "from napari_mito_wda.core.volumes.alloc import keep_memory_for_inference as k; print(k(), k())"
    src = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(alloc.__file__))))  # this checkout's package
    env = os.environ | {"PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert out.stdout.split() == ["True", "True"]


class Recording:
    """An array that records the extent of every read (what a worker holds of the input at once)."""

    def __init__(self, data):
        self.data, self.shape, self.dtype = data, data.shape, data.dtype
        self.extents = []

    def __getitem__(self, key):
        self.extents.append(tuple(len(range(*k.indices(n))) for k, n in zip(key, self.shape)))
        return self.data[key]


def test_reads_are_bounded_by_chunk_plus_halo(tiny, tmp_path):
    from napari_mito_wda.core.engine.tiling import working_halo

    ckpt, image, prob = tiny[:3]
    big = np.concatenate([image] * 2, axis=2)  # (3, 120, 272): 2 x 3 x 5 chunks
    src = Recording(big)
    segment_to_zarr(src, tmp_path / "out.zarr", ckpt, settings=settings(), cluster=SYNC)
    model = load_checkpoint(ckpt).model
    f, m = model.config.downsample, model.multiple
    reach = (working_halo(model.config) + 2 * m) * f  # halo + grid rounding + the bilinear margin
    cz, cy, cx = CHUNKS
    assert max(e[0] for e in src.extents) <= cz
    assert max(e[1] for e in src.extents) <= cy + 2 * reach
    assert max(e[2] for e in src.extents) <= cx + 2 * reach < big.shape[2]  # never a whole slice
