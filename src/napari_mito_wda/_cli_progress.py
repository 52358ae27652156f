"""The command line's progress bar (a module of its own to keep cli.py short)."""

from __future__ import annotations

import sys
import time


class Progress:
    """A one-line progress bar on stderr (plain lines when stderr is not a terminal)."""

    def __init__(self, label: str):
        self.label, self.t0, self.tty = label, time.perf_counter(), sys.stderr.isatty()
        self._last = -1

    def __call__(self, done: int, total: int) -> None:
        el = time.perf_counter() - self.t0
        eta = el / done * (total - done) if done else 0
        msg = f"{self.label}: {done}/{total} ({100 * done / total:3.0f}%), {el:.0f} s, ~{eta:.0f} s left"
        if self.tty:
            bar = "#" * int(30 * done / total)
            sys.stderr.write(f"\r{msg} [{bar:<30}]" + ("\n" if done == total else ""))
        elif int(10 * done / total) != self._last or done == total:
            sys.stderr.write(msg + "\n")
            self._last = int(10 * done / total)
        sys.stderr.flush()
