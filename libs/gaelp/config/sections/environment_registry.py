"""Settings of the environment_registry service."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


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
