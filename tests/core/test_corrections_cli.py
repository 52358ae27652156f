"""`mito-wda adapt --corrections EDITED.tif --predicted PREDICTED.tif`: the corrections reach the adaptation
and its checkpoint, and the bad inputs of docs/bad-inputs.md ("Corrections") get one-line messages before
any model is loaded."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from .conftest import cli


@pytest.fixture
def pair(tmp_path):
    """(predicted, edited) instances of the `em` fixture's (3, 64, 80) image: one object erased, one painted."""
    pred = np.zeros((3, 64, 80), np.uint16)
    pred[1, 5:20, 5:20] = 1
    pred[1, 30:50, 30:50] = 2
    edited = pred.copy()
    edited[1][edited[1] == 2] = 0
    edited[2, 10:30, 40:60] = 3
    tifffile.imwrite(tmp_path / "pred.tif", pred)
    tifffile.imwrite(tmp_path / "edited.tif", edited)
    return tmp_path / "pred.tif", tmp_path / "edited.tif"


def test_adapt_takes_the_corrections_and_records_them(em, pair, adaptable_model_file, tmp_path, capsys):
    from napari_mito_wda.core.data.checkpoint import load_checkpoint

    pred, edited = pair
    out = tmp_path / "a.pt"
    rc, err = cli(["adapt", em, "--points", _clicks(tmp_path), "--corrections", edited, "--predicted", pred,
                   "-o", out, "--model", adaptable_model_file, "--max-iters", "2", "--device", "cpu"], capsys)
    assert rc == 0, err
    assert "2 corrected objects (1 mitochondria, 1 erased) on 2 slices" in err and "used as exact labels" in err
    (run,) = load_checkpoint(out).meta["adaptations"]
    assert run["n_corrected"] == 2


def _clicks(tmp_path):
    path = tmp_path / "clicks.csv"
    path.write_text("index,axis-0,axis-1,axis-2\n0,1,12,12\n")
    return path


def _float(tmp_path):
    tifffile.imwrite(tmp_path / "f.tif", np.zeros((3, 64, 80), np.float32))
    return tmp_path / "f.tif"


def _small(tmp_path):
    tifffile.imwrite(tmp_path / "s.tif", np.zeros((3, 32, 32), np.uint16))
    return tmp_path / "s.tif"


BAD = {  # name: (argument list from (pred, edited, tmp_path), phrase)
    "alone": (lambda p, e, t: ["--corrections", e],
              "--corrections EDITED.tif and --predicted PREDICTED.tif go together"),
    "missing": (lambda p, e, t: ["--corrections", t / "nope.tif", "--predicted", p],
                "--corrections: {t}/nope.tif: no such file; check the path."),
    "shape": (lambda p, e, t: ["--corrections", e, "--predicted", _small(t)],
              "--predicted: {t}/s.tif has shape (3, 32, 32), not the image's (3, 64, 80); give the instances"),
    "float": (lambda p, e, t: ["--corrections", _float(t), "--predicted", p],
              "--corrections: {t}/f.tif holds float32 values, not instance ids"),
}


@pytest.mark.parametrize("name", list(BAD))
def test_bad_corrections_are_refused_before_the_model_is_loaded(name, em, pair, tmp_path, capsys):
    make, phrase = BAD[name]
    args = make(*pair, tmp_path)
    rc, err = cli(["adapt", em, *args, "-o", tmp_path / "out.pt", "--model", tmp_path / "no_model.pt"], capsys)
    assert rc == 2 and phrase.format(t=tmp_path) in err, err  # the missing model would be the next error
    assert not (tmp_path / "out.pt").exists()


def test_corrections_equal_to_the_prediction_are_no_error_and_said(em, pair, adaptable_model_file, tmp_path,
                                                                    capsys):
    pred, _ = pair
    rc, err = cli(["adapt", em, "--corrections", pred, "--predicted", pred, "-o", tmp_path / "a.pt",
                   "--model", adaptable_model_file, "--max-iters", "1", "--device", "cpu"], capsys)
    assert rc == 0 and f"note: {pred} equals {pred}: no corrected objects to use" in err
