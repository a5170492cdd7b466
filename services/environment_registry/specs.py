"""Between the wire and the store: validate an EnvironmentSpec message, and render a stored one.

Every check raises InvalidArgument naming the field, so a bad Register answers INVALID_ARGUMENT
with a message the caller can act on.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from environment_registry.versions import parse_version
from gaelp.db.registry import EnvironmentContent, Health, RemoteProtocol, StoredEnvironment
from gaelp.entry_points import in_allowed_module
from gaelp.service import InvalidArgument
from gaelp.service.validation import (
    excerpt,
    parse_json_object,
    require_enum,
    require_identifier,
    require_text,
)
from gaelp.v1 import common_pb2, registry_pb2

# "package.module:factory" or "package.module:Class.method"
_ENTRY_POINT = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")
_TAG = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
_MAX_TAG_LENGTH = 64
SERVED_PHASES: set[int] = {
    common_pb2.PHASE_SIMULATION,
    common_pb2.PHASE_HISTORICAL,
    common_pb2.PHASE_REAL_TESTING,
    common_pb2.PHASE_SCALED,
}
_PROTOCOL_TO_WIRE = {
    RemoteProtocol.NONE: registry_pb2.REMOTE_PROTOCOL_UNSPECIFIED,
    RemoteProtocol.MCP: registry_pb2.REMOTE_PROTOCOL_MCP,
    RemoteProtocol.HTTP: registry_pb2.REMOTE_PROTOCOL_HTTP,
}
_PROTOCOL_FROM_WIRE = {wire: protocol for protocol, wire in _PROTOCOL_TO_WIRE.items()}
_HEALTH_TO_WIRE = {
    Health.NOT_PROBED: registry_pb2.ENVIRONMENT_HEALTH_UNSPECIFIED,
    Health.UNKNOWN: registry_pb2.ENVIRONMENT_HEALTH_UNKNOWN,
    Health.HEALTHY: registry_pb2.ENVIRONMENT_HEALTH_HEALTHY,
    Health.UNHEALTHY: registry_pb2.ENVIRONMENT_HEALTH_UNHEALTHY,
}


@dataclass(frozen=True)
class SpecLimits:
    max_string_length: int
    max_config_bytes: int
    max_tags: int
    entry_point_modules: tuple[str, ...]


@dataclass(frozen=True)
class ValidSpec:
    env_id: str
    version: str
    content: EnvironmentContent


def validate_spec(spec: registry_pb2.EnvironmentSpec, limits: SpecLimits) -> ValidSpec:
    """Check a Register request's spec and bring it to canonical form (sorted phases and tags,
    compact JSON). State fields (deprecated, health, timestamps) are ignored."""
    env_id = require_identifier("spec.id", spec.id)
    version = require_text("spec.version", spec.version, max_length=64)
    try:
        parse_version(version)
    except ValueError as error:
        raise InvalidArgument(f"spec.version: {error}") from error
    entry_point = require_text("spec.entry_point", spec.entry_point, max_length=limits.max_string_length)
    remote_url = require_text(
        "spec.remote_url", spec.remote_url, max_length=limits.max_string_length, required=False
    )
    if _is_url(entry_point):
        # A URL entry point names the remote environment itself.
        if remote_url and remote_url != entry_point:
            raise InvalidArgument(
                "spec.entry_point is a URL, so spec.remote_url must be empty or equal to it"
            )
        remote_url = entry_point
    elif not _ENTRY_POINT.match(entry_point):
        raise InvalidArgument(
            f"spec.entry_point {excerpt(entry_point)} must be 'package.module:callable' or an http(s) URL"
        )
    else:
        _require_allowed_module(entry_point, limits.entry_point_modules)
    protocol = _remote_protocol(spec.remote_protocol, remote_url)
    return ValidSpec(
        env_id=env_id,
        version=version,
        content=EnvironmentContent(
            entry_point=entry_point,
            config_json=canonical_config(spec.config_json, limits.max_config_bytes),
            phases=_phases(spec.phases),
            tags=_tags(spec.tags, limits.max_tags),
            remote_url=remote_url,
            remote_protocol=protocol,
            description=require_text(
                "spec.description", spec.description, max_length=limits.max_string_length, required=False
            ),
        ),
    )


def _require_allowed_module(entry_point: str, allowed: tuple[str, ...]) -> None:
    if not in_allowed_module(entry_point, allowed):
        raise InvalidArgument(
            f"spec.entry_point {excerpt(entry_point)} is not in an allowed module "
            f"(allowed: {', '.join(allowed) or 'none'})"
        )


def _is_url(text: str) -> bool:
    return text.startswith(("http://", "https://"))


def _remote_protocol(wire_value: registry_pb2.RemoteProtocol.ValueType, remote_url: str) -> RemoteProtocol:
    require_enum("spec.remote_protocol", wire_value, set(_PROTOCOL_FROM_WIRE))
    protocol = _PROTOCOL_FROM_WIRE[wire_value]
    if not remote_url:
        if protocol is not RemoteProtocol.NONE:
            raise InvalidArgument("spec.remote_protocol is set but spec.remote_url is empty")
        return protocol
    parts = urlsplit(remote_url)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise InvalidArgument(f"spec.remote_url {excerpt(remote_url)} must be an http(s) URL with a host")
    if protocol is RemoteProtocol.NONE:
        raise InvalidArgument(
            "spec.remote_protocol is required for a remote environment (REMOTE_PROTOCOL_MCP or "
            "REMOTE_PROTOCOL_HTTP): it says how the registry probes its health"
        )
    return protocol


def canonical_config(config_json: str, max_bytes: int) -> str:
    """The config as compact JSON with sorted keys, so equal configs compare equal as text."""
    config = parse_json_object("spec.config_json", config_json, max_bytes=max_bytes)
    return json.dumps(config, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _phases(phases: Any) -> tuple[int, ...]:
    if not phases:
        raise InvalidArgument("spec.phases must name at least one phase the environment serves")
    for phase in phases:
        require_enum("spec.phases", phase, SERVED_PHASES)
    return tuple(sorted(set(phases)))


def _tags(tags: Any, max_tags: int) -> tuple[str, ...]:
    unique = sorted(set(tags))
    if len(unique) > max_tags:
        raise InvalidArgument(f"spec.tags has {len(unique)} tags, at most {max_tags} are allowed")
    for tag in unique:
        require_tag("spec.tags", tag)
    return tuple(unique)


def require_tag(name: str, tag: str) -> str:
    if len(tag) > _MAX_TAG_LENGTH or not _TAG.match(tag):
        raise InvalidArgument(
            f"{name}: {excerpt(tag)} must be 1-{_MAX_TAG_LENGTH} lowercase letters, digits and ._- "
            "starting with a letter or digit"
        )
    return tag


def to_message(stored: StoredEnvironment) -> registry_pb2.EnvironmentSpec:
    content = stored.content
    message = registry_pb2.EnvironmentSpec(
        id=stored.env_id,
        version=stored.version,
        entry_point=content.entry_point,
        config_json=content.config_json,
        phases=[common_pb2.Phase.ValueType(phase) for phase in content.phases],
        tags=list(content.tags),
        deprecated=stored.deprecated,
        remote_url=content.remote_url,
        health=_HEALTH_TO_WIRE[stored.health],
        health_detail=stored.health_detail,
        description=content.description,
        remote_protocol=_PROTOCOL_TO_WIRE[content.remote_protocol],
        deprecation_reason=stored.deprecation_reason,
    )
    message.registered_at.FromDatetime(stored.registered_at)
    if stored.health_checked_at is not None:
        message.health_checked_at.FromDatetime(stored.health_checked_at)
    return message
