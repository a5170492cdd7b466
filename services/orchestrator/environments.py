"""Resolving the run's environment (id and version) to a factory of vector environments.

With `registry_target` set, the environment-registry service answers (a version constraint such as
"^1" picks the newest compatible, non-deprecated version). Without one, a table of the environments
shipped in gaelp.sim answers for exact versions — the same ids and versions the registry is
seeded with from configs/environments. A spec's config supplies the entry point's keyword arguments;
the orchestrator sets num_envs, level and seed itself.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
from gymnasium.vector import VectorEnv

from gaelp.config.sections.orchestrator import OrchestratorSettings
from gaelp.entry_points import in_allowed_module, load_entry_point
from gaelp.service.validation import excerpt
from gaelp.v1 import registry_pb2, registry_pb2_grpc

logger = logging.getLogger(__name__)

VectorEnvFactory = Callable[..., VectorEnv]

SHIPPED_ENVIRONMENTS: dict[tuple[str, str], str] = {
    ("ad-market-simulator", "1.0.0"): "gaelp.sim:make_ad_vector_env",
}


class UnknownEnvironment(LookupError):
    pass


@dataclass(frozen=True)
class ResolvedEnvironment:
    environment_id: str
    version: str
    entry_point: str
    factory: VectorEnvFactory


RUN_ARGUMENTS = frozenset({"num_envs", "level", "seed"})


def _load(entry_point: str, config: dict[str, Any] | None = None) -> VectorEnvFactory:
    try:
        factory: VectorEnvFactory = load_entry_point(entry_point)
    except (ValueError, ImportError, AttributeError) as error:
        raise UnknownEnvironment(f"cannot load entry point {entry_point!r}: {error}") from error
    kwargs = {key: value for key, value in (config or {}).items() if key not in RUN_ARGUMENTS}
    return functools.partial(factory, **kwargs) if kwargs else factory


def resolve_shipped(environment_id: str, version: str) -> ResolvedEnvironment:
    entry_point = SHIPPED_ENVIRONMENTS.get((environment_id, version))
    if entry_point is None:
        known = ", ".join(f"{i}@{v}" for i, v in SHIPPED_ENVIRONMENTS)
        raise UnknownEnvironment(
            f"no environment {environment_id}@{version} without a registry (exact versions only); "
            f"known: {known}"
        )
    return ResolvedEnvironment(environment_id, version, entry_point, _load(entry_point))


async def resolve_environment(
    settings: OrchestratorSettings, channel: grpc.aio.Channel | None, allowed_modules: Sequence[str],
    attempts: int = 10,
) -> ResolvedEnvironment:
    """The environment to run; one a registry names is imported only from allowed_modules (a
    registry reachable by others must not be able to make this process import anything)."""
    if channel is None:
        return resolve_shipped(settings.environment_id, settings.environment_version)
    stub = registry_pb2_grpc.EnvironmentRegistryStub(channel)
    request = registry_pb2.GetEnvironmentRequest(
        id=settings.environment_id, version=settings.environment_version
    )
    for attempt in range(1, attempts + 1):
        try:
            spec = (await stub.Get(request, timeout=5)).spec
            break
        except grpc.aio.AioRpcError as error:
            if error.code() != grpc.StatusCode.UNAVAILABLE or attempt == attempts:
                raise UnknownEnvironment(
                    f"registry could not resolve {settings.environment_id}@"
                    f"{settings.environment_version}: {error.code().name} {error.details()}"
                ) from error
            logger.warning("environment registry not reachable yet; retrying", extra={"attempt": attempt})
            await asyncio.sleep(min(0.5 * attempt, 3.0))
    logger.info("environment resolved by the registry",
                extra={"environment": spec.id, "version": spec.version, "entry_point": spec.entry_point})
    if not in_allowed_module(spec.entry_point, allowed_modules):
        raise UnknownEnvironment(
            f"registry named entry point {excerpt(spec.entry_point)} outside the allowed modules"
            f" ({', '.join(allowed_modules) or 'none'})"
        )
    config = json.loads(spec.config_json) if spec.config_json else {}
    return ResolvedEnvironment(spec.id, spec.version, spec.entry_point, _load(spec.entry_point, config))
