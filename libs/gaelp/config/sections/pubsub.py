"""Settings of the operator-event stream to Google Cloud Pub/Sub (published by the metrics service)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class PubSubTopics(BaseModel):
    """Pub/Sub topic ids (short names inside the project), one per kind of operator event."""

    model_config = ConfigDict(extra="forbid")

    alerts: str = Field("gaelp-alerts", description="anomaly alerts of the metrics detectors")
    violations: str = Field("gaelp-violations", description="safety-policy violations")
    assessments: str = Field("gaelp-assessments", description="graduation assessments")
    run_events: str = Field("gaelp-run-events", description="phase transitions and approval requests")
    episodes: str = Field("gaelp-episodes", description="episode summaries (only with publish_episodes)")


class PubSubSettings(BaseModel):
    """Off by default. With emulator_host set the client talks plaintext gRPC to that emulator."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(False, description="publish operator events to Pub/Sub")
    project_id: str = Field("gaelp-local", description="Google Cloud project of the topics")
    emulator_host: str = Field(
        "", description="host:port of a Pub/Sub emulator; empty: the real service with default credentials"
    )
    topics: PubSubTopics = Field(default_factory=PubSubTopics)
    create_topics: bool = Field(
        True, description="create missing topics at start (the emulator starts empty)"
    )
    publish_episodes: bool = Field(False, description="also publish every episode summary")
    assessment_changes_only: bool = Field(
        True,
        description="publish an assessment only when its verdict (ready, demote, reason) changes for a "
        "run and phase; false: every assessment (one per episode)",
    )
    group_id: str = Field(
        "gaelp-operator-events", description="Kafka consumer group of the publisher (its own offsets)"
    )
    max_attempts: int = Field(5, ge=1, description="publish attempts before a message goes to the DLQ")
    initial_backoff_s: float = Field(0.2, gt=0, description="wait after the first failed attempt")
    max_backoff_s: float = Field(10.0, gt=0, description="longest wait between attempts (doubling)")
    attempt_timeout_s: float = Field(
        30.0, gt=0, description="deadline of one publish attempt, the client's own retries included"
    )
