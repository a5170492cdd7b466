"""Settings of the learner service."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class LearnerSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    grpc_port: int = 50053
