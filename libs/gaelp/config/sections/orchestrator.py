"""Settings of the orchestrator service."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class OrchestratorSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    grpc_port: int = 50051
    demo_episodes: int = 20
