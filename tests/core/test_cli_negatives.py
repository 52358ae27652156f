"""`mito-wda predict --negative-points`: the objects under "not mitochondria" clicks are left out of the TIFF."""

import numpy as np
import tifffile

from napari_mito_wda.cli import main
from napari_mito_wda.core.adapt.points import innermost_point, write_points_csv
from napari_mito_wda.core.data.synthetic import TARGET, make_volume


def test_predict_leaves_out_the_objects_under_negative_clicks_unless_a_positive_click_holds_them(
    default_model_file, tmp_path, capsys
):
    image, _ = make_volume((3, 96, 96), n_objects=8, domain=TARGET, seed=4)
    tifffile.imwrite(tmp_path / "em.tif", image)
    base = ["predict", str(tmp_path / "em.tif"), "--model", str(default_model_file), "--orthoplanes", "off"]
    assert main(base + ["-o", str(tmp_path / "plain.tif")]) == 0
    plain = tifffile.imread(tmp_path / "plain.tif")
    ids, sizes = np.unique(plain[1][plain[1] > 0], return_counts=True)
    first, second = ids[np.argsort(-sizes)][:2]
    at, at2 = innermost_point(plain[1] == first), innermost_point(plain[1] == second)
    write_points_csv(tmp_path / "neg.csv", np.array([[1, *at], [1, *at2]], float))
    write_points_csv(tmp_path / "pos.csv", np.array([[1, *at2]], float))

    assert main(base + ["-o", str(tmp_path / "neg.tif"), "--negative-points", str(tmp_path / "neg.csv"),
                        "--points", str(tmp_path / "pos.csv")]) == 0
    assert "1 object(s) under the 2 negative clicks left out, 1 spared" in capsys.readouterr().err
    out = tifffile.imread(tmp_path / "neg.tif")
    expected = plain.copy()
    expected[1][expected[1] == first] = 0
    assert np.array_equal(out, expected)


def test_predict_refuses_negative_clicks_outside_the_image_or_on_a_chunked_run(default_model_file, tmp_path, capsys):
    tifffile.imwrite(tmp_path / "em.tif", np.zeros((2, 40, 40), np.uint8))
    write_points_csv(tmp_path / "neg.csv", np.array([[1, 50, 3]], float))
    base = ["predict", str(tmp_path / "em.tif"), "--model", str(default_model_file),
            "--negative-points", str(tmp_path / "neg.csv")]
    assert main(base + ["-o", str(tmp_path / "o.tif")]) == 2
    err = capsys.readouterr().err
    assert "--negative-points" in err and "outside" in err and not (tmp_path / "o.tif").exists()
    assert main(base + ["-o", str(tmp_path / "o.zarr")]) == 2
    assert "not on chunked runs" in capsys.readouterr().err and not (tmp_path / "o.zarr").exists()
