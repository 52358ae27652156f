"""Bad output paths, faults and interruptions, and bad settings and flags of docs/bad-inputs.md through the
command line: a one-line message saying what to do, exit code 2 (1 for a failed write, 130 when interrupted),
and nothing written or lost. Images, clicks and checkpoints are in test_bad_inputs.py."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time

import pytest
import tifffile
import torch

from napari_mito_wda.cli import main
from napari_mito_wda.core.data.synthetic import make_volume

from .conftest import cli, listing

# --------------------------------------------------------------------------- output path


@pytest.mark.parametrize("command, output", [
    ("predict", "keep.tif"), ("chunked", "keep.zarr"), ("adapt", "keep.pt"), ("evaluate", "keep.json"),
])
def test_an_existing_output_is_never_replaced_without_overwrite(command, output, em, tiny_ckpt,
                                                                adaptable_model_file, tmp_path, capsys):
    out = tmp_path / output
    if output.endswith(".zarr"):
        out.mkdir()
        (out / "mine").write_text("keep me")
    else:
        out.write_text("keep me")
    args = {
        "predict": ["predict", em, "-o", out, "--model", tiny_ckpt],
        "chunked": ["predict", em, "-o", out, "--model", tiny_ckpt, "--scheduler", "sync"],
        "adapt": ["adapt", em, "-o", out, "--model", adaptable_model_file],
        "evaluate": ["evaluate", em, em, "--json", out],
    }[command]
    rc, err = cli(args, capsys)
    assert rc == 2 and "already exists" in err and "--overwrite" in err
    assert (out / "mine" if out.is_dir() else out).read_text() == "keep me"


@pytest.mark.parametrize("command, output, phrase", [
    ("predict", "no/out.tif", "output folder does not exist"),
    ("predict", "no/out.zarr", "output folder does not exist"),
    ("adapt", "no/a.pt", "output folder does not exist"),
    ("evaluate", "no/m.json", "output folder does not exist"),
    ("predict", "out.png", "name the instances *.tif"),
    ("predict", "out", "name the instances *.tif"),
    ("predict", "out.zar", "name the output *.zarr"),  # chunked run (--scheduler): zarr or TIFF
    ("adapt", "a.txt", "name the adapted model *.pt"),
    ("evaluate", "m.txt", "name the metrics file *.json"),
])
def test_bad_output_paths_fail_before_any_work(command, output, phrase, em, tiny_ckpt, adaptable_model_file,
                                               tmp_path, capsys, monkeypatch):
    import napari_mito_wda
    import napari_mito_wda.core.data.io as io

    # nothing may be read (a long prediction must not come first); the CLI takes read_volume from the
    # package's lazy exports, which keep the function once looked up: patch both places
    monkeypatch.setattr(io, "read_volume", None)
    monkeypatch.setattr(napari_mito_wda, "read_volume", None, raising=False)
    out = tmp_path / output
    args = {
        "predict": ["predict", em, "-o", out, "--model", tiny_ckpt]
        + (["--scheduler", "sync"] if output.endswith((".zarr", ".zar")) else []),
        "adapt": ["adapt", em, "-o", out, "--model", adaptable_model_file],
        "evaluate": ["evaluate", em, em, "--json", out],
    }[command]
    before = listing(tmp_path)
    rc, err = cli(args, capsys)
    assert rc == 2 and phrase in err
    assert listing(tmp_path) == before  # no folder made, no file written


def test_a_full_disk_keeps_the_old_result_and_leaves_no_debris(em, tiny_ckpt, tmp_path, capsys, monkeypatch):
    out = tmp_path / "out.tif"
    out.write_bytes(b"last week's result")

    def disk_full(*args, **kwargs):  # what the OS reports when the disk fills up mid-write
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(tifffile, "imwrite", disk_full)
    rc, err = cli(["predict", em, "-o", out, "--model", tiny_ckpt, "--overwrite"], capsys, late=True)
    assert rc == 1 and "No space left on device (nothing was overwritten); free disk space" in err
    assert out.read_bytes() == b"last week's result"
    assert listing(tmp_path) == ["em.tif", "out.tif", "tiny.pt"]


def test_a_full_disk_during_adaptation_keeps_the_old_model(em, adaptable_model_file, tmp_path, capsys, monkeypatch):
    out = tmp_path / "a.pt"
    out.write_bytes(b"my earlier model")

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", disk_full)
    rc, err = cli(["adapt", em, "-o", out, "--model", adaptable_model_file, "--max-iters", "1", "--overwrite"],
                  capsys, late=True)
    assert rc == 1 and "could not write" in err and "free disk space" in err
    assert out.read_bytes() == b"my earlier model"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.pt", "em.tif"]


# --------------------------------------------------------------------------- faults


def test_ctrl_c_once_stops_the_adaptation_and_keeps_the_best_model(adaptable_model_file, tmp_path):
    from napari_mito_wda.core.data.checkpoint import load_checkpoint

    img, _ = make_volume((3, 96, 96), n_objects=6, seed=5)
    tifffile.imwrite(tmp_path / "em.tif", img, photometric="minisblack")
    out = tmp_path / "run.pt"
    proc = subprocess.Popen([sys.executable, "-m", "napari_mito_wda", "adapt", str(tmp_path / "em.tif"), "-o",
                             str(out), "--model", str(adaptable_model_file), "--minutes", "30"],
                            env=dict(os.environ, OMP_NUM_THREADS="1"), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        t0 = time.perf_counter()
        while not out.exists() and proc.poll() is None and time.perf_counter() - t0 < 120:
            time.sleep(0.05)
        assert out.exists() and proc.poll() is None, "the first round's checkpoint never appeared"
        proc.send_signal(signal.SIGINT)
        stdout, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "stopping: saving the best model so far" in err and f"wrote {out}" in stdout
    assert load_checkpoint(out).meta["adaptations"][-1]["finished"] is False  # marked as stopped early


def test_an_interrupted_chunked_run_says_how_to_resume_and_resumes(em, tiny_ckpt, tmp_path, capsys, monkeypatch):
    import napari_mito_wda.cli as cli_module

    out = tmp_path / "out.zarr"
    args = ["predict", em, "-o", out, "--model", tiny_ckpt, "--scheduler", "sync", "--chunks", "1,64,80"]
    real = cli_module.Progress

    class CtrlC(real):
        def __call__(self, done, total):
            if self.label.startswith("predict") and done == 2:
                raise KeyboardInterrupt  # what Ctrl-C raises in the main thread
            super().__call__(done, total)

    monkeypatch.setattr(cli_module, "Progress", CtrlC)
    assert main([str(a) for a in args]) == 130
    err = capsys.readouterr().err
    assert f"finished chunks are kept in {out}.partial; run the same command again to resume" in err
    assert not out.exists() and (tmp_path / "out.zarr.partial").exists()
    monkeypatch.setattr(cli_module, "Progress", real)
    assert main([str(a) for a in args]) == 0
    assert "(resumed, 2 done before)" in capsys.readouterr().err and out.exists()


# --------------------------------------------------------------------------- settings


@pytest.mark.parametrize("extra, phrase", [
    (["--chunks", "a,b,c"], "three positive integers"),
    (["--chunks", "0,32,32"], "three positive integers"),
    (["--chunks=-1,32,32"], "three positive integers"),
    (["--instance-halo", "-3"], "--instance-halo takes a whole number, 0 or more"),
    (["--torch-threads", "0"], "--torch-threads takes a whole number, 1 or more"),
    (["--memory-limit", "lots"], "--memory-limit takes a size"),
])
def test_bad_chunked_settings_fail_before_any_work(extra, phrase, em, tiny_ckpt, tmp_path, capsys):
    rc, err = cli(["predict", em, "-o", tmp_path / "o.zarr", "--model", tiny_ckpt, "--scheduler", "sync", *extra],
                  capsys)
    assert rc == 2 and phrase in err and listing(tmp_path) == ["em.tif", "tiny.pt"]


def test_bad_worker_count_fails_before_a_cluster_starts(em, tiny_ckpt, tmp_path, capsys):
    rc, err = cli(["predict", em, "-o", tmp_path / "o.zarr", "--model", tiny_ckpt, "--workers", "-2"], capsys)
    assert rc == 2 and "--workers takes a whole number, 1 or more" in err


@pytest.mark.parametrize("extra, phrase", [
    (["--threshold", "1.5"], "--threshold takes a probability between 0 and 1"),
    (["--min-size", "-5"], "--min-size takes a number of pixels, 0 or more"),
])
def test_bad_prediction_settings_are_refused(extra, phrase, em, tiny_ckpt, tmp_path, capsys):
    rc, err = cli(["predict", em, "-o", tmp_path / "o.tif", "--model", tiny_ckpt, *extra], capsys)
    assert rc == 2 and phrase in err and not (tmp_path / "o.tif").exists()


@pytest.mark.parametrize("extra, phrase", [
    (["--minutes", "0"], "--minutes takes a time budget above 0"),
    (["--max-iters", "0"], "--max-iters takes a number of iterations, 1 or more"),
    (["--source-veto", "-0.1"], "--source-veto takes a probability between 0 and 1"),
])
def test_bad_adaptation_settings_are_refused(extra, phrase, em, adaptable_model_file, tmp_path, capsys):
    rc, err = cli(["adapt", em, "-o", tmp_path / "a.pt", "--model", adaptable_model_file, *extra], capsys)
    assert rc == 2 and phrase in err and not (tmp_path / "a.pt").exists()


@pytest.mark.parametrize("output", ["o.tif", "o.zarr"])
@pytest.mark.parametrize("variable, value, phrase", [
    ("MITO_WDA_PRECISION", "fp16", "MITO_WDA_PRECISION must be auto, fp32 or bf16, not 'fp16'; set it"),
    ("MITO_WDA_DEVICE", "tpu", "MITO_WDA_DEVICE must be cpu or cuda, not 'tpu'; set it"),
])
def test_bad_environment_variables_are_named(variable, value, phrase, output, em, tiny_ckpt, tmp_path, capsys,
                                             monkeypatch):
    monkeypatch.setenv(variable, value)
    extra = ["--scheduler", "sync"] if output.endswith("zarr") else []
    rc, err = cli(["predict", em, "-o", tmp_path / output, "--model", tiny_ckpt, *extra], capsys)
    assert rc == 2 and phrase in err and listing(tmp_path) == ["em.tif", "tiny.pt"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA GPU is present here")
@pytest.mark.parametrize("command", ["predict", "chunked", "adapt"])
def test_cuda_without_a_gpu_says_how_to_run_on_the_cpu(command, em, tiny_ckpt, adaptable_model_file, tmp_path,
                                                       capsys):
    args = {
        "predict": ["predict", em, "-o", tmp_path / "o.tif", "--model", tiny_ckpt],
        "chunked": ["predict", em, "-o", tmp_path / "o.zarr", "--model", tiny_ckpt, "--scheduler", "sync"],
        "adapt": ["adapt", em, "-o", tmp_path / "a.pt", "--model", adaptable_model_file],
    }[command]
    rc, err = cli(args + ["--device", "cuda"], capsys)
    assert rc == 2 and "no CUDA GPU" in err and "--device cpu" in err
    assert listing(tmp_path) == ["em.tif", "tiny.pt"]


@pytest.mark.parametrize("extra, phrase", [
    (["--precision", "fp16"], "invalid choice: 'fp16' (choose from 'auto', 'fp32', 'bf16')"),
    (["--device", "tpu"], "invalid choice: 'tpu' (choose from 'cpu', 'cuda')"),
])
def test_unknown_choices_are_listed_by_the_parser(extra, phrase, em, tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        main(["predict", str(em), "-o", str(tmp_path / "o.tif"), *extra])
    assert stop.value.code == 2 and phrase in capsys.readouterr().err.splitlines()[-1]


def test_an_unreachable_scheduler_says_what_to_do(em, tiny_ckpt, tmp_path, capsys):
    import dask
    import distributed  # noqa: F401 - its config defaults must exist before one is overridden: leaving the
    # context below deletes every key it created, and would take distributed's whole config with it

    with dask.config.set({"distributed.comm.timeouts.connect": "1s"}):
        rc, err = cli(["predict", em, "-o", tmp_path / "o.zarr", "--model", tiny_ckpt,
                       "--scheduler", "tcp://127.0.0.1:1"], capsys)
    assert rc == 1 and "could not reach the dask scheduler at tcp://127.0.0.1:1" in err and "start it first" in err
    assert not (tmp_path / "o.zarr").exists()

