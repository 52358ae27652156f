"""Shared helpers for benchmark scripts: data paths, child-process runs, writing docs/benchmarks.md."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
DOC = ROOT / "docs" / "benchmarks.md"


def run_child(script: Path, args: list[str]) -> dict:
    """Run `python script --child args...` in a fresh process; it prints one JSON line last.

    A fresh process per measurement makes its peak memory (ru_maxrss) the measurement's own.
    """
    out = subprocess.run([sys.executable, str(script), "--child", *args], capture_output=True, text=True,
                         env=os.environ | {"PYTHONUNBUFFERED": "1"})
    if out.returncode != 0:
        raise RuntimeError(f"{script.name} {' '.join(args)} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def stamp() -> dict:
    """When, at which commit and on what machine a result was measured (the plugin's provenance)."""
    from napari_mito_wda.core.data.provenance import provenance

    prov = provenance()
    return {"commit": prov["commit"], "date": prov["date"][:10], "machine": prov["machine"]}


def peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def markdown_table(header: list[str], rows: list[list]) -> str:
    def fmt(v):
        return f"{v:.3f}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(fmt(v) for v in r) + " |" for r in rows]
    return "\n".join(lines)


def update_section(name: str, body: str) -> None:
    """Replace (or append) the section between BEGIN/END markers of `name` in docs/benchmarks.md."""
    DOC.parent.mkdir(exist_ok=True)
    text = DOC.read_text() if DOC.exists() else (
        "# Benchmarks\n\nEvery figure here was measured by a script in `benchmarks/`; "
        "each section says how to re-run it.\n")
    begin, end = f"<!-- BEGIN {name} -->", f"<!-- END {name} -->"
    block = f"{begin}\n{body.rstrip()}\n{end}"
    if begin in text:
        text = re.sub(re.escape(begin) + r".*?" + re.escape(end), lambda m: block, text, flags=re.S)
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    tmp = DOC.with_suffix(f".md.{os.getpid()}.part")  # one per process: two benchmarks may finish together
    tmp.write_text(text)
    tmp.replace(DOC)


def pyplot():
    """matplotlib.pyplot on the Agg backend: benchmarks draw files, never windows."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: Path) -> None:
    """Write a matplotlib figure as PNG atomically (a half-written picture never replaces the last one)."""
    plt = pyplot()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.part")
    fig.savefig(tmp, dpi=90, format="png")
    plt.close(fig)
    tmp.replace(path)
