"""Settings of the orchestrator service."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class OrchestratorSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    grpc_port: int = 50051
    smoke_env_id: str = Field(
        "CartPole-v1", description="gymnasium id a smoke run steps with a random policy"
    )
    smoke_episodes: int = Field(20, ge=1, description="episodes of a smoke run unless StartRun says")
