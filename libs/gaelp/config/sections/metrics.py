"""Settings of the metrics service: rolling windows, anomaly rule, graduation criteria, dashboard."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class Criterion(BaseModel):
    """One graduation criterion: the named figure compared with a threshold."""

    model_config = ConfigDict(extra="forbid")

    threshold: float
    comparison: Literal[">=", "<="] = ">="


class Phase1Criteria(BaseModel):
    """Simulation. Windowed figures use the last window_episodes non-failed episodes of the phase."""

    model_config = ConfigDict(extra="forbid")

    avg_normalized_reward: Criterion = Field(default_factory=lambda: Criterion(threshold=0.7))
    success_rate: Criterion = Field(default_factory=lambda: Criterion(threshold=0.8))
    improvement: Criterion = Field(
        default_factory=lambda: Criterion(threshold=0.05),
        description="(window mean normalized reward - baseline mean) / |baseline mean|",
    )
    consistency: Criterion = Field(
        default_factory=lambda: Criterion(threshold=50),
        description="consecutive latest episodes at which reward and success criteria both held",
    )
    final_curriculum_level: Criterion = Field(
        default_factory=lambda: Criterion(threshold=0, comparison="<="),
        description="levels still to go: curriculum_levels - highest level reached (no curriculum: 1)",
    )


class Phase2Criteria(BaseModel):
    """Historical validation: window means of the OPE figures the orchestrator reports per episode."""

    model_config = ConfigDict(extra="forbid")

    historical_match: Criterion = Field(default_factory=lambda: Criterion(threshold=0.95))
    prediction_accuracy: Criterion = Field(default_factory=lambda: Criterion(threshold=0.85))
    correlation: Criterion = Field(default_factory=lambda: Criterion(threshold=0.8))


class Phase3Criteria(BaseModel):
    """Small-budget real testing: one episode is one campaign flight."""

    model_config = ConfigDict(extra="forbid")

    consecutive_positive_roi: Criterion = Field(default_factory=lambda: Criterion(threshold=5))
    roi: Criterion = Field(
        default_factory=lambda: Criterion(threshold=0.05),
        description="(window revenue - window spend) / window spend",
    )
    budget_efficiency: Criterion = Field(
        default_factory=lambda: Criterion(threshold=0.8), description="window spend / window budget"
    )
    violations: Criterion = Field(default_factory=lambda: Criterion(threshold=0, comparison="<="))


class Phase4Criteria(BaseModel):
    """Scaled deployment."""

    model_config = ConfigDict(extra="forbid")

    sustained_improvement: Criterion = Field(
        default_factory=lambda: Criterion(threshold=0.15),
        description="window mean normalized reward vs the phase-3 window's (services/metrics/assessment.py)",
    )
    multi_campaign_success: Criterion = Field(
        default_factory=lambda: Criterion(threshold=0.9), description="window success rate"
    )
    transfer_effectiveness: Criterion = Field(
        default_factory=lambda: Criterion(threshold=0.8),
        description="fine-tuned / from-scratch score on the held-out products, over the window's transfer"
        " episodes (services/metrics/assessment.py)",
    )


class AnomalySettings(BaseModel):
    """Downward-shift rule per phase, task and metric (all watched metrics are higher-is-better).

    Consecutive blocks of block_episodes non-failed episodes are averaged; a block mean is a breach
    when (mean - median) / scale <= -z_threshold and it lies at least min_drop units below the
    median, where median and scale come from the task's last reference_blocks blocks (scale: the
    larger of 1.4826 x the MAD of their means and the standard error of a block mean from the
    episodes' spread within them, floored at min_relative_std units); the unit is |median| for ROAS
    and CTR and the random-to-planner span (1) for the normalized reward. persistence breaching
    blocks in a row raise one alert. Each stay on a task starts afresh: scoring starts once
    min_reference_blocks blocks of the stay are in the reference (services/metrics/anomaly.py).
    """

    model_config = ConfigDict(extra="forbid")

    metrics: list[Literal["roas", "normalized_reward", "ctr"]] = Field(
        default_factory=lambda: ["roas", "normalized_reward", "ctr"]  # type: ignore[arg-type]  # the literals
    )
    block_episodes: int = Field(10, ge=1, description="episodes averaged into one scored window")
    reference_blocks: int = Field(30, ge=3, description="recent block means the median/MAD come from")
    min_reference_blocks: int = Field(3, ge=3, description="blocks seen before a block may be scored")
    z_threshold: float = Field(4.0, gt=0, description="robust z of a block mean that counts as a breach")
    persistence: int = Field(2, ge=1, description="breaching blocks in a row that raise an alert")
    min_relative_std: float = Field(0.05, ge=0, description="scale floor, in units of the metric")
    min_drop: float = Field(
        0.2, ge=0, description="smallest fall below the median that can alert, in units of the metric"
    )
    demote_on_collapse: bool = Field(True, description="a downward ROAS/reward alert sets demote")
    history: int = Field(50, ge=1, description="alerts kept per run")


class MetricsSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    grpc_port: int = 50055
    http_port: int = Field(8080, ge=0, le=65535, description="dashboard; 0 picks a free port")
    http_host: str = "127.0.0.1"
    group_id: str = Field("gaelp-metrics", description="faust app id = consumer group and table prefix")
    window_episodes: int = Field(50, ge=1, description="rolling window of the assessment figures")
    baseline_episodes: int = Field(10, ge=1, description="first episodes of a phase = improvement baseline")
    curve_points: int = Field(100, ge=10, description="points kept per learning curve (older ones merged)")
    learner_history: int = Field(300, ge=10, description="learner stats kept per run for the dashboard")
    violation_history: int = Field(50, ge=1, description="violations kept per campaign for the dashboard")
    batch_max_events: int = Field(
        2000, ge=1, description="events an agent folds before it writes the changed table values"
    )
    batch_within_s: float = Field(
        0.25, gt=0,
        description="longest wait for a batch to fill (bounds the latency of a quiet stream); each batch "
        "writes every run it changed (tens of kB) to the changelog, so longer batches write less",
    )
    traced_episodes_per_s: float = Field(
        250.0, gt=0,
        description="episode process spans a second at most (above a default run's rate); while a "
        "backlog is caught up the latest episodes of each run's batch get them",
    )
    commit_interval_s: float = Field(1.0, gt=0, description="faust offset commit interval")
    recovery_timeout_s: float = Field(
        120.0, gt=0, description="longest wait at start for the tables to recover from their changelogs"
    )
    highwater_catch_up_s: float = Field(
        5.0, gt=0,
        description="longest a rebalance's recovery reads a changelog partition whose reported end lags"
        " what this worker already read (Tansu's end offsets; metrics/recovery.py), looking for the"
        " records read, before stopping the worker",
    )
    dashboard_poll_ms: int = Field(1000, ge=100, description="how often the page refreshes its data")
    anomaly: AnomalySettings = Field(default_factory=AnomalySettings)
    phase1: Phase1Criteria = Field(default_factory=Phase1Criteria)
    phase2: Phase2Criteria = Field(default_factory=Phase2Criteria)
    phase3: Phase3Criteria = Field(default_factory=Phase3Criteria)
    phase4: Phase4Criteria = Field(default_factory=Phase4Criteria)
