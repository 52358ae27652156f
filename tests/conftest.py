"""Shared pytest fixtures (generic: small data, model files, napari helpers).

GUI tests (``@pytest.mark.gui``) need a real X display: run them under Xvfb with Qt's default xcb
platform, e.g. ``xvfb-run -a -s "-screen 0 1280x1024x24" python -m pytest``. Without a display they are
skipped with that instruction instead of crashing Qt.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

# One torch thread in tests: on a small shared CPU, two OpenMP threads competing with other processes made
# the adaptation tests 8-15x slower (measured: 2.3 s -> 17 s for one tiny run). Set before torch loads.
os.environ.setdefault("OMP_NUM_THREADS", "1")

REPO_ROOT = Path(__file__).resolve().parents[1]
PLUGIN_NAME = "napari-mito-wda"
WIDGET_NAME = "Mitochondria (WDA)"


def _has_display() -> bool:
    if sys.platform != "linux":
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def _has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def pytest_collection_modifyitems(config, items):
    skips = {}
    if not _has_display():
        skips["gui"] = pytest.mark.skip(
            reason='no X display: run GUI tests under Xvfb, e.g. xvfb-run -a -s "-screen 0 1280x1024x24" pytest'
        )
    if any("cuda" in item.keywords for item in items) and not _has_cuda():
        skips["cuda"] = pytest.mark.skip(reason="no CUDA GPU here: the GPU path is tested where torch sees one")
    for item in items:
        for marker, skip in skips.items():
            if marker in item.keywords:
                item.add_marker(skip)


# --------------------------------------------------------------------------- precision


@pytest.fixture(params=["fp32", "bf16"])
def precision(request, monkeypatch):
    """Run a numerics-sensitive test under both precisions the engine may pick on a CPU.

    The automatic choice is bf16 on CPUs with native bf16 (AMX / AVX512-BF16) and fp32 elsewhere, so a
    test that only ran under the automatic one would pass on one machine and fail on the next. bf16 on
    a CPU without native support is emulated: slower, but fine on the tiny networks of the tests.
    """
    monkeypatch.setenv("MITO_WDA_PRECISION", request.param)
    return request.param


# --------------------------------------------------------------------------- data


@pytest.fixture
def one_thread():
    """Torch on one thread for the test: two threads sum in a varying order, and a short training run on
    tiny data can diverge on some of those orders (a test that fails 1 run in ~10 is no test)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def small_volume():
    """A tiny synthetic EM-like stack (3, 96, 96): (image uint8, instances uint16). Read-only."""
    from napari_mito_wda.core.data.synthetic import make_volume

    image, instances = make_volume(shape=(3, 96, 96), n_objects=5, seed=1)
    image.flags.writeable = False
    instances.flags.writeable = False
    return image, instances


@pytest.fixture(scope="session")
def default_model_file() -> Path:
    """The shipped default model; tests needing a trained model are skipped while it is not shipped."""
    from napari_mito_wda.core.data.checkpoint import default_model_path

    path = default_model_path()
    if not path.exists():
        pytest.skip(f"default model not shipped yet ({path.name} missing in the package data folder)")
    return path


@pytest.fixture(scope="session")
def random_model_file(tmp_path_factory) -> Path:
    """A tiny untrained checkpoint: exercises loading/prediction plumbing fast (its labels are arbitrary)."""
    import torch

    from napari_mito_wda.core.data.checkpoint import save_checkpoint
    from napari_mito_wda.core.engine.model import ModelConfig, MultiTaskUNet

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("models") / "tiny_random.pt"
    save_checkpoint(path, MultiTaskUNet(ModelConfig(base=4, depth=2)), meta={"name": "tiny random (tests)"})
    return path


@pytest.fixture(scope="session")
def adaptable_model_file(tmp_path_factory) -> Path:
    """A tiny untrained checkpoint that can be adapted: it carries a small source replay set."""
    import numpy as np
    import torch

    from napari_mito_wda.core.data.checkpoint import save_checkpoint
    from napari_mito_wda.core.data.synthetic import make_volume
    from napari_mito_wda.core.engine.model import ModelConfig, MultiTaskUNet

    torch.manual_seed(0)
    model = MultiTaskUNet(ModelConfig(base=4, depth=2, proj_dim=8, downsample=2))
    image, instances = make_volume(shape=(4, 96, 96), n_objects=6, seed=7)
    extras = {
        "replay_images": torch.from_numpy(np.ascontiguousarray(image, dtype=np.uint8)),
        "replay_masks": torch.from_numpy((instances > 0).astype(np.uint8)),
        "source_prototypes": torch.nn.functional.normalize(torch.randn(2, 8), dim=1),
    }
    path = tmp_path_factory.mktemp("models") / "tiny_adaptable.pt"
    save_checkpoint(path, model, meta={"name": "tiny adaptable (tests)"}, extras=extras)
    return path


# Adaptation settings small enough for a test on a 2-core CPU (a few seconds).
# adabn_n0=None: the tiny untrained checkpoints carry BatchNorm's initial statistics, no source's to blend
# with (blended, their heatmap is 0 everywhere in bf16).
TINY_ADAPT = dict(minutes=2.0, max_iters=6, stage1_rounds=1, stage2_rounds=1, source_batch=1, target_batch=2,
                  crop=48, label_slices=2, report_every=1, adabn_n0=None)


@pytest.fixture
def lucchi_available() -> bool:
    from napari_mito_wda.sample import sample_paths

    paths = sample_paths()
    missing = [p.name for k, p in paths.items() if k in ("image", "instances") and not p.exists()]
    if missing:
        pytest.skip(f"Lucchi sample not shipped yet (missing {', '.join(missing)})")
    return True


def file_bytes(path) -> bytes:
    return Path(path).read_bytes()


# --------------------------------------------------------------------------- napari


@pytest.fixture
def captured_errors():
    """Messages of napari error notifications (show_error) dispatched during the test."""
    from napari.utils.notifications import NotificationSeverity, notification_manager

    messages: list[str] = []

    def collect(notification):
        if notification.severity == NotificationSeverity.ERROR:
            messages.append(str(notification.message))

    notification_manager.notification_ready.connect(collect)
    yield messages
    notification_manager.notification_ready.disconnect(collect)


@pytest.fixture
def viewer_and_widget(make_napari_viewer, qtbot):
    """A real napari viewer with the plugin's dock widget opened through the plugin manager."""
    viewer = make_napari_viewer()
    _dock, widget = viewer.window.add_plugin_dock_widget(PLUGIN_NAME, WIDGET_NAME)
    # The device label is filled by a short background job; let it finish so no thread outlives the test.
    qtbot.waitUntil(lambda: "detecting" not in widget.device_label.text(), timeout=30000)
    return viewer, widget


def wait_for_worker(qtbot, widget, timeout: int = 60000) -> None:
    """Block (processing Qt events) until the widget's background job has finished."""
    qtbot.waitUntil(lambda: not widget.is_running, timeout=timeout)


@pytest.fixture
def wait_worker(qtbot):
    return lambda widget, timeout=60000: wait_for_worker(qtbot, widget, timeout)


@pytest.fixture
def target():
    """A small synthetic target-domain stack (3 x 80 x 96) the adaptation tests adapt to."""
    from napari_mito_wda.core.data.synthetic import TARGET, make_volume

    image, _ = make_volume((3, 80, 96), n_objects=5, domain=TARGET, seed=2)
    return image
