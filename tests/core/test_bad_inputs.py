"""Bad inputs of docs/bad-inputs.md through the command line (images, clicks, checkpoints): a one-line message
saying what to do, exit code 2, and nothing written or lost. Output paths, faults and settings are in
test_bad_outputs_and_faults.py; rows proven elsewhere name their tests in the doc."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import tifffile
import torch

from napari_mito_wda.core.data.synthetic import make_volume

from .conftest import cli, listing

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
    # NaN/Inf are found while normalising, after the chunked run made its .partial store: it must remove it again.
    assert listing(tmp_path) == before  # no output, no .partial store, no temporary file


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


def _write_clicks(folder, name):
    """The bad clicks file `name` of CLICKS written into folder (None: left absent); (path, expected phrase)."""
    content, phrase = CLICKS[name]
    path = folder / name
    if isinstance(content, np.ndarray):
        np.save(path, content)
    elif isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    return path, phrase


@pytest.mark.parametrize("name", list(CLICKS))
def test_bad_clicks_are_refused_before_the_model_is_loaded(name, em, adaptable_model_file, tmp_path, capsys):
    path, phrase = _write_clicks(tmp_path, name)
    rc, err = cli(["adapt", em, "--points", path, "-o", tmp_path / "out.pt", "--model", adaptable_model_file,
                   "--max-iters", "1"], capsys)
    assert rc == 2 and phrase in err
    assert "allow_pickle" not in err  # numpy's advice would let a .npy file run code
    assert not (tmp_path / "out.pt").exists() and not list(tmp_path.glob(".out.pt.*"))


@pytest.mark.parametrize("name", list(CLICKS))
def test_bad_negative_clicks_get_the_same_messages_naming_the_flag(name, em, adaptable_model_file, tmp_path,
                                                                  capsys):
    path, phrase = _write_clicks(tmp_path, name)
    rc, err = cli(["adapt", em, "--negative-points", path, "-o", tmp_path / "out.pt", "--model",
                   adaptable_model_file, "--max-iters", "1"], capsys)
    assert rc == 2 and phrase in err and err.startswith("mito-wda: error: --negative-points: ")
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


PIXEL_SIZES = {"0": "above 0", "-5": "above 0", "nan": "above 0", "inf": "above 0", "5000": "no EM image's",
               "0.001": "no EM image's", "abc": "takes a number of nm per pixel"}


@pytest.mark.parametrize("command", ["predict-tif", "predict-zarr", "adapt"])
@pytest.mark.parametrize("value", list(PIXEL_SIZES))
def test_bad_pixel_sizes_are_refused_before_any_work(value, command, em, adaptable_model_file, tmp_path, capsys):
    out = {"predict-tif": "out.tif", "predict-zarr": "out.zarr", "adapt": "out.pt"}[command]
    before = listing(tmp_path)
    args = [command.split("-")[0], em, "-o", tmp_path / out, "--model", adaptable_model_file, "--device", "cpu",
            f"--pixel-size={value}"]
    rc, err = cli(args, capsys)
    assert rc == 2 and "--pixel-size" in err and PIXEL_SIZES[value] in err
    assert listing(tmp_path) == before


def test_every_test_the_table_names_exists():
    """docs/bad-inputs.md names its proofs as `file.py::test_name`; each must be a test of that file."""
    import re
    from pathlib import Path

    tests = Path(__file__).resolve().parents[1]
    table = (tests.parent / "docs" / "bad-inputs.md").read_text()
    named = set(re.findall(r"`([\w/]+\.py)::(\w+)", table))
    assert len(named) > 40
    here = {"test_bad_inputs.py", "test_bad_outputs_and_faults.py"}  # the shorthands: files of tests/core/
    for file, name in named:
        path = tests / "core" / file if file in here else tests / file
        assert re.search(rf"^def {name}\(", path.read_text(), re.M), f"{file}::{name} is not a test"
