"""`module:callable` entry points, as environment specs and settings name them."""

from __future__ import annotations

import importlib
from typing import Any


def load_entry_point(entry_point: str) -> Any:
    """Import `module` and return its attribute `callable`; ValueError for a malformed name."""
    module_name, _, attribute = entry_point.partition(":")
    if not module_name or not attribute:
        raise ValueError(f"entry point {entry_point!r} is not 'module:callable'")
    return getattr(importlib.import_module(module_name), attribute)
