"""Screenshots of the napari workflow for docs/user_guide.md, taken from a real napari window.

Run under a (virtual) X server, e.g.:

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python scripts/make_screenshots.py

It opens the shipped Lucchi sample, opens the plugin's dock widget, adds the sample's shipped centre
clicks, presses Predict, then "Adapt to this dataset" (a short run: it is for pictures, not results),
and saves one window screenshot per step into docs/images/guide/ (palette PNGs, a few hundred KB at
most). Existing pictures are replaced: they are generated files.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "images" / "guide"
WINDOW = (1500, 940)
MAX_BYTES = 300_000


def wait(widget, app, timeout_s: float = 900.0) -> None:
    """Process Qt events until the widget's background job is over."""
    t0 = time.monotonic()
    while widget.is_running:
        app.processEvents()
        time.sleep(0.01)
        if time.monotonic() - t0 > timeout_s:
            raise TimeoutError("the background job did not finish")
    settle(app)


def settle(app, seconds: float = 0.5) -> None:
    """Let napari redraw (the canvas repaints on the event loop)."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < seconds:
        app.processEvents()
        time.sleep(0.01)


def save_png(rgba, path: Path) -> None:
    """Write a window grab as a 256-colour PNG (EM texture makes full-colour PNGs large)."""
    from PIL import Image

    img = Image.fromarray(rgba[..., :3])
    colours = 256
    while True:
        img.quantize(colours, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(path, optimize=True)
        if path.stat().st_size <= MAX_BYTES or colours <= 32:
            break
        colours //= 2
    print(f"{path.relative_to(ROOT)}: {path.stat().st_size // 1024} KB", file=sys.stderr)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--iters", type=int, default=30, help="adaptation iterations (short: pictures only)")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)

    import napari
    from qtpy.QtWidgets import QApplication

    from napari_mito_wda.core.adapt.points import read_points
    from napari_mito_wda.sample import sample_paths

    viewer = napari.Viewer(title="napari-mito-wda", show=True)
    viewer.window.resize(*WINDOW)
    app = QApplication.instance()

    def shot(name: str) -> None:
        settle(app)
        save_png(viewer.screenshot(canvas_only=False, flash=False), args.out / name)

    # 1. Open the sample (File > Open of a TIFF works the same way, through the plugin's reader).
    viewer.open_sample("napari-mito-wda", "lucchi")
    viewer.layers["Lucchi ground truth"].visible = False
    image = viewer.layers["Lucchi CA1 FIB-SEM"]
    viewer.dims.set_current_step(0, 4)
    viewer.reset_view()
    shot("01_open_sample.png")

    # 2. The dock widget and the centre clicks (the sample's shipped clicks: one per slice).
    _dock, widget = viewer.window.add_plugin_dock_widget("napari-mito-wda", "Mitochondria (WDA)")
    settle(app)
    viewer.reset_view()  # the dock took width from the canvas
    pts = widget.add_points_layer()
    pts.add(read_points(sample_paths()["clicks"]))
    while "detecting" in widget.device_label.text():
        app.processEvents()
        time.sleep(0.05)
    shot("02_widget_and_clicks.png")

    # 3. Predict with the shipped source model.
    widget.predict()
    wait(widget, app)
    viewer.layers.selection.active = pts
    shot("03_predict_source_model.png")

    # 4. Adapt: one picture while it trains (live masks, losses, progress), one at the end.
    widget.maps_check.setChecked(False)
    widget.adapt_overrides = {"max_iters": args.iters, "crop": 96, "report_every": 2, "label_slices": 8}
    worker = widget.adapt()
    if worker is None:
        print(widget.status_label.text(), file=sys.stderr)
        return 1
    taken = {"done": False}

    def during(update) -> None:
        rep = update.report
        if not taken["done"] and rep.stage == "train" and rep.step >= args.iters * 0.7:
            taken["done"] = True
            widget.loss_plot.flush()
            shot("04_adapting.png")

    worker.yielded.connect(during)
    wait(widget, app)
    image.visible = True
    shot("05_adapted.png")

    # 5. Proofreading with napari's label tools (paint mode on the instances layer).
    labels = viewer.layers[f"{image.name} instances"]
    viewer.layers.selection.active = labels
    labels.mode = "paint"
    shot("06_proofread.png")
    print(widget.status_label.text(), file=sys.stderr)
    viewer.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
