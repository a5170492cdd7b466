"""Shared observability: OpenTelemetry tracing and metrics, gRPC interceptors, JSON logs."""

from gaelp.telemetry.logs import configure_logging
from gaelp.telemetry.setup import Telemetry, configure_telemetry

__all__ = ["Telemetry", "configure_logging", "configure_telemetry"]
