"""Settings of the metrics service."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class MetricsSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    grpc_port: int = 50055
    http_port: int = 8080
