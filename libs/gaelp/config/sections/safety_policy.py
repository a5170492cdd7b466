"""Settings of the safety_policy service."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class SafetyPolicySettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    grpc_port: int = 50054
