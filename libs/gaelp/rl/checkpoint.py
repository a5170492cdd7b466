"""Atomic checkpoint files and random-number-generator state capture.

A checkpoint is one `torch.save` file holding everything needed to continue training exactly:
network and optimizer state dicts, normalizers, counters, the agent's torch generator, the global
torch/numpy/python RNG states, replay contents, and the caller's `extra` dict (e.g. Kafka offsets).
It is written to `<path>.tmp` and renamed over `path`, so a crash never leaves a torn file.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch


def capture_global_rng() -> dict[str, Any]:
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": np.random.get_state(),
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_global_rng(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"].cpu())
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


def atomic_save(payload: dict[str, Any], path: str | Path) -> None:
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(target.name + ".tmp")
    with open(temporary, "wb") as handle:
        torch.save(payload, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, target)


def load_payload(path: str | Path, device: torch.device) -> dict[str, Any]:
    # weights_only=False: the file also holds numpy/python RNG states; only load checkpoints you wrote.
    return torch.load(Path(path), map_location=device, weights_only=False)
