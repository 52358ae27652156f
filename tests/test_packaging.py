"""The wheel must carry the npe2 manifest, the shipped model and the sample, and napari must see the plugin."""

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("wheel")
    res = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(ROOT)],
        capture_output=True, text=True,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    (whl,) = out.glob("napari_mito_wda-*.whl")
    return whl


def test_wheel_ships_manifest_model_and_sample(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for name in ["napari.yaml", "data/source_vnc3.pt", "data/source_vnc3.json", "data/lucchi_sample.tif",
                 "data/lucchi_sample_instances.tif", "data/SAMPLE_README.md"]:
        assert f"napari_mito_wda/{name}" in names, name
    manifest = zipfile.ZipFile(wheel).read("napari_mito_wda/napari.yaml").decode()
    assert manifest == (ROOT / "napari.yaml").read_text()  # the shipped copy is the top-level file
    entry = [n for n in names if n.endswith("entry_points.txt")][0]
    text = zipfile.ZipFile(wheel).read(entry).decode()
    assert "napari_mito_wda:napari.yaml" in text and "mito-wda = napari_mito_wda.cli:main" in text
    assert wheel.stat().st_size < 12e6
