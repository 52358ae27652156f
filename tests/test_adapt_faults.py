"""Faults around a running adaptation, in a real napari viewer (Xvfb): napari closed while it runs, a
second widget on the same image, a run that fails half-way."""

from __future__ import annotations

import time

import pytest

from .conftest import TINY_ADAPT

SCALE = (40.0, 6.0, 6.0)
LONG = dict(TINY_ADAPT, minutes=10.0, max_iters=100_000)  # would run for minutes unless stopped


def _ready(viewer, widget, target, model_file):
    viewer.add_image(target, name="em", scale=SCALE)
    widget.set_model_path(model_file)
    widget.add_points_layer().add([[1, 40, 40]])


@pytest.mark.gui
def test_closing_napari_while_adapting_stops_the_run_cleanly(viewer_and_widget, target, adaptable_model_file, qtbot):
    from qtpy.QtCore import QThreadPool

    viewer, widget = viewer_and_widget
    _ready(viewer, widget, target, adaptable_model_file)
    widget.adapt_overrides = dict(LONG)
    worker = widget.adapt()
    assert worker is not None, widget.status_label.text()
    finished, errors = [], []
    worker.finished.connect(lambda: finished.append(time.perf_counter()))
    worker.errored.connect(errors.append)
    qtbot.waitUntil(lambda: widget.progress_bar.format().startswith("Training"), timeout=60000)

    t0 = time.perf_counter()
    viewer.close()  # deletes the widget while its worker runs; its late reports must not reach it
    qtbot.waitUntil(lambda: bool(finished), timeout=30000)
    assert finished[0] - t0 < 10, "the adaptation did not stop when napari closed"
    assert widget.jobs.stop_event.is_set() and not errors
    assert QThreadPool.globalInstance().waitForDone(10000)  # no thread left running
    # (a traceback in any Qt callback would fail this test through pytest-qt)


@pytest.mark.gui
def test_a_second_widget_cannot_adapt_or_predict_a_busy_image(
    viewer_and_widget, target, adaptable_model_file, qtbot, wait_worker, captured_errors
):
    from napari_mito_wda._widget import MitoWidget

    viewer, widget = viewer_and_widget
    _ready(viewer, widget, target, adaptable_model_file)
    other = MitoWidget(viewer)
    viewer.window.add_dock_widget(other, name="second Mitochondria (WDA)")
    qtbot.waitUntil(lambda: "detecting" not in other.device_label.text(), timeout=30000)
    other.set_model_path(adaptable_model_file)
    assert other.image_combo.currentText() == "em"

    widget.adapt_overrides = dict(LONG)
    assert widget.adapt() is not None, widget.status_label.text()
    assert other.adapt() is None and "'em' is already being adapted by another run" in other.status_label.text()
    assert other.predict() is None and "stop it first" in other.status_label.text()
    assert not other.is_running and len(captured_errors) == 2

    widget.stop()
    wait_worker(widget, timeout=120000)  # the stop, then the whole-image prediction of the kept model
    assert other.predict() is not None, other.status_label.text()  # free again
    assert widget.adapt() is None and "already being predicted" in widget.status_label.text()
    wait_worker(other)
    assert "instances" in other.status_label.text() and len(captured_errors) == 3


@pytest.mark.gui
def test_a_failed_adaptation_keeps_its_best_model_and_resumes_from_it(
    viewer_and_widget, target, adaptable_model_file, wait_worker, monkeypatch, tmp_path
):
    from napari_mito_wda.core.adapt import loop as engine  # the name the loop calls
    from napari_mito_wda.core.data.checkpoint import load_checkpoint

    calls = []
    build_round = engine.build_round

    def second_round_fails(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("simulated crash")  # e.g. out of memory
        return build_round(*args, **kwargs)

    monkeypatch.setattr(engine, "build_round", second_round_fails)
    viewer, widget = viewer_and_widget
    _ready(viewer, widget, target, adaptable_model_file)
    widget.adapt_overrides = dict(TINY_ADAPT)
    assert widget.adapt() is not None
    wait_worker(widget)  # a RuntimeError (as torch raises) must still end the run with a message
    status = widget.status_label.text()
    assert "simulated crash" in status and "best model so far is kept" in status and "press Adapt" in status
    state = widget.model_state
    assert state.loaded is not None and len(state.runs) == 1 and state.runs[0]["stopped"]
    saved = widget.save_model(tmp_path / "partial.pt")  # it can be saved, and says it is unfinished
    assert saved and load_checkpoint(saved).meta["adaptations"][-1]["finished"] is False

    assert widget.adapt() is not None  # Adapt again continues from it
    wait_worker(widget)
    runs = widget.model_state.runs
    assert len(runs) == 2 and runs[1]["resumed"] and not runs[1]["stopped"]
    assert runs[1]["settings"]["adabn"] is False and "fail" not in widget.status_label.text().lower()
