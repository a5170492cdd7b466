"""Device selection and CPU thread configuration for the RL core.

`resolve_device("auto")` picks CUDA when present, else CPU. Every agent keeps its networks, buffers and
random generator on the resolved device; only `policy.act` (the actors' entry point) crosses to numpy.
"""

from __future__ import annotations

import os

import torch


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """Map "auto" | "cpu" | "cuda" | "cuda:N" (or a torch.device) to a concrete torch.device."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {device!r} requested but CUDA is not available")
    return resolved


def configure_torch_threads(num_threads: int | None = None) -> int:
    """Set torch's intra-op threads; default 1 on machines with up to 2 cores, else half the cores (max 4).

    The networks here are small: extra threads mostly add synchronisation cost (and spin-wait badly when
    the cores are shared), and the env steps in the same process need a core too.
    """
    cores = os.cpu_count() or 1
    threads = num_threads if num_threads is not None else (1 if cores <= 2 else min(4, cores // 2))
    torch.set_num_threads(threads)
    return threads
