"""napari starts fast: importing the plugin's napari-side modules must not load torch (or matplotlib)."""

import subprocess
import sys

MODULES = ["_widget", "_adapt_ui", "_suggest_ui", "_adapt_worker", "_worker", "_reader", "_writer", "_sample_data",
           "_lazy_reader", "_chunked_worker"]


def test_plugin_modules_do_not_import_torch():
    code = (
        "import sys\n"
        + "".join(f"import napari_mito_wda.{m}\n" for m in MODULES)
        + "print(sorted(m for m in ('torch', 'matplotlib') if m in sys.modules))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "[]", proc.stdout


def test_public_api_resolves_from_the_package_without_importing_torch_first():
    code = (
        "import sys\n"
        "import napari_mito_wda as m\n"
        "before = 'torch' in sys.modules\n"
        "from napari_mito_wda import read_volume, segment_volume, load_model, adapt, AdaptSettings\n"
        "missing = [n for n in m.__all__ if getattr(m, n, None) is None]\n"
        "print(before, missing, adapt.__module__, segment_volume.__module__)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["False", "[]", "napari_mito_wda.core.adapt.loop",
                                   "napari_mito_wda.core.engine.segment"], proc.stdout
