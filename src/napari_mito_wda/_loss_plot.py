"""A small live plot of the adaptation losses (matplotlib in Qt), fed from the worker's reports."""

from __future__ import annotations

import time

from qtpy.QtWidgets import QSizePolicy, QVBoxLayout, QWidget

# Readable names for the engine's loss keys (core.adapt): source/target segmentation, detection, the negative
# clicks' crops, contrast.
LOSS_NAMES = {
    "src_seg": "source seg",
    "src_det": "source centres",
    "tgt_det": "target centres",
    "tgt_seg": "target seg",
    "neg_seg": "not-mito clicks",
    "con": "contrastive",
}
_BG = "#262930"  # napari's dark theme background, so the plot does not glare in the dock
_FG = "#d0d0d0"


class LossPlot(QWidget):
    """Loss curves against the training step, log scale; redraws at most every `min_interval_s`."""

    def __init__(self, parent: QWidget | None = None, min_interval_s: float = 0.5):
        super().__init__(parent)
        from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
        from matplotlib.figure import Figure

        self.figure = Figure(figsize=(3.2, 1.8), dpi=80, facecolor=_BG, layout="tight")
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.canvas.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.canvas.setFixedHeight(150)
        self.ax = self.figure.add_subplot(111)
        self.series: dict[str, tuple[list[int], list[float]]] = {}
        self._lines: dict = {}
        self._min_interval = min_interval_s
        self._last_draw = 0.0
        self.n_draws = 0
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.canvas)
        self._style()
        self.canvas.draw_idle()

    def _style(self) -> None:
        ax = self.ax
        ax.set_facecolor(_BG)
        ax.set_yscale("log")  # the losses differ by orders of magnitude
        ax.set_xlabel("step", color=_FG, fontsize=8)
        ax.set_ylabel("loss", color=_FG, fontsize=8)
        ax.tick_params(colors=_FG, labelsize=7)
        for spine in ax.spines.values():
            spine.set_color("#606060")
        self._hint = ax.text(0.5, 0.5, "losses appear here while adapting", transform=ax.transAxes,
                             ha="center", va="center", color="#909090", fontsize=8)

    def clear(self) -> None:
        self.series.clear()
        self._lines.clear()
        self.ax.clear()
        self._style()
        self.canvas.draw_idle()

    @property
    def n_points(self) -> int:
        return sum(len(s[0]) for s in self.series.values())

    def add(self, step: int, losses: dict) -> None:
        """Append one point per loss; redraw unless one was drawn very recently (then `flush` later)."""
        for key, value in losses.items():
            if value is None or not value > 0:  # log scale: skip zeros and NaN
                continue
            steps, values = self.series.setdefault(key, ([], []))
            steps.append(int(step))
            values.append(float(value))
        if time.monotonic() - self._last_draw >= self._min_interval:
            self.flush()

    def flush(self) -> None:
        """Redraw every curve with what it has now."""
        for key, (steps, values) in self.series.items():
            line = self._lines.get(key)
            if line is None:
                (line,) = self.ax.plot(steps, values, lw=1.2, label=LOSS_NAMES.get(key, key))
                self._lines[key] = line
                legend = self.ax.legend(fontsize=6, loc="upper right", frameon=False, ncol=2)
                for text in legend.get_texts():
                    text.set_color(_FG)
            else:
                line.set_data(steps, values)
        if self.series:
            self._hint.set_visible(False)
            self.ax.relim()
            self.ax.autoscale_view()
        self.canvas.draw_idle()
        self._last_draw = time.monotonic()
        self.n_draws += 1
