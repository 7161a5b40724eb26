"""The device a command, the Recommender or a baseline runs on: one reading of ``--device`` for all.

``None`` or ``"auto"`` means CUDA when torch sees a GPU, else the CPU. A name torch does not know, or a
CUDA device this machine does not have, is a :class:`~jepa4rec.errors.UserError` naming the device (not
torch's assertion from deep inside the first ``.to()``).
"""
from __future__ import annotations

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


__all__ = ["AUTO", "resolve_device"]
