"""Orthoplane inference: xy, xz and yz predictions of a near-isotropic stack, probabilities averaged (xy weighted
1/2, xz and yz 1/4), the xy heatmap kept; refused for stacks too short across a side or with anisotropic voxels."""

import numpy as np
import pytest
import tifffile
import torch

from napari_mito_wda.core.data.checkpoint import load_checkpoint
from napari_mito_wda.core.data.io import InputError, Volume, normalize_slices
from napari_mito_wda.core.data.synthetic import make_volume
from napari_mito_wda.core.engine.device import DeviceInfo
from napari_mito_wda.core.engine.inference import predict_volume
from napari_mito_wda.core.engine.model import ModelConfig
from napari_mito_wda.core.engine.orthoplanes import AUTO_MAX_VOXELS, choice, min_side, refusal
from napari_mito_wda.core.engine.segment import segment_volume

from .conftest import cli

CPU32 = DeviceInfo(torch.device("cpu"), None, 1)


def combine(p_xy, p_xz, p_yz):
    """The documented weights: xy half, xz and yz a quarter each."""
    return 0.5 * p_xy + 0.25 * p_xz + 0.25 * p_yz


@pytest.fixture(scope="module")
def cube():
    """An isotropic synthetic stack, its sides all different so that a wrong transpose cannot pass."""
    img, _ = make_volume((32, 40, 48), n_objects=6, seed=3)
    return img


def _by_hand(model, img, **kw):
    """The three orientations predicted separately, transposed by hand: (xy prob, xz prob, yz prob, xy heat)."""
    norm = normalize_slices(img)
    p_xy, h_xy = predict_volume(model, norm, CPU32, normalized=True, **kw)
    p_xz, _ = predict_volume(model, np.ascontiguousarray(norm.transpose(1, 0, 2)), CPU32, normalized=True, **kw)
    p_yz, _ = predict_volume(model, np.ascontiguousarray(norm.transpose(2, 0, 1)), CPU32, normalized=True, **kw)
    return p_xy, p_xz.transpose(1, 0, 2), p_yz.transpose(1, 2, 0), h_xy


@pytest.mark.parametrize("scale", [1.0, 1.3])
def test_orthoplanes_average_the_three_orientations_and_keep_the_xy_heatmap(tiny_model, cube, scale):
    calls = []
    prob, heat = predict_volume(tiny_model, cube, CPU32, orthoplanes=True, scale=scale,
                                progress=lambda d, t: calls.append((d, t)))
    assert prob.shape == heat.shape == cube.shape and prob.dtype == np.float32
    p_xy, p_xz, p_yz, h_xy = _by_hand(tiny_model, cube, scale=scale)
    np.testing.assert_allclose(prob, combine(p_xy, p_xz, p_yz), atol=1e-6, rtol=0)
    np.testing.assert_array_equal(heat, h_xy)
    # the planes really differ (else the mean would be the xy prediction and the test could not fail)
    assert np.abs(p_xz - p_xy).max() > 1e-3 and np.abs(p_yz - p_xy).max() > 1e-3
    # the xy orientation is the xy-only prediction, bit for bit (same normalisation)
    xy_prob, xy_heat = predict_volume(tiny_model, cube, CPU32, scale=scale)
    np.testing.assert_array_equal(p_xy, xy_prob)
    np.testing.assert_array_equal(heat, xy_heat)
    total = sum(cube.shape)
    assert calls[-1] == (total, total) and len(calls) == total


def test_flips_and_orthoplanes_combine(tiny_model, cube):
    prob, _ = predict_volume(tiny_model, cube, CPU32, orthoplanes=True, flips=True)
    p_xy, p_xz, p_yz, _ = _by_hand(tiny_model, cube, flips=True)
    np.testing.assert_allclose(prob, combine(p_xy, p_xz, p_yz), atol=1e-6, rtol=0)
    plain, _ = predict_volume(tiny_model, cube, CPU32, orthoplanes=True)
    assert np.abs(prob - plain).max() > 1e-4  # the flips were used


def test_outputs_can_be_given(tiny_model, cube):
    out_p, out_h = np.full(cube.shape, -1, np.float32), np.full(cube.shape, -1, np.float32)
    prob, heat = predict_volume(tiny_model, cube, CPU32, orthoplanes=True, out_prob=out_p, out_heat=out_h)
    assert prob is out_p and heat is out_h and out_p.min() >= 0 and out_h.min() >= 0


def test_segment_volume_with_orthoplanes(tiny_ckpt, cube):
    loaded = load_checkpoint(tiny_ckpt)
    seg = segment_volume(Volume(cube, (5.0, 5.0, 5.0)), loaded, CPU32, orthoplanes=True, min_size=0)
    assert seg.labels.shape == seg.prob.shape == cube.shape
    p_xy, p_xz, p_yz, _ = _by_hand(loaded.model, cube)
    np.testing.assert_allclose(seg.prob, combine(p_xy, p_xz, p_yz), atol=1e-6, rtol=0)


@pytest.mark.parametrize("shape", [(8, 64, 64), (64, 64, 16), (64, 20, 64)])
def test_a_short_side_is_refused(tiny_model, shape):
    img = np.zeros(shape, np.uint8)
    with pytest.raises(InputError, match="at least 32 voxels along each side"):
        predict_volume(tiny_model, img, CPU32, orthoplanes=True)
    with pytest.raises(InputError, match="at least 32"):
        predict_volume(tiny_model, img[0], CPU32, orthoplanes=True)  # a 2D image


def test_anisotropic_voxels_are_refused_before_any_prediction(tiny_ckpt, cube):
    loaded = load_checkpoint(tiny_ckpt)
    calls = []
    with pytest.raises(InputError, match=r"near-isotropic.*50 nm sections and 4.6 nm pixels \(10.9x\)"):
        segment_volume(Volume(cube, (50.0, 4.6, 4.6)), loaded, CPU32, orthoplanes=True,
                       progress=lambda d, t: calls.append(d))
    assert not calls
    with pytest.raises(InputError, match="near-isotropic"):  # the voxel size given beats the Volume's
        segment_volume(Volume(cube, (5.0, 5.0, 5.0)), loaded, CPU32, orthoplanes=True, voxel_size=(5.0, 20.0, 20.0))
    with pytest.raises(InputError, match="near-isotropic"):  # the user's pixel size against the file's z
        segment_volume(Volume(cube, (5.0, 5.0, 5.0)), loaded, CPU32, orthoplanes=True, pixel_size=10.0)
    # without orthoplanes the same stack runs
    assert segment_volume(Volume(cube, (50.0, 4.6, 4.6)), loaded, CPU32).labels.shape == cube.shape


def test_refusal_rules(tiny_model):
    cfg = tiny_model.config
    assert refusal((32, 32, 32), cfg) is None
    assert refusal((32, 32, 32), cfg, (7.0, 5.0, 5.0)) is None  # 1.4x: near-isotropic
    assert refusal((32, 32, 32), cfg, (5.0, 8.0, 8.0)) is not None  # z finer than the pixels, 1.6x
    assert refusal((32, 32, 32), cfg, (None, None, None)) is None  # unknown: allowed
    assert refusal((31, 32, 32), cfg) is not None
    shipped_like = type(cfg)(depth=5, downsample=2)
    assert min_side(shipped_like) == 64 and refusal((48, 512, 512), shipped_like) is not None


def test_auto_choice_needs_a_known_near_isotropic_voxel_size():
    cfg = ModelConfig(depth=3, downsample=2)
    assert choice((32, 40, 48), cfg, (5.0, 5.0, 5.0)) == (True, "xy, xz and yz planes (near-isotropic voxels)")
    on, why = choice((32, 40, 48), cfg, None)
    assert not on and "voxel size unknown" in why  # the user may still ask: wanted=True
    assert choice((32, 40, 48), cfg, None, wanted=True)[0] and not choice((32, 40, 48), cfg, (5, 5, 5), False)[0]
    assert choice((32, 40, 48), cfg, (5.0, None, None), pixel_size=5.0)[0]  # the user's pixel size counts
    on, why = choice((32, 40, 48), cfg, (50.0, 4.6, 4.6))
    assert not on and "near-isotropic" in why
    on, why = choice((8, 40, 48), cfg, (5.0, 5.0, 5.0))
    assert not on and "at least 32 voxels" in why
    side = int(round(AUTO_MAX_VOXELS ** (1 / 3))) + 2  # a cube just above the size auto leaves to the user
    on, why = choice((side, side, side), cfg, (5.0, 5.0, 5.0))
    assert not on and "3x the time" in why and choice((side, side, side), cfg, (5.0, 5.0, 5.0), True)[0]


def _tiff(path, img, z_nm, xy_nm):
    tifffile.imwrite(path, img, imagej=True, resolution=(1 / xy_nm, 1 / xy_nm),
                     metadata={"axes": "ZYX", "spacing": z_nm, "unit": "nm"})
    return path


def test_cli_orthoplanes(tiny_ckpt, cube, tmp_path, capsys):
    src, out = _tiff(tmp_path / "iso.tif", cube, 5.0, 5.0), tmp_path / "iso_instances.tif"
    rc, err = cli(["predict", src, "-o", out, "--model", tiny_ckpt, "--orthoplanes", "--min-size", "0"], capsys)
    assert rc == 0 and "xy, xz, yz planes" in err
    assert tifffile.imread(out).shape == cube.shape


@pytest.mark.parametrize("flags, z_nm, planes", [([], 5.0, True), ([], 50.0, False), (["--orthoplanes", "off"], 5.0,
                                                                                        False)])
def test_cli_orthoplanes_by_default_where_the_voxels_allow(tiny_ckpt, cube, tmp_path, capsys, flags, z_nm, planes):
    src = _tiff(tmp_path / "a.tif", cube, z_nm, 5.0)
    rc, err = cli(["predict", src, "-o", tmp_path / "b.tif", "--model", tiny_ckpt, "--min-size", "0", *flags], capsys)
    assert rc == 0 and ("predicting along xy, xz and yz planes" in err) == planes
    assert ("xy, xz, yz planes" in err) == planes  # the progress line: what actually ran


@pytest.mark.parametrize("z_nm, shape, words", [(50.0, (32, 40, 48), "near-isotropic"),
                                                (5.0, (8, 40, 48), "at least 32 voxels")])
def test_cli_refuses_orthoplanes_in_one_line(tiny_ckpt, tmp_path, capsys, z_nm, shape, words):
    src = _tiff(tmp_path / "a.tif", np.zeros(shape, np.uint8), z_nm, 4.6)
    rc, err = cli(["predict", src, "-o", tmp_path / "b.tif", "--model", tiny_ckpt, "--orthoplanes"], capsys,
                  late=True)
    assert rc == 2 and words in err and not (tmp_path / "b.tif").exists()
