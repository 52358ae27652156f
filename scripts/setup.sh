#!/usr/bin/env bash
# One-shot, idempotent set-up of a fresh Debian machine: system packages for a real Qt window under Xvfb,
# a virtual environment in .venv with the CPU build of torch, and this package with its test extras.
set -euo pipefail
cd "$(dirname "$0")/.."

DEBS="xvfb xauth libxcb-icccm4 libxcb-keysyms1 libxcb-cursor0 libxkbcommon-x11-0 libgl1 libegl1 libgl1-mesa-dri libfontconfig1 libdbus-1-3 libxcb-image0 libxcb-randr0 libxcb-render-util0 libxcb-shape0 libxcb-xinerama0"
missing=""
for p in $DEBS; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
if [ -n "$missing" ] && command -v apt-get >/dev/null 2>&1; then
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    echo "[setup] installing Debian packages:$missing"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
fi

PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
# torch is pinned in the same pip call so pip takes the local CPU wheel instead of resolving a CUDA build.
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q "$TORCH_SPEC" -e ".[testing]"
echo "[setup] done: $(.venv/bin/python -c 'import torch, napari; print("torch", torch.__version__, "napari", napari.__version__)')"
