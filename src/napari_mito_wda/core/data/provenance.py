"""Who made a file and how: plugin version, git commit, machine, date."""

from __future__ import annotations

import datetime as _dt
import os
import platform
import subprocess
from pathlib import Path

_OUTPUTS = ("benchmarks/results/", "docs/")  # written by benchmarks, not code


def git_commit(cwd: str | Path | None = None) -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=cwd or Path(__file__).parent, capture_output=True, text=True,
            timeout=5,
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd or Path(__file__).parent,
            capture_output=True, text=True, timeout=5,
        )
        # Results and docs are what a benchmark writes: a run's own rows must not mark its code as changed.
        changed = [line for line in dirty.stdout.splitlines() if line.strip()
                   and not line[3:].startswith(_OUTPUTS)]
        if out.returncode == 0:
            return out.stdout.strip() + ("+dirty" if changed else "")
    except (OSError, subprocess.SubprocessError):
        pass
    return "unknown"


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


def machine() -> str:
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {platform.system()}"


def provenance() -> dict:
    from ... import __version__

    return {"plugin_version": __version__, "commit": git_commit(), "date": now_iso(), "machine": machine()}


def strip_machine_paths(meta):
    """A copy of a model card whose absolute paths keep only their last folder and name.

    A card travels with the model to other people and machines: "/home/alice/data/vnc3/image.tif" tells
    them nothing they can open and something about Alice's disk; "vnc3/image.tif" still names the data.
    """
    if isinstance(meta, dict):
        return {k: strip_machine_paths(v) for k, v in meta.items()}
    if isinstance(meta, (list, tuple)):
        return [strip_machine_paths(v) for v in meta]
    if isinstance(meta, str) and os.path.isabs(meta) and "\n" not in meta:
        parts = Path(meta).parts[1:]
        return "/".join(parts[-2:]) if parts else meta
    return meta
