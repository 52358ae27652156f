"""Settings fitted to the user's volume (core/adapt/auto.py) and their use by `mito-wda adapt`."""

import numpy as np
import pytest
import tifffile

from napari_mito_wda.cli import main
from napari_mito_wda.core.adapt import AdaptSettings
from napari_mito_wda.core.adapt.auto import auto_settings
from napari_mito_wda.core.data.checkpoint import load_checkpoint
from napari_mito_wda.core.data.synthetic import make_volume


def test_a_small_crop_and_a_long_stack_get_different_sensible_settings():
    small, why_small = auto_settings((16, 384, 512), 16)
    big, why_big = auto_settings((800, 1536, 2048), 40)
    assert small.crop == 192 and big.crop == 256  # the sample's working image is 192 x 256 px
    assert small.label_slices == 16 and big.label_slices == 40
    assert small.minutes == big.minutes == AdaptSettings().minutes
    assert big.stage2_rounds == AdaptSettings().stage2_rounds  # the measured default where the budget allows
    assert any("192 px" in r and "short side" in r for r in why_small)
    assert any("3 of 16 clicks held out" in r for r in why_small)
    assert any("40 of 800 slices" in r for r in why_big)


@pytest.mark.parametrize("shape", [(16, 384, 512), (3, 40, 1000), (1, 20, 20), (64, 64), (5, 17, 700)])
def test_the_crop_never_exceeds_the_working_image(shape):
    s, _ = auto_settings(shape, 0, downsample=2, multiple=16)
    side = min(shape[-2:]) // 2
    assert 1 <= s.crop <= side
    assert s.crop % 16 == 0 or s.crop == side  # the network's multiple where the image allows it


def test_a_short_budget_gets_one_round_of_smaller_crops_and_no_warm_up():
    short, why = auto_settings((32, 768, 1024), 25, minutes=3)
    middle, _ = auto_settings((32, 768, 1024), 25, minutes=4)  # 3 rounds: the warm-up stays
    long, _ = auto_settings((32, 768, 1024), 25, minutes=30)
    assert (short.crop, short.stage1_rounds, short.stage2_rounds) == (192, 0, 1)
    assert (middle.crop, middle.stage1_rounds, middle.stage2_rounds) == (256, AdaptSettings().stage1_rounds, 2)
    assert long.crop == 256 and long.stage1_rounds + long.stage2_rounds > 3
    assert short.minutes == 3 and any("1 round of self-training and no detection-only warm-up" in r for r in why)
    assert any("192 px (a short budget" in r for r in why)
    # the sample's working image is 192 px already; an odd network multiple still gets a crop it divides
    tiny, why_tiny = auto_settings((16, 384, 512), 16, minutes=1)
    assert tiny.crop == 192 and any("short side is 192 px" in r for r in why_tiny)
    assert auto_settings((8, 1024, 1024), 5, minutes=1, multiple=40)[0].crop == 160


def test_few_or_no_clicks_are_said_and_bad_arguments_refused():
    assert any("no quality estimate" in r for r in auto_settings((4, 96, 96), 3)[1])
    assert any("unsupervised" in r for r in auto_settings((4, 96, 96), 0)[1])
    with pytest.raises(ValueError, match="above 0 minutes"):
        auto_settings((4, 96, 96), 3, minutes=0)
    with pytest.raises(ValueError, match="shape"):
        auto_settings((2, 4, 96, 96), 3)


def test_the_cli_fits_the_settings_unless_thorough_and_says_what_it_chose(adaptable_model_file, tmp_path, capsys):
    img, _ = make_volume((4, 64, 80), n_objects=6, seed=3)
    tifffile.imwrite(tmp_path / "em.tif", img)
    np.save(tmp_path / "clicks.npy", np.array([[1, 30, 30], [2, 40, 50]], float))
    base = ["adapt", str(tmp_path / "em.tif"), "--points", str(tmp_path / "clicks.npy"),
            "--model", str(adaptable_model_file), "--max-iters", "2"]
    assert main(base + ["-o", str(tmp_path / "a.pt")]) == 0
    assert "settings for this volume: budget 8 min" in capsys.readouterr().err
    (run,) = load_checkpoint(tmp_path / "a.pt").meta["adaptations"]
    # the tiny model (downsample 2, inputs a multiple of 4) sees 32 x 40 working px
    assert run["settings"]["crop"] == 32 and run["settings"]["label_slices"] == 4
    assert main(base + ["-o", str(tmp_path / "t.pt"), "--preset", "thorough", "--minutes", "1"]) == 0
    assert "settings for this volume" not in capsys.readouterr().err
    (run,) = load_checkpoint(tmp_path / "t.pt").meta["adaptations"]
    assert run["settings"]["crop"] == 256 and run["settings"]["minutes"] == 1


def test_cross_views_follow_the_voxel_size_and_the_users_choice():
    shape = (40, 256, 256)
    iso, why = auto_settings(shape, 10, voxel_size=(5.0, 5.0, 5.0))
    assert iso.cross_views and any("xy, xz and yz views (near-isotropic" in r for r in why)
    thick, why = auto_settings(shape, 10, voxel_size=(40.0, 5.9, 5.9))
    assert not thick.cross_views and any("40 nm sections, 6.8x" in r for r in why)
    unknown, why = auto_settings(shape, 10)
    assert not unknown.cross_views and any("voxel size unknown" in r for r in why)
    assert auto_settings(shape, 10, cross_views=True)[0].cross_views  # the user says isotropic
    assert not auto_settings(shape, 10, voxel_size=(5.0, 5.0, 5.0), cross_views=False)[0].cross_views
    huge, why = auto_settings((800, 2048, 2048), 10, voxel_size=(5.0, 5.0, 5.0))  # views too costly
    assert not huge.cross_views and any("adapt a crop of it" in r for r in why)
    assert auto_settings((200, 1024, 1024), 10, cross_views=True)[0].cross_views  # asked: a larger stack
    few, why = auto_settings((16, 256, 256), 10, cross_views=True)  # too few slices for xz / yz planes
    assert not few.cross_views and any("32 slices or more" in r for r in why)


def test_the_cli_uses_the_cross_views_when_told_and_without_clicks_keeps_the_latest_model(
        adaptable_model_file, tmp_path, capsys):
    img, _ = make_volume((32, 64, 64), n_objects=6, seed=3)
    tifffile.imwrite(tmp_path / "em.tif", img)
    base = ["adapt", str(tmp_path / "em.tif"), "--model", str(adaptable_model_file), "--max-iters", "2"]
    assert main(base + ["-o", str(tmp_path / "on.pt"), "--cross-views", "on"]) == 0
    err = capsys.readouterr().err
    assert "pseudo-labels from the xy, xz and yz views (you said" in err
    assert "pseudo-labels from the xy, xz and yz views" in err.split("prepare:")[1]  # the loop's own word
    assert "kept the latest model (no clicks; the xz / yz views guard" in err
    (run,) = load_checkpoint(tmp_path / "on.pt").meta["adaptations"]
    assert run["settings"]["cross_views"] is True
    assert main(base + ["-o", str(tmp_path / "auto.pt")]) == 0  # the TIFF carries no voxel size: off
    assert "voxel size unknown" in capsys.readouterr().err
    assert load_checkpoint(tmp_path / "auto.pt").meta["adaptations"][0]["settings"]["cross_views"] is False
