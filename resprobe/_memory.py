"""Memory checks before allocating: inputs and models sized from user-given shapes or configs."""

from __future__ import annotations

import os

import torch

from .errors import InputsError

__all__ = ["available_bytes", "ensure_fits", "human_bytes"]

# Leave room for the activations and gradients of the pass itself.
_SHARE = 0.5


def available_bytes(device: str | torch.device = "cpu") -> int:
    """Memory that can still be allocated on ``device`` (free GPU memory, or the host's
    ``MemAvailable``); a large number when it cannot be read."""
    dev = torch.device(device)
    if dev.type == "cuda" and torch.cuda.is_available():
        free, _ = torch.cuda.mem_get_info(dev)
        return int(free)
    if dev.type == "meta":
        return 1 << 62
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    pages = os.sysconf("SC_AVPHYS_PAGES") if hasattr(os, "sysconf") else -1
    return int(pages * os.sysconf("SC_PAGE_SIZE")) if pages > 0 else 1 << 62


def human_bytes(n: float) -> str:
    """``1.5 GB``-style sizes."""
    for unit in ("B", "KB", "MB", "GB", "TB", "PB"):
        if abs(n) < 1000 or unit == "PB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} PB"


def ensure_fits(nbytes: int, what: str, hint: str, device: str | torch.device = "cpu") -> None:
    """Raise ``InputsError`` (exit code 2) when ``nbytes`` would take more than half of the
    memory still free on ``device``; ``hint`` says what to do instead."""
    free = available_bytes(device)
    if nbytes > _SHARE * free:
        raise InputsError(f"{what} would take {human_bytes(nbytes)}, more than half of the "
                          f"{human_bytes(free)} free on {torch.device(device).type}; {hint}")
