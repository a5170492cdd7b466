"""`module:callable` entry points, as environment specs and settings name them."""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from typing import Any


def in_allowed_module(entry_point: str, allowed: Iterable[str]) -> bool:
    """'gaelp.sim' allows gaelp.sim and gaelp.sim.* (whole module names, never a name prefix)."""
    module = entry_point.partition(":")[0]
    return any(module == prefix or module.startswith(f"{prefix}.") for prefix in allowed)


def load_entry_point(entry_point: str) -> Any:
    """Import `module` and return its attribute `callable`; ValueError for a malformed name."""
    module_name, _, attribute = entry_point.partition(":")
    if not module_name or not attribute:
        raise ValueError(f"entry point {entry_point!r} is not 'module:callable'")
    return getattr(importlib.import_module(module_name), attribute)
