"""The environment specs registered at start: one YAML file per environment version.

    id: ad-market-simulator
    version: 1.0.0
    entry_point: gaelp.sim:make_ad_vector_env
    phases: [simulation]
    tags: [simulator]
    config: {level: 0}
    remote_url: http://127.0.0.1:8765/mcp   # remote environments only
    remote_protocol: mcp                    # mcp | http, with remote_url

A file is parsed into an EnvironmentSpec message and then validated by the same code as a
Register call, so a file can be no more lenient than a remote client.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gaelp.v1 import common_pb2, registry_pb2

PHASES_BY_NAME: dict[str, common_pb2.Phase.ValueType] = {
    "simulation": common_pb2.PHASE_SIMULATION,
    "historical": common_pb2.PHASE_HISTORICAL,
    "real_testing": common_pb2.PHASE_REAL_TESTING,
    "scaled": common_pb2.PHASE_SCALED,
}
_PROTOCOLS_BY_NAME: dict[str, registry_pb2.RemoteProtocol.ValueType] = {
    "": registry_pb2.REMOTE_PROTOCOL_UNSPECIFIED,
    "mcp": registry_pb2.REMOTE_PROTOCOL_MCP,
    "http": registry_pb2.REMOTE_PROTOCOL_HTTP,
}


class SpecFile(BaseModel):
    """The YAML shape of one environment version (the content fields of EnvironmentSpec)."""

    model_config = ConfigDict(extra="forbid")

    id: str
    version: str = Field(description="semantic version; bump it for any change of this file")
    entry_point: str
    description: str = ""
    phases: list[Literal["simulation", "historical", "real_testing", "scaled"]]
    tags: list[str] = Field(default_factory=list)
    config: dict[str, Any] = Field(
        default_factory=dict, description="keyword arguments of the entry point (its defaults)"
    )
    remote_url: str = ""
    remote_protocol: Literal["", "mcp", "http"] = ""

    def to_message(self) -> registry_pb2.EnvironmentSpec:
        return registry_pb2.EnvironmentSpec(
            id=self.id,
            version=self.version,
            entry_point=self.entry_point,
            description=self.description,
            phases=[PHASES_BY_NAME[phase] for phase in self.phases],
            tags=self.tags,
            config_json=json.dumps(self.config),
            remote_url=self.remote_url,
            remote_protocol=_PROTOCOLS_BY_NAME[self.remote_protocol],
        )


class SpecFileError(ValueError):
    pass


def load_spec_file(path: Path) -> SpecFile:
    try:
        data = yaml.safe_load(path.read_text())
        return SpecFile.model_validate(data)
    except (yaml.YAMLError, ValidationError) as error:
        raise SpecFileError(f"{path}: {error}") from error


def load_spec_files(directory: Path) -> list[tuple[Path, SpecFile]]:
    """Every *.yaml under the folder, in name order; a missing folder is an error, not 'none'."""
    if not directory.is_dir():
        raise SpecFileError(f"environment specs folder {directory} does not exist")
    return [(path, load_spec_file(path)) for path in sorted(directory.glob("*.yaml"))]
