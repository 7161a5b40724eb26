"""The device a command, the Recommender or a baseline runs on: one reading of ``--device`` for all.

``None`` or ``"auto"`` means CUDA when torch sees a GPU, else the CPU. A name torch does not know, or a
CUDA device this machine does not have, is a :class:`~jepa4rec.errors.UserError` naming the device (not
torch's assertion from deep inside the first ``.to()``).
"""
from __future__ import annotations

import functools

import torch

from .errors import UserError

AUTO = "auto"
HINT = "use --device cpu, cuda or cuda:N (or leave it out: cuda when present, else cpu)"


def resolve_device(name: str | torch.device | None = None) -> torch.device:
    if isinstance(name, torch.device):
        return name
    if name is None or name == AUTO:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise UserError(f"device {name!r} is not a torch device", HINT) from None
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise UserError(f"device {name!r}: torch sees no CUDA GPU here (torch {torch.__version__})", HINT)
        if device.index is not None and device.index >= count:
            raise UserError(f"device {name!r}: torch sees {count} CUDA GPU(s), cuda:0..cuda:{count - 1}", HINT)
    elif device.type != "cpu":
        raise UserError(f"device {name!r}: only cpu and cuda are supported", HINT)
    return device


@functools.lru_cache(maxsize=None)
def _cpu_flags() -> frozenset:
    try:
        with open("/proc/cpuinfo") as fh:
            return frozenset(next((line.split(":", 1)[1].split() for line in fh if line.startswith("flags")), []))
    except OSError:  # not Linux: no native bf16 assumed
        return frozenset()


def native_bf16(device: torch.device | str) -> bool:
    """Whether ``device`` computes bf16 natively, so that autocasting to it is faster rather than emulated:
    a GPU that has it, or a CPU with AVX512-BF16 or AMX-BF16 (measured on such a CPU: pre-training 1.4x,
    encoding 2.5x the fp32 speed; docs/speed.md)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return device.type == "cpu" and bool(_cpu_flags() & {"avx512_bf16", "amx_bf16"})


__all__ = ["AUTO", "native_bf16", "resolve_device"]
