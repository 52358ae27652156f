"""Where and in which precision the network runs.

CUDA when present. On CPU, bf16 autocast is ~3x faster than fp32 only on processors with native bf16
(AVX512-BF16 / AMX); elsewhere it is emulated and slower, so fp32 + channels_last is the fallback.
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
            return f"GPU: {name} ({'bf16' if self.amp_dtype == torch.bfloat16 else 'fp16' if self.amp_dtype else 'fp32'})"
        precision = "bf16" if self.amp_dtype == torch.bfloat16 else "fp32"
        return f"CPU, {precision}, {self.threads} threads"

    def autocast(self):
        """Context manager for the forward pass (a no-op in fp32)."""
        if self.amp_dtype is None:
            return torch.autocast(self.device.type, enabled=False)
        return torch.autocast(self.device.type, dtype=self.amp_dtype)


def pick_device(prefer: str | None = None, precision: str = "auto") -> DeviceInfo:
    """Choose the device ("cuda", "cpu" or None = best available) and autocast precision.

    precision: "auto" (bf16 where native, else fp32), "fp32" or "bf16".
    Environment variable MITO_WDA_DEVICE overrides `prefer` (e.g. to force the CPU).
    """
    prefer = prefer or os.environ.get("MITO_WDA_DEVICE") or None
    if prefer == "cuda" and not torch.cuda.is_available():
        raise ValueError("CUDA was requested but no CUDA GPU is available; use the CPU instead.")
    use_cuda = prefer == "cuda" or (prefer is None and torch.cuda.is_available())
    device = torch.device("cuda") if use_cuda else torch.device("cpu")
    if precision not in ("auto", "fp32", "bf16"):
        raise ValueError(f"precision must be auto, fp32 or bf16, not {precision!r}")
    if precision == "fp32":
        amp = None
    elif precision == "bf16":
        amp = torch.bfloat16
    elif use_cuda:
        amp = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    else:
        amp = torch.bfloat16 if cpu_has_native_bf16() else None
    return DeviceInfo(device=device, amp_dtype=amp, threads=torch.get_num_threads())
