"""Settings of the environment_registry service."""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, field_validator

_SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")


class EnvironmentRegistrySettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    grpc_port: int = 50052
    specs_dir: str = Field(
        "configs/environments",
        description="folder of YAML environment specs registered at start (relative to the working "
        "directory); empty registers none",
    )
    health_interval_s: float = Field(
        15.0, gt=0, description="seconds between two health probes of every remote environment"
    )
    health_timeout_s: float = Field(
        5.0, gt=0, description="a probe that has not finished in this many seconds reports unhealthy"
    )
    max_config_bytes: int = Field(
        64 * 1024, ge=2, description="largest accepted config_json of one environment spec"
    )
    max_tags: int = Field(32, ge=0, description="most tags one environment spec may carry")
    entry_point_modules: list[str] = Field(
        default_factory=lambda: ["gaelp.sim", "gaelp.rl"],
        description="module prefixes a local entry point may come from ('gaelp.sim' allows gaelp.sim "
        "and gaelp.sim.*): the orchestrator imports what the registry names",
    )
    operators: dict[str, str] = Field(
        default_factory=dict,
        description="operator name -> SHA-256 hex of its token; Register and Deprecate need "
        "'authorization: Bearer <token>' of one of them (none configured: nobody may write)",
    )

    @field_validator("operators")
    @classmethod
    def _hashes(cls, value: dict[str, str]) -> dict[str, str]:
        bad = [name for name, digest in value.items() if not _SHA256_HEX.match(digest)]
        if bad:
            raise ValueError(f"operator token hashes must be lowercase SHA-256 hex: {bad}")
        return value
