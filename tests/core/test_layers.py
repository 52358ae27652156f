"""The engine (src/napari_mito_wda/core) imports no Qt and no napari, and none of the layers above it."""

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[2] / "src" / "napari_mito_wda"
CORE = PKG / "core"
GUI = {"napari", "qtpy", "PyQt5", "PyQt6", "PySide2", "PySide6", "magicgui", "superqt", "vispy"}
# The napari layer and the CLI: every module of the package outside core/ (its __init__ is not one).
ABOVE = {p.stem for p in PKG.glob("*.py") if p.stem != "__init__"}


def forbidden_imports(path: Path, core: Path = CORE, above: set[str] = ABOVE) -> list[str]:
    """The imports of one engine module that reach a GUI package, the napari layer or the CLI."""
    depth = len(path.relative_to(core).parts)  # core/x.py: 1, core/pkg/x.py: 2
    bad = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and (node.level == 0 or node.level > depth):
            # `from ...` beyond core/ lands in napari_mito_wda itself.
            module = node.module if node.level == 0 else ".".join(filter(None, ["napari_mito_wda", node.module]))
            targets = [module] + [f"{module}.{a.name}" for a in node.names]
        else:
            continue
        for name in targets:
            parts = name.split(".")
            if parts[0] in GUI or (parts[0] == "napari_mito_wda" and len(parts) > 1 and parts[1] in above):
                bad.append(f"{path.relative_to(core)}:{node.lineno}: {name}")
    return bad


def test_engine_modules_import_no_gui_and_nothing_above_core():
    modules = sorted(CORE.rglob("*.py"))
    assert len(modules) > 20  # the packages were found
    assert "_widget" in ABOVE and "cli" in ABOVE
    assert [b for m in modules for b in forbidden_imports(m)] == []


def test_the_check_catches_each_kind_of_forbidden_import(tmp_path):
    pkg = tmp_path / "engine"
    pkg.mkdir()
    mod = pkg / "mod.py"
    mod.write_text("import numpy\nfrom . import tiling\nfrom ..data import io\nfrom ... import __version__\n"
                   "import qtpy.QtCore\nfrom napari.layers import Image\nfrom ... import _widget\n"
                   "from napari_mito_wda import cli\nfrom napari_mito_wda.core.data import io as io2\n"
                   "from ..._worker import run\n")
    assert forbidden_imports(mod, tmp_path, {"_widget", "_worker", "cli"}) == [
        "engine/mod.py:5: qtpy.QtCore", "engine/mod.py:6: napari.layers", "engine/mod.py:6: napari.layers.Image",
        "engine/mod.py:7: napari_mito_wda._widget", "engine/mod.py:8: napari_mito_wda.cli",
        "engine/mod.py:10: napari_mito_wda._worker", "engine/mod.py:10: napari_mito_wda._worker.run"]
