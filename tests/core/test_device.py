"""Which device and precision the engine picks, and how a user or a test forces one."""

import pytest
import torch

import napari_mito_wda.core.engine.device as device_mod
from napari_mito_wda.core.engine.device import pick_device, requested_precision


def test_environment_forces_the_precision_and_an_argument_beats_it(monkeypatch):
    monkeypatch.setenv("MITO_WDA_PRECISION", "bf16")
    assert pick_device("cpu").amp_dtype == torch.bfloat16
    assert pick_device("cpu", precision="fp32").amp_dtype is None
    monkeypatch.setenv("MITO_WDA_PRECISION", "FP32 ")
    assert pick_device("cpu").amp_dtype is None
    assert pick_device("cpu", precision="bf16").amp_dtype == torch.bfloat16


@pytest.mark.parametrize("native", [True, False])
def test_auto_follows_the_cpu_when_nothing_is_forced(monkeypatch, native):
    monkeypatch.delenv("MITO_WDA_PRECISION", raising=False)
    monkeypatch.setattr(device_mod, "cpu_has_native_bf16", lambda: native)
    dev = pick_device("cpu")
    assert (dev.amp_dtype == torch.bfloat16) == native
    assert requested_precision() == "auto"


def test_forced_bf16_without_native_support_says_it_is_emulated(monkeypatch):
    monkeypatch.setattr(device_mod, "cpu_has_native_bf16", lambda: False)
    assert "emulated" in pick_device("cpu", precision="bf16").describe()
    assert pick_device("cpu", precision="fp32").describe().startswith("CPU, fp32")


def test_bad_precision_or_device_names_are_refused_with_the_choices(monkeypatch):
    monkeypatch.setenv("MITO_WDA_PRECISION", "fp8")
    with pytest.raises(ValueError, match="MITO_WDA_PRECISION must be auto, fp32 or bf16"):
        pick_device("cpu")
    monkeypatch.delenv("MITO_WDA_PRECISION")
    with pytest.raises(ValueError, match="precision must be auto, fp32 or bf16"):
        pick_device("cpu", precision="half")
    with pytest.raises(ValueError, match="device must be cpu or cuda"):
        pick_device("gpu")


def test_the_precision_fixture_reaches_the_engine(precision):
    # what the numerics-sensitive tests rely on: the fixture's precision is the one the engine picks
    expected = torch.bfloat16 if precision == "bf16" else None
    assert pick_device("cpu").amp_dtype == expected
