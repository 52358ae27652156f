"""The `mito-wda` command line on small synthetic data with a tiny real checkpoint."""

import json
import subprocess
import sys

import numpy as np
import pytest
import tifffile

from napari_mito_wda.cli import main
from napari_mito_wda.core.data.io import read_volume, write_labels_tiff
from napari_mito_wda.core.data.synthetic import make_volume
from napari_mito_wda.sample import sample_paths


@pytest.fixture
def em_tif(tmp_path):
    img, inst = make_volume((3, 64, 80), n_objects=5, seed=2)
    tifffile.imwrite(tmp_path / "em.tif", img, imagej=True, resolution=(1 / 4.0, 1 / 4.0),
                     metadata={"axes": "ZYX", "spacing": 40.0, "unit": "nm"})
    write_labels_tiff(tmp_path / "gt.tif", inst)
    return tmp_path / "em.tif"


def test_predict_writes_instances_with_shape_and_voxel_size(em_tif, tiny_ckpt, tmp_path):
    out = tmp_path / "pred.tif"
    assert main(["predict", str(em_tif), "-o", str(out), "--model", str(tiny_ckpt), "--device", "cpu"]) == 0
    vol = read_volume(out)
    assert vol.data.shape == (3, 64, 80) and vol.data.dtype == np.uint16
    assert vol.voxel_size == pytest.approx((40.0, 4.0, 4.0))


def test_predict_refuses_to_overwrite_with_one_line_error(em_tif, tiny_ckpt, tmp_path, capsys):
    out = tmp_path / "pred.tif"
    out.write_bytes(b"keep me")
    assert main(["predict", str(em_tif), "-o", str(out), "--model", str(tiny_ckpt)]) == 2
    err = capsys.readouterr().err
    assert "already exists" in err and "--overwrite" in err and "Traceback" not in err
    assert out.read_bytes() == b"keep me"


@pytest.mark.parametrize(
    "args, words",
    [
        (["predict", "{missing}", "-o", "{out}"], "no such file"),
        (["predict", "{em}", "-o", "{out}", "--model", "{missing}"], "no such model file"),
        (["predict", "{rgb}", "-o", "{out}"], "RGB"),
        (["evaluate", "{em}", "{small}"], "differ in shape"),
    ],
)
def test_bad_inputs_exit_non_zero_with_clear_message(args, words, em_tif, tmp_path, capsys):
    tifffile.imwrite(tmp_path / "rgb.tif", np.zeros((64, 64, 3), np.uint8), photometric="rgb")
    tifffile.imwrite(tmp_path / "small.tif", np.zeros((2, 32, 32), np.uint8), photometric="minisblack")
    paths = {"missing": tmp_path / "nope.tif", "out": tmp_path / "o.tif", "em": em_tif,
             "rgb": tmp_path / "rgb.tif", "small": tmp_path / "small.tif"}
    assert main([a.format(**paths) for a in args]) == 2
    err = capsys.readouterr().err
    assert words in err and err.startswith("mito-wda: error:") and "Traceback" not in err


def test_evaluate_prints_table_and_writes_json(em_tif, tmp_path, capsys):
    gt = tmp_path / "gt.tif"
    assert main(["evaluate", str(gt), str(gt), "--json", str(tmp_path / "m.json")]) == 0
    out = capsys.readouterr().out
    assert "dice" in out and "1.0000" in out
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert metrics["dice"] == 1.0 and metrics["aji"] == 1.0 and len(metrics["per_slice"]) == 3


def test_demo_writes_instances_metrics_and_picture(adaptable_model_file, tmp_path, capsys):
    # Adapting is the default.
    assert main(["demo", "--out", str(tmp_path / "d"), "--model", str(adaptable_model_file),
                 "--minutes", "30", "--max-iters", "4"]) == 0
    (run,) = list((tmp_path / "d").iterdir())
    assert {p.name for p in run.iterdir()} == {"source_instances.tif", "adapted_instances.tif", "adapted_model.pt",
                                              "metrics.json", "demo.png"}
    assert tifffile.imread(run / "adapted_instances.tif").shape == tifffile.imread(sample_paths()["image"]).shape
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["clicks"] > 0 and metrics["adapted_model"]["iterations"] == 4
    assert {"dice", "aji", "pq"} <= set(metrics["source_model"]) & set(metrics["adapted_model"])
    assert metrics["adapted_model"]["kept"].startswith("finished: kept")  # which model it kept, and why
    assert metrics["adapted_model"]["quality"]["n_heldout"] == 3  # 17 clicks: a fifth held out to judge
    out = capsys.readouterr().out
    assert "held-out clicks inside a predicted object" in out and "against the sample's ground truth" in out
    assert (run / "demo.png").read_bytes()[:4] == b"\x89PNG"
    # The adapted model is a real checkpoint that predict accepts.
    assert main(["predict", str(sample_paths()["image"]), "-o", str(tmp_path / "p.tif"),
                 "--model", str(run / "adapted_model.pt")]) == 0


def test_demo_without_adaptation(tiny_ckpt, tmp_path):
    assert main(["demo", "--out", str(tmp_path / "d"), "--model", str(tiny_ckpt), "--no-adapt"]) == 0
    (run,) = list((tmp_path / "d").iterdir())
    assert {p.name for p in run.iterdir()} == {"source_instances.tif", "metrics.json", "demo.png"}


def test_module_entry_point_and_version():
    out = subprocess.run([sys.executable, "-m", "napari_mito_wda", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and "napari-mito-wda" in out.stdout


def test_adapt_writes_a_checkpoint_that_records_its_settings(adaptable_model_file, tmp_path):
    from napari_mito_wda.core.data.checkpoint import load_checkpoint

    img, inst = make_volume((4, 96, 96), n_objects=6, seed=3)
    tifffile.imwrite(tmp_path / "em.tif", img)
    # napari's Points CSV layout (File > Save): index, axis-0, axis-1, axis-2
    (tmp_path / "clicks.csv").write_text("index,axis-0,axis-1,axis-2\n0,1,40.5,30\n1,2,60,70.25\n")
    out = tmp_path / "adapted.pt"
    args = ["adapt", str(tmp_path / "em.tif"), "--points", str(tmp_path / "clicks.csv"), "-o", str(out),
            "--model", str(adaptable_model_file), "--max-iters", "2", "--minutes", "1", "--click-reach", "3"]
    assert main(args) == 0
    (run,) = load_checkpoint(out).meta["adaptations"]
    assert run["settings"]["click_reach_z"] == 3 and run["n_clicks"] == 2 and run["steps"] == 2
    assert run["settings"]["source_veto"] == 0.5  # the default
    assert main(args) == 2  # the adapted model is not overwritten without --overwrite
    off = tmp_path / "no_veto.pt"
    assert main(args[:5] + [str(off)] + args[6:] + ["--source-veto", "0"]) == 0
    assert load_checkpoint(off).meta["adaptations"][0]["settings"]["source_veto"] is None
    assert main(args[:5] + [str(tmp_path / "bad.pt")] + args[6:] + ["--source-veto", "1.5"]) == 2
    assert not (tmp_path / "bad.pt").exists()
    assert main(args[:5] + [str(tmp_path / "bad.pt")] + args[6:-1] + ["-1"]) == 2  # negative --click-reach
    assert not (tmp_path / "bad.pt").exists()


def test_adapt_without_clicks_runs_unsupervised_and_says_so(adaptable_model_file, tmp_path, capsys):
    from napari_mito_wda.core.data.checkpoint import load_checkpoint

    img, _ = make_volume((3, 96, 96), n_objects=6, seed=4)
    tifffile.imwrite(tmp_path / "em.tif", img, photometric="minisblack")  # 3 planes are not RGB
    out = tmp_path / "uda.pt"
    assert main(["adapt", str(tmp_path / "em.tif"), "-o", str(out), "--model", str(adaptable_model_file),
                 "--max-iters", "2", "--minutes", "1"]) == 0
    assert "unsupervised" in capsys.readouterr().err
    (run,) = load_checkpoint(out).meta["adaptations"]
    assert run["n_clicks"] == 0 and run["steps"] == 2


def test_adapt_killed_hard_keeps_its_best_model_and_resumes_from_it(adaptable_model_file, tmp_path):
    import os
    import signal
    import time

    from napari_mito_wda.core.data.checkpoint import load_checkpoint

    img, _ = make_volume((3, 96, 96), n_objects=6, seed=5)
    tifffile.imwrite(tmp_path / "em.tif", img, photometric="minisblack")
    (tmp_path / "clicks.csv").write_text("index,axis-0,axis-1,axis-2\n0,1,40,30\n")
    out = tmp_path / "run.pt"
    base = [str(tmp_path / "em.tif"), "--points", str(tmp_path / "clicks.csv"), "-o", str(out),
            "--model", str(adaptable_model_file)]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-m", "napari_mito_wda", "adapt", *base, "--minutes", "30"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        t0 = time.perf_counter()
        while not out.exists() and proc.poll() is None and time.perf_counter() - t0 < 120:
            time.sleep(0.05)
        assert out.exists() and proc.poll() is None, "the first round's checkpoint never appeared"
    finally:
        proc.send_signal(signal.SIGKILL)  # no handler, no cleanup: the file must already be whole
        err = proc.communicate()[1]
    assert proc.returncode == -signal.SIGKILL
    assert f"--resume {out}" in err  # the run said where its model is and how to continue
    assert not list(tmp_path.glob(".run.pt.*"))  # no half-written file left beside it
    (unfinished,) = load_checkpoint(out).meta["adaptations"]
    assert unfinished["finished"] is False and unfinished["steps"] == 0

    # Same path in and out: allowed without --overwrite, continues from the file (AdaBN not redone).
    assert main(["adapt", *base, "--resume", str(out), "--max-iters", "2", "--minutes", "1"]) == 0
    first, resumed = load_checkpoint(out).meta["adaptations"]
    assert first == unfinished and resumed["finished"] is True and resumed["steps"] == 2
    assert resumed["from_model"].endswith(out.name) and resumed["settings"]["adabn"] is False
