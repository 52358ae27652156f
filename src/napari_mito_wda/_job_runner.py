"""The one place where the dock widget starts background work, and what every section hears about it.

A section (predict, adapt, load a model) hands :meth:`JobRunner.start` a report generator
(``_worker``/``_adapt_worker``); the runner wraps it in a napari ``thread_worker``, marks the image busy
for every widget (``_jobs``) and announces the run through signals, so each section can turn its own
button into Stop or disable it without knowing the others:

* ``started(str)`` with what runs (:data:`PREDICTION`, :data:`ADAPTATION`, :data:`LOADING`),
  ``finished()`` once the worker is done (after its result or error was handled);
* :class:`RunButton`: the button that starts one kind of job and stops it;
* ``status(str)``, ``failed(str)`` and ``progress(done, total, format)`` for the container's status
  line and progress bar (an empty format keeps the bar's current one; total 0 keeps its range).
"""

from __future__ import annotations

import threading
from functools import partial

from qtpy.QtCore import QObject, Signal
from qtpy.QtWidgets import QPushButton

from ._jobs import alive_only, busy_message, hold, reported

PREDICTION = "Prediction"
ADAPTATION = "Adaptation"
LOADING = "Loading the model"


class JobRunner(QObject):
    """Runs one background job at a time for the widget `owner`, and stops it when `owner` is destroyed."""

    started = Signal(str)
    finished = Signal()
    status = Signal(str)
    failed = Signal(str)
    progress = Signal(int, int, str)

    def __init__(self, owner):
        super().__init__(owner)
        self._owner = owner
        self.worker = None
        self.what = PREDICTION
        self.stop_event = threading.Event()
        self._stopping_text = ""
        self._then = None  # run once the current job has finished (the whole-image prediction after adapting)
        owner.destroyed.connect(partial(_abandon, self))  # closing napari stops the running job

    @property
    def is_running(self) -> bool:
        return self.worker is not None

    @property
    def stopping(self) -> bool:
        """Stop was pressed for the current job (reports then stop overwriting the status line)."""
        return self.stop_event.is_set()

    def refused(self, layer) -> bool:
        """True, after saying why, when another run (of any widget) is busy with `layer`."""
        why = busy_message(layer)
        if why:
            self.failed.emit(why)
        return why is not None

    def run_after(self, callback) -> None:
        """Run `callback` once the current job has finished and every section has been told."""
        self._then = callback

    def start(self, gen_func, args, kwargs, on_returned, *, what: str = PREDICTION, on_yielded=None, layer=None,
              stoppable: bool = True, stopping: str = "Stopping after the current slice …"):
        """Run the report generator `gen_func(*args, **kwargs)` in a napari thread_worker; return the worker.

        `stoppable`: the generator takes a fresh ``stop_event`` that :meth:`stop` sets (`stopping` is then
        shown). `layer` (the image worked on) is marked busy for every widget until `finished`.
        """
        from napari.qt.threading import thread_worker

        self.stop_event = threading.Event()
        if stoppable:
            kwargs = dict(kwargs, stop_event=self.stop_event)
        # ignore_errors: our errored handler reports the problem; napari would otherwise re-raise it.
        worker = thread_worker(reported(gen_func), start_thread=False, ignore_errors=True)(*args, **kwargs)
        if layer is not None:
            hold(layer, what, worker)
        for signal, slot in ((worker.yielded, on_yielded or self._on_report), (worker.returned, on_returned),
                             (worker.errored, self._on_error), (worker.finished, self._on_finished)):
            signal.connect(alive_only(self._owner, slot))  # napari may be closed while it still reports
        self.worker, self.what, self._stopping_text = worker, what, stopping
        self.started.emit(what)
        worker.start()
        return worker

    def stop(self) -> None:
        """Ask the running job to stop: prediction after the current slice, adaptation at its next step."""
        if self.worker is not None:
            # The generators check the event (prediction raises Cancelled -> "Stopped"; adaptation ends
            # with its best model); not using worker.quit() lets them finish cleanly before `finished`.
            self.stop_event.set()
            self.status.emit(self._stopping_text)

    def _on_report(self, report) -> None:
        """Reports of a job without its own handler: slices (or steps) done of the total."""
        total = max(1, int(getattr(report, "total", 1)))
        self.progress.emit(min(int(report.done), total), total, "")
        stage = getattr(report, "stage", "")
        if stage and stage != "done" and not self.stopping:
            self.status.emit(f"{stage.capitalize()} … {report.done}/{report.total} slices")

    def _on_error(self, exc: BaseException) -> None:
        from ._worker import Cancelled

        self._then = None
        if isinstance(exc, Cancelled):
            self.status.emit(f"Stopped: {exc}" if str(exc) else "Stopped; no layer was changed.")
        else:
            self.failed.emit(f"{self.what} failed: {exc}")

    def _on_finished(self) -> None:
        self.worker = None
        self.finished.emit()
        then, self._then = self._then, None
        if then is not None:
            then()


class RunButton(QPushButton):
    """Starts one kind of job (`what`) and is its Stop button while it runs; disabled while others run."""

    def __init__(self, text: str, what: str, jobs: JobRunner, start):
        super().__init__(text)
        self._idle_text, self._what, self._jobs, self._start = text, what, jobs, start
        self.clicked.connect(self._on_clicked)

    def _on_clicked(self, *_args) -> None:
        if self._jobs.is_running:
            self._jobs.stop()
        else:
            self._start()

    def on_run_started(self, what: str) -> None:
        mine = what == self._what
        self.setEnabled(mine)
        if mine:
            self.setText("Stop")

    def on_run_finished(self) -> None:
        self.setText(self._idle_text)
        self.setEnabled(True)


def _abandon(runner: JobRunner, *_args) -> None:
    """The widget is gone: the engine stops at its next step, the worker at its next report."""
    runner.stop_event.set()
    if runner.worker is not None:
        runner.worker.quit()
