"""Every bad input of docs/bad-inputs.md through the command line: a one-line message saying what to do, exit
code 2 (1 for a failed write), and nothing written or lost. Rows proven elsewhere name their tests in the doc."""

from __future__ import annotations

import errno
import os
import pickle
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tifffile
import torch

from napari_mito_wda.cli import main
from napari_mito_wda.core.data.synthetic import make_volume


@pytest.fixture
def em(tmp_path):
    img, _ = make_volume((3, 64, 80), n_objects=5, seed=2)
    tifffile.imwrite(tmp_path / "em.tif", img, photometric="minisblack")
    return tmp_path / "em.tif"


def cli(args, capsys, late: bool = False) -> tuple[int, str]:
    """Run `mito-wda ARGS`; (exit code, stderr). The error, when there is one, is stderr's only line (its last
    one for an error met after the work began: `late`)."""
    rc = main([str(a) for a in args])
    err = capsys.readouterr().err
    if rc != 0:
        assert "Traceback" not in err
        if late:
            assert err.splitlines()[-1].startswith("mito-wda: error: "), err
        else:
            assert err.startswith("mito-wda: error: ") and err.count("\n") == 1, err
    return rc, err


def listing(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# --------------------------------------------------------------------------- image


def _write(tmp_path, name, data, **kw):
    tifffile.imwrite(tmp_path / name, data, **kw)


IMAGES = {
    "4d.tif": (lambda p: _write(p, "4d.tif", np.zeros((2, 3, 64, 64), np.uint8), imagej=True,
                                metadata={"axes": "TZYX"}), "4 dimensions"),
    "1d.tif": (lambda p: _write(p, "1d.tif", np.zeros(64, np.uint8)), "1 dimensions"),
    "rgb.tif": (lambda p: _write(p, "rgb.tif", np.zeros((64, 64, 3), np.uint8), photometric="rgb"), "RGB"),
    "tiny.tif": (lambda p: _write(p, "tiny.tif", np.zeros((3, 8, 8), np.uint8), photometric="minisblack"),
                 "too small"),
    "zero.tif": (lambda p: _write(p, "zero.tif", np.zeros((0, 64, 64), np.uint8)), "holds no pixels"),
    "nopages.tif": (lambda p: (p / "nopages.tif").write_bytes(b"II*\x00\x00\x00\x00\x00"), "no readable image"),
    "junk.tif": (lambda p: (p / "junk.tif").write_bytes(np.random.default_rng(0).bytes(2000)),
                 "cannot be read as a TIFF"),
    "empty.tif": (lambda p: (p / "empty.tif").write_bytes(b""), "cannot be read as a TIFF"),
    "bool.tif": (lambda p: _write(p, "bool.tif", np.zeros((2, 32, 32), bool), photometric="minisblack"),
                 "pixel type bool"),
    "nan.tif": (lambda p: _write(p, "nan.tif", np.where(np.eye(32)[None] > 0, np.nan, 1).astype(np.float32),
                                 photometric="minisblack"), "NaN"),
    "inf.tif": (lambda p: _write(p, "inf.tif", np.where(np.eye(32)[None] > 0, np.inf, 1).astype(np.float32),
                                 photometric="minisblack"), "infinite"),
    "folder.tif": (lambda p: (p / "folder.tif").mkdir(), "is a folder"),
    "missing.tif": (lambda p: None, "check the path"),
}


@pytest.mark.filterwarnings("ignore:.*zero-size array:UserWarning")
@pytest.mark.parametrize("output", ["out.tif", "out.zarr"])  # in memory, and the chunked path (lazy reading)
@pytest.mark.parametrize("name", list(IMAGES))
def test_bad_images_are_refused_in_one_line(name, output, tiny_ckpt, tmp_path, capsys):
    make, phrase = IMAGES[name]
    make(tmp_path)
    before = listing(tmp_path)
    args = ["predict", tmp_path / name, "-o", tmp_path / output, "--model", tiny_ckpt, "--device", "cpu"]
    rc, err = cli(args + ["--scheduler", "sync"] if output.endswith("zarr") else args, capsys)
    assert rc == 2 and phrase in err
    if name != "missing.tif" and output == "out.tif":  # the chunked path words the NaN case its own way
        assert f"{name}:" in err
    after = listing(tmp_path)
    if name in ("nan.tif", "inf.tif") and output == "out.zarr":
        # Found while normalising, once the run's .partial store exists (core/volumes/chunked.py); no output though.
        after.remove("out.zarr.partial")
    assert after == before  # no output, no .partial store, no temporary file


@pytest.mark.parametrize("dtype", [np.uint16, np.float32, np.int32])
def test_16_bit_float_and_signed_images_are_accepted(dtype, tiny_ckpt, tmp_path, capsys):
    img, _ = make_volume((2, 48, 48), n_objects=3, seed=1)
    tifffile.imwrite(tmp_path / "em.tif", (img.astype(dtype) * 3), photometric="minisblack")
    assert cli(["predict", tmp_path / "em.tif", "-o", tmp_path / "o.tif", "--model", tiny_ckpt], capsys)[0] == 0
    assert tifffile.imread(tmp_path / "o.tif").shape == (2, 48, 48)


def test_evaluate_refuses_an_empty_stack_and_keeps_an_existing_json(em, tmp_path, capsys):
    tifffile.imwrite(tmp_path / "zero.tif", np.zeros((0, 64, 80), np.uint8))
    rc, err = cli(["evaluate", tmp_path / "zero.tif", em], capsys)
    assert rc == 2 and "holds no pixels" in err
    (tmp_path / "m.json").write_text("keep")
    rc, err = cli(["evaluate", em, em, "--json", tmp_path / "m.json"], capsys)
    assert rc == 2 and "already exists" in err and (tmp_path / "m.json").read_text() == "keep"


# --------------------------------------------------------------------------- clicks

CLICKS = {
    "missing.csv": (None, "not found"),
    "header.csv": ("name,colour\nx,red\n", "no 'axis-0'"),
    "binary.csv": (b"\xff\xfe\x00\x81\x93garbage", "not a text CSV"),
    "empty.csv": ("", "the file is empty"),
    "2cols.csv": ("index,axis-0,axis-1\n0,40,30\n", "2D points (y, x) for a volume of 3 slices"),
    "4cols.csv": ("index,axis-0,axis-1,axis-2,axis-3\n0,1,1,40,30\n", "3 columns (z, y, x)"),
    "outside.csv": ("index,axis-0,axis-1,axis-2\n0,1,40,30\n1,9,40,30\n2,1,400,30\n", "2 click(s) lie outside"),
    "negative.csv": ("index,axis-0,axis-1,axis-2\n0,1,-5,30\n", "(1, -5, 30)"),
    "nan.csv": ("index,axis-0,axis-1,axis-2\n0,1,nan,30\n", "NaN"),
    "text.csv": ("index,axis-0,axis-1,axis-2\n0,1,abc,30\n", "line 2"),
    "short.csv": ("index,axis-0,axis-1,axis-2\n0,1,40\n", "every row needs a number"),
    "clicks.json": ("[]", "unsupported points file type"),
    "junk.npy": (b"\x93NUMPY junk", "save the clicks with numpy.save"),
    "words.npy": (np.array(["a", "b"]), "expected numeric coordinates"),
}


@pytest.mark.parametrize("name", list(CLICKS))
def test_bad_clicks_are_refused_before_the_model_is_loaded(name, em, adaptable_model_file, tmp_path, capsys):
    content, phrase = CLICKS[name]
    path = tmp_path / name
    if isinstance(content, np.ndarray):
        np.save(path, content)
    elif isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    rc, err = cli(["adapt", em, "--points", path, "-o", tmp_path / "out.pt", "--model", adaptable_model_file,
                   "--max-iters", "1"], capsys)
    assert rc == 2 and phrase in err
    assert "allow_pickle" not in err  # numpy's advice would let a .npy file run code
    assert not (tmp_path / "out.pt").exists() and not list(tmp_path.glob(".out.pt.*"))


def test_an_empty_points_file_means_no_clicks_and_says_so(em, adaptable_model_file, tmp_path, capsys):
    (tmp_path / "none.csv").write_text("index,axis-0,axis-1,axis-2\n")  # napari's CSV of an empty layer
    rc, err = cli(["adapt", em, "--points", tmp_path / "none.csv", "-o", tmp_path / "a.pt",
                   "--model", adaptable_model_file, "--max-iters", "1", "--minutes", "1"], capsys)
    assert rc == 0 and "0 clicks" in err and "no clicks: unsupervised adaptation" in err


# --------------------------------------------------------------------------- checkpoint


class _RunsCode:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))  # creates the marker file if it ever runs


def _checkpoint_cases(tmp_path, tiny_ckpt, marker):
    good = torch.load(tiny_ckpt, weights_only=True)
    data = tiny_ckpt.read_bytes()

    def edited(name, **change):
        payload = dict(good, **change)
        torch.save(payload, tmp_path / name)

    (tmp_path / "folder.pt").mkdir()
    (tmp_path / "random.pt").write_bytes(np.random.default_rng(1).bytes(5000))
    (tmp_path / "empty.pt").write_bytes(b"")
    (tmp_path / "truncated.pt").write_bytes(data[: len(data) // 2])
    torch.save({"format": good["format"], "x": _RunsCode(marker)}, tmp_path / "torch_code.pt")
    with open(tmp_path / "plain_code.pt", "wb") as fh:
        pickle.dump(_RunsCode(marker), fh, protocol=4)
    torch.save(torch.nn.Linear(2, 2).state_dict(), tmp_path / "foreign.pt")
    edited("future.pt", format_version=99)
    edited("other_net.pt", config=good["config"].replace('"base": 4', '"base": 8'))
    del good["state_dict"]
    edited("no_weights.pt")


CHECKPOINTS = {
    "missing.pt": "no such model file; check the path",
    "folder.pt": "is a folder",
    "random.pt": "corrupt or truncated",
    "empty.pt": "corrupt or truncated",
    "truncated.pt": "corrupt or truncated",
    "torch_code.pt": "could run code",
    "plain_code.pt": "could run code",
    "foreign.pt": "foreign file format",
    "future.pt": "format version 99 is not supported",
    "other_net.pt": "weights do not fit the network",
    "no_weights.pt": "no 'state_dict' entry",
}


@pytest.mark.parametrize("name", list(CHECKPOINTS))
def test_bad_checkpoints_are_refused_in_one_line_and_never_run(name, em, tiny_ckpt, tmp_path, capsys):
    marker = tmp_path / "code_ran"
    _checkpoint_cases(tmp_path, tiny_ckpt, marker)
    rc, err = cli(["predict", em, "-o", tmp_path / "out.tif", "--model", tmp_path / name, "--device", "cpu"], capsys)
    assert rc == 2 and CHECKPOINTS[name] in err and name in err
    assert "weights_only" not in err  # torch's advice would let the file run code
    assert not marker.exists() and not (tmp_path / "out.tif").exists()


def test_a_model_without_replay_set_cannot_be_adapted_and_says_which_can(em, tiny_ckpt, tmp_path, capsys):
    rc, err = cli(["adapt", em, "-o", tmp_path / "a.pt", "--model", tiny_ckpt, "--max-iters", "1"], capsys)
    assert rc == 2 and "no source replay set" in err and "mito-wda pretrain" in err
    assert not (tmp_path / "a.pt").exists()


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
    import napari_mito_wda.core.data.io as io

    monkeypatch.setattr(io, "read_volume", None)  # nothing may be read (a long prediction must not come first)
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


def test_every_test_the_table_names_exists():
    """docs/bad-inputs.md names its proofs as `file.py::test_name`; each must be a test of that file."""
    import re
    from pathlib import Path

    tests = Path(__file__).resolve().parents[1]
    table = (tests.parent / "docs" / "bad-inputs.md").read_text()
    named = set(re.findall(r"`([\w/]+\.py)::(\w+)", table))
    assert len(named) > 40
    for file, name in named:
        path = tests / "core" / file if file == "test_bad_inputs.py" else tests / file
        assert re.search(rf"^def {name}\(", path.read_text(), re.M), f"{file}::{name} is not a test"
