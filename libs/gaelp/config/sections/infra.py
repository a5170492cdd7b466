"""Settings of the shared infrastructure: broker, telemetry, gRPC, database, storage."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

DEFAULT_TOPIC_PARTITIONS: dict[str, int] = {
    "gaelp.episodes.v1": 3,
    "gaelp.transitions.v1": 4,
    "gaelp.violations.v1": 3,
    "gaelp.policy.v1": 1,
    "gaelp.learner-metrics.v1": 1,
    "gaelp.assessments.v1": 1,
    "gaelp.run-events.v1": 1,
    "gaelp.dlq.v1": 1,
}


class KafkaSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    bootstrap: str = Field(
        "",
        description="host:port list of the broker; empty in embedded mode starts a local broker",
    )
    client_id: str = "gaelp"
    acks: Literal["all", "1", "0"] = Field("all", description="producer acks; 'all' for real Kafka")
    enable_idempotence: bool = Field(
        True, description="idempotent producer; off for brokers without InitProducerId (Tansu)"
    )
    linger_ms: int = Field(5, ge=0, le=10_000)
    max_request_size: int = Field(8 * 1024 * 1024, ge=1024, description="largest message in bytes")
    request_timeout_ms: int = Field(30_000, ge=100)
    consumer_max_records: int = Field(256, ge=1, description="getmany batch size")
    consumer_poll_timeout_ms: int = Field(200, ge=1)
    fetch_max_wait_ms: int = Field(
        50, ge=0, description="longest the broker holds a fetch with no data: bounds end-to-end latency"
    )
    session_timeout_ms: int = Field(
        6_000, ge=1000, description="a group member silent this long is dropped and its partitions move"
        " (the failover time after a crash); Tansu also holds a first join for about half of it"
    )
    heartbeat_interval_ms: int = Field(1_000, ge=100)
    replication_factor: int = Field(1, ge=1)
    partitions: dict[str, int] = Field(default_factory=lambda: dict(DEFAULT_TOPIC_PARTITIONS))
    dlq_topic: str = "gaelp.dlq.v1"

    @field_validator("partitions")
    @classmethod
    def _positive_partitions(cls, value: dict[str, int]) -> dict[str, int]:
        bad = {topic: count for topic, count in value.items() if count < 1}
        if bad:
            raise ValueError(f"partition counts must be >= 1: {bad}")
        return value

    @property
    def acks_value(self) -> int | str:
        return "all" if self.acks == "all" else int(self.acks)


class TelemetrySettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    exporter: Literal["none", "console", "otlp", "file", "memory"] = Field(
        "none",
        description="span/metric exporter; 'otlp' needs otlp_endpoint; 'file' writes spans as OTLP JSON"
        " lines under file_dir (one file per process); 'memory' is for tests",
    )
    file_dir: str = Field(
        "var/gaelp/traces", description="directory of the 'file' exporter (`gaelp traces show` reads it)"
    )
    tensorboard: bool = Field(
        True, description="the learner (statistics per update) and the orchestrator (evaluation curves per"
        " task) write TensorBoard event files under <storage.data_dir>/tensorboard"
    )
    otlp_endpoint: str = Field("", description="OTLP/gRPC collector endpoint, e.g. http://otel:4317")
    traces_sample_ratio: float = Field(
        1.0, ge=0.0, le=1.0,
        description="share of traces a process starts that it records (a call or message continuing a"
        " caller's trace follows the caller's decision); a recorded span costs a ledger reservation"
        " about 0.08 ms of CPU (docs/ledger.md)",
    )
    service_namespace: str = "gaelp"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    json_logs: bool = True
    span_file: str = Field("", description="write finished spans as JSON lines here (debugging, tests)")
    metric_export_interval_ms: int = Field(10_000, ge=100)


class GrpcSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(0, ge=0, le=65535, description="0 picks the service's default port")
    grace_period_s: float = Field(10.0, gt=0, description="SIGTERM: time to drain before stopping")
    final_stop_s: float = Field(
        2.0, ge=0, description="after draining, calls still open (watch streams) get this long, then end"
    )
    deadline_s: float = Field(10.0, gt=0, description="default deadline of outgoing calls")
    max_message_bytes: int = Field(64 * 1024 * 1024, ge=1024)
    max_string_length: int = Field(1024, ge=1, description="longest accepted string field")
    reflection: bool = Field(
        True,
        description="serve grpc.reflection.v1alpha so grpcurl, Evans or Postman can list and call methods",
    )


class DatabaseSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(
        "sqlite:///var/gaelp/gaelp.db",
        description="sqlite:///relative/path, sqlite:////absolute/path or postgresql://user@host/db",
    )

    @field_validator("url")
    @classmethod
    def _known_scheme(cls, value: str) -> str:
        if not value.startswith(("sqlite://", "postgresql://", "postgres://")):
            raise ValueError("database url must start with sqlite:// or postgresql://")
        return value


class StorageSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    data_dir: str = Field("var/gaelp", description="checkpoints, caches, reports")
    checkpoint_dir: str = Field("var/gaelp/checkpoints")
    cache_dir: str = Field("var/gaelp/cache", description="downloaded datasets")
