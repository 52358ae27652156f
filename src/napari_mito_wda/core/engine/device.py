"""Where and in which precision the network runs.

CUDA when present. On CPU, bf16 autocast is ~3x faster than fp32 only on processors with native bf16
(AVX512-BF16 / AMX); elsewhere it is emulated and slower, so fp32 + channels_last is the fallback.

The automatic choice depends on the machine, so results can too: the environment variables
MITO_WDA_PRECISION (auto, fp32, bf16) and MITO_WDA_DEVICE (cpu, cuda) force one path everywhere the
engine picks it itself (CLI, napari, API, tests), and an explicit argument beats both.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch


def cpu_has_native_bf16() -> bool:
    """True when /proc/cpuinfo lists AVX512-BF16 or AMX-BF16 (Linux); False when unknown."""
    try:
        with open("/proc/cpuinfo") as fh:
            flags = fh.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


@dataclass
class DeviceInfo:
    device: torch.device
    amp_dtype: torch.dtype | None  # autocast dtype, None = plain fp32
    threads: int

    def describe(self) -> str:
        if self.device.type == "cuda":
            name = torch.cuda.get_device_name(self.device)
            amp = 'bf16' if self.amp_dtype == torch.bfloat16 else 'fp16' if self.amp_dtype else 'fp32'
            return f"GPU: {name} ({amp})"
        if self.amp_dtype is None:
            precision = "fp32"
        else:  # forced bf16 without hardware support runs emulated, slower than fp32: say so
            precision = "bf16" if cpu_has_native_bf16() else "bf16 (emulated, slower than fp32)"
        return f"CPU, {precision}, {self.threads} threads"

    def autocast(self):
        """Context manager for the forward pass (a no-op in fp32)."""
        if self.amp_dtype is None:
            return torch.autocast(self.device.type, enabled=False)
        return torch.autocast(self.device.type, dtype=self.amp_dtype)


PRECISIONS = ("auto", "fp32", "bf16")


def requested_precision(precision: str | None = "auto") -> str:
    """The precision asked for: an explicit fp32/bf16 wins, else MITO_WDA_PRECISION, else "auto"."""
    if precision in (None, "auto"):
        env = os.environ.get("MITO_WDA_PRECISION", "").strip().lower()
        if env and env not in PRECISIONS:
            raise ValueError(f"MITO_WDA_PRECISION must be auto, fp32 or bf16, not {env!r}; set it to one of these "
                             "or unset it")
        return env or "auto"
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be auto, fp32 or bf16, not {precision!r}")
    return precision


def pick_device(prefer: str | None = None, precision: str | None = "auto") -> DeviceInfo:
    """Choose the device ("cuda", "cpu" or None = best available) and autocast precision.

    precision: "auto" (MITO_WDA_PRECISION if set, else bf16 where native and fp32 elsewhere), "fp32"
    or "bf16". Environment variable MITO_WDA_DEVICE overrides `prefer` (e.g. to force the CPU).
    """
    source = "device"
    if not prefer and os.environ.get("MITO_WDA_DEVICE", "").strip():
        prefer, source = os.environ["MITO_WDA_DEVICE"].strip().lower(), "MITO_WDA_DEVICE"
    prefer = prefer or None
    if prefer not in (None, "cpu", "cuda"):
        fix = "; set it to one of these or unset it" if source != "device" else ""
        raise ValueError(f"{source} must be cpu or cuda, not {prefer!r}{fix}")
    if prefer == "cuda" and not torch.cuda.is_available():
        how = "unset MITO_WDA_DEVICE" if source != "device" else "use --device cpu (or leave --device out)"
        raise ValueError(f"CUDA was requested but torch sees no CUDA GPU here; {how} to run on the CPU.")
    use_cuda = prefer == "cuda" or (prefer is None and torch.cuda.is_available())
    device = torch.device("cuda") if use_cuda else torch.device("cpu")
    precision = requested_precision(precision)
    if precision == "fp32":
        amp = None
    elif precision == "bf16":
        amp = torch.bfloat16
    elif use_cuda:
        amp = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    else:
        amp = torch.bfloat16 if cpu_has_native_bf16() else None
    return DeviceInfo(device=device, amp_dtype=amp, threads=torch.get_num_threads())


def release_memory() -> None:
    """Give cached GPU memory back to the driver after a run (a no-op on the CPU).

    torch keeps freed GPU blocks cached for reuse; in a long napari session that cache would stay
    reserved until napari closes, a complaint users of GPU plugins often raise.
    """
    import gc

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
