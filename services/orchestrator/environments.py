"""Resolving an environment id and version to a factory of vector environments.

Today the known environments come from configuration (the simulator shipped in gaelp.sim); the
environment-registry service replaces this table once runs resolve through it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from gymnasium.vector import VectorEnv

VectorEnvFactory = Callable[..., VectorEnv]

KNOWN_ENVIRONMENTS: dict[tuple[str, str], str] = {
    ("gaelp/AdMarket-v0", "0.1.0"): "gaelp.sim:make_ad_vector_env",
}


class UnknownEnvironment(LookupError):
    pass


def resolve_vector_env(environment_id: str, version: str) -> VectorEnvFactory:
    """factory(num_envs, level, seed) -> VectorEnv for the given id and exact version."""
    entry_point = KNOWN_ENVIRONMENTS.get((environment_id, version))
    if entry_point is None:
        known = ", ".join(f"{i}@{v}" for i, v in KNOWN_ENVIRONMENTS)
        raise UnknownEnvironment(f"no environment {environment_id}@{version}; known: {known}")
    module_name, _, attribute = entry_point.partition(":")
    factory: Any = getattr(importlib.import_module(module_name), attribute)
    return factory
