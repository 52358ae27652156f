"""The npe2 manifest: valid, shipped inside the package, and discovered by napari's plugin manager."""

from __future__ import annotations

import subprocess
import sys
from importlib import resources
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
MANIFEST = REPO_ROOT / "napari.yaml"
NAME = "napari-mito-wda"


@pytest.fixture(scope="module")
def manifest():
    from npe2 import PluginManifest

    return PluginManifest.from_file(MANIFEST)


def test_manifest_contributions(manifest):
    assert manifest.name == NAME
    c = manifest.contributions
    command_ids = {cmd.id for cmd in c.commands}
    assert all(i.startswith(f"{NAME}.") for i in command_ids)

    tiff_reader, lazy_reader = c.readers
    assert {"*.tif", "*.tiff"} <= set(tiff_reader.filename_patterns)
    assert {"*.zarr", "*.h5"} <= set(lazy_reader.filename_patterns) and lazy_reader.accepts_directories
    assert {tiff_reader.command, lazy_reader.command} <= command_ids

    (writer,) = c.writers
    assert [str(getattr(t, "value", t)) for t in writer.layer_types] == ["labels"]
    assert ".tif" in writer.filename_extensions

    samples = {s.display_name: s for s in c.sample_data}
    assert "Lucchi CA1 FIB-SEM crop (real)" in samples
    assert len(samples) == 2

    (widget,) = c.widgets
    assert widget.display_name == "Mitochondria (WDA)"


def test_manifest_imports_resolve(manifest):
    """Every python_name imports and names a callable (npe2 imports the modules)."""
    manifest.validate_imports()


def test_manifest_ships_in_package():
    """The entry point napari_mito_wda:napari.yaml finds the same file (symlink into the package)."""
    packaged = resources.files("napari_mito_wda") / "napari.yaml"
    assert packaged.is_file()
    assert packaged.read_text() == MANIFEST.read_text()


def test_npe2_validate_cli():
    proc = subprocess.run(
        [sys.executable, "-m", "npe2", "validate", NAME, "--imports"], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "valid" in proc.stdout.lower()


def test_napari_plugin_manager_lists_plugin():
    from napari.plugins import _initialize_plugins
    from npe2 import PluginManager

    _initialize_plugins()
    pm = PluginManager.instance()
    assert NAME in {m.name for m in pm.iter_manifests()}
    widgets = [w.display_name for w in pm.get_manifest(NAME).contributions.widgets]
    assert widgets == ["Mitochondria (WDA)"]
    readers = list(pm.iter_compatible_readers(["volume.tif"]))
    assert any(r.plugin_name == NAME for r in readers)
    writers = list(pm.iter_compatible_writers(["labels"]))
    assert any(w.plugin_name == NAME for w in writers)
