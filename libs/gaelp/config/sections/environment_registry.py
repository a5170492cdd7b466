"""Settings of the environment_registry service."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class EnvironmentRegistrySettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    grpc_port: int = 50052
