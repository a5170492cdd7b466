"""Settings of the orchestrator service."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator

from gaelp.config.sections.money import MoneySettings


class CurriculumSettings(BaseModel):
    """When the scheduler moves a run between tasks (curriculum levels of the simulator)."""

    model_config = ConfigDict(extra="forbid")

    levels: list[int] = Field(
        default_factory=lambda: [0, 1, 2, 3],
        description="simulator curriculum levels, easiest first; each requires the one before",
    )
    evaluation_every_steps: int = Field(
        12_288, ge=1, description="env steps between evaluations of the policy on the current task"
    )
    window: int = Field(2, ge=1, description="evaluations in the rolling performance window")
    min_env_steps: int = Field(24_576, ge=0, description="steps on a task before it can advance")
    advance_threshold: float = Field(
        0.7, gt=0,
        description="advance when the window's normalized reward (0 = random play, 1 = the upper-bound"
        " planner) reaches this; the phase-1 graduation bar",
    )
    regress_threshold: float = Field(
        0.0, ge=0,
        description="go back to the previous task when the window falls below this (0: below random play)",
    )
    max_env_steps_per_task: int = Field(
        150_000, ge=1,
        description="advance after this many steps even without reaching the threshold; on the last task"
        " the run stops there instead (the curriculum completes on performance only)",
    )
    evaluation_envs: int = Field(64, ge=1, description="campaigns in each level evaluation")
    advance_over_heuristic: bool = Field(
        True,
        description="a task passes on performance only when its window also beats the heuristic's"
        " normalized reward on that task (mastery means doing better than the rule of thumb)",
    )
    consolidation_env_steps: int = Field(
        400_000, ge=0,
        description="after the last task is passed, the run goes on training on it while phase 1's"
        " graduation is pending, at most this many env steps; it then waits for the decision",
    )


class UserLogsSettings(BaseModel):
    """A user's own logged campaigns for phase 2 (file format: docs/historical_data.md) and what the
    logging policy held fixed while they were taken."""

    model_config = ConfigDict(extra="forbid")

    file: Path = Field(description="the CSV file; check it first with `gaelp historical check FILE`")
    bid_strategy: int = Field(1, ge=0, le=2, description="the logs' fixed bid strategy: 0 CPC, 1 CPM, 2 CPA")
    bid: float = Field(12.0, gt=0, description="the logs' fixed bid (dollars)")
    daily_budget: float = Field(200.0, gt=0, description="the logs' fixed daily budget (dollars)")
    audience_size: float = Field(0.5, gt=0, le=1, description="the logs' fixed audience size (share)")
    max_daily_budget: float | None = Field(None, gt=0, description="account cap on the daily budget")
    target_roas: float | None = Field(None, gt=0, description="the account's ROAS target")
    bid_cap: float | None = Field(None, gt=0, description="the account's bid cap (dollars)")

    @model_validator(mode="after")
    def _account_terms_together(self) -> UserLogsSettings:
        given = [self.max_daily_budget is not None, self.target_roas is not None, self.bid_cap is not None]
        if any(given) and not all(given):
            raise ValueError("the account terms max_daily_budget, target_roas and bid_cap go together")
        return self


class HistoricalValidationSettings(BaseModel):
    """Phase 2: the logs the run's policy is scored on: the platform sandbox's market's by default, a
    user's own file when `user_logs` names one."""

    model_config = ConfigDict(extra="forbid")

    simulator_level: int = Field(
        2, ge=0,
        description="simulator level whose predictions are compared: the sandbox's market has many"
        " personas and adaptive competitors, the structure of level 2 (level 3 adds drift, noise,"
        " seasonality and tight budget caps the sandbox does not have)",
    )
    campaigns: int = Field(
        192, ge=8,
        description="logged campaigns (one row per campaign-hour); fewer make the logs' estimate of the"
        " policy as noisy as historical_match's tolerance (docs/historical_data.md)",
    )
    days: int = Field(2, ge=1, description="logged days per campaign")
    tolerance: float = Field(0.15, gt=0, description="relative gap within which a prediction is accurate")
    user_logs: UserLogsSettings | None = Field(
        None, description="score the policy on your own logged campaigns instead of the sandbox's logs"
        " (campaigns and days then come from the file)",
    )


class PhaseSettings(BaseModel):
    """The phase machine: where a run demotes to and the highest phase enabled (training per phase:
    training.phases)."""

    model_config = ConfigDict(extra="forbid")

    demote_to: dict[int, int] = Field(
        default_factory=lambda: {1: 1, 2: 1, 3: 2, 4: 3},
        description="phase a run demotes to from each phase (a phase mapped to itself never demotes)",
    )
    last_phase: int = Field(
        4, ge=1, le=4,
        description="highest phase runs may enter; graduating from it completes the run",
    )
    group_id: str = Field(
        "orchestrator-phases",
        description="consumer group reading assessments and violations (committed: a restart goes on)",
    )
    graduation_wait_s: float = Field(
        600.0, gt=0,
        description="how long a run whose phase work is done waits for a graduating assessment",
    )
    historical: HistoricalValidationSettings = Field(default_factory=HistoricalValidationSettings)

class LeaseSettings(BaseModel):
    """Run leases: each unfinished run is driven by the one orchestrator replica holding its lease."""

    model_config = ConfigDict(extra="forbid")

    replica_id: str = Field(
        "", max_length=128,
        description="this replica's name, unique among live replicas (empty: the host name, which a"
        " StatefulSet makes unique); a restart under the same name takes its runs back at once",
    )
    duration_s: float = Field(
        30.0, gt=0,
        description="a lease not renewed for this long expires and another replica takes the run over;"
        " must exceed the replicas' clock skew",
    )
    renew_interval_s: float = Field(
        10.0, gt=0,
        description="how often a replica renews its leases, applies operators' pause/resume requests"
        " and scans the store for unfinished runs without a live lease",
    )

    @model_validator(mode="after")
    def _renew_within_duration(self) -> LeaseSettings:
        if self.renew_interval_s >= self.duration_s:
            raise ValueError("renew_interval_s must be shorter than duration_s")
        return self


class OrchestratorSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    grpc_port: int = 50051
    learner_target: str = Field("127.0.0.1:50053", description="host:port of the learner's gRPC API")
    actors: int = Field(1, ge=1, le=64, description="concurrent actors per run")
    envs_per_actor: int = Field(16, ge=1, description="campaigns each actor steps as one batch")
    chunk_steps: int = Field(24, ge=1, description="T: steps per TransitionBatch")
    registry_target: str = Field(
        "", description="host:port of the environment registry; empty: the environments gaelp ships"
    )
    environment_id: str = Field("ad-market-simulator", description="environment id to resolve")
    environment_version: str = Field(
        "1.0.0", description="exact version, or a constraint such as ^1 when a registry resolves it"
    )
    env_retries: int = Field(3, ge=0, description="restarts of a failing environment before the run fails")
    checkpoint_every_batches: int = Field(1, ge=1, description="run state saved after this many batches")
    max_policy_wait_s: float = Field(
        5.0, gt=0, description="longest an actor waits for a policy version within the lag bound"
    )
    policy_watch_deadline_s: float = Field(
        300.0, gt=0, description="deadline of one Learner.WatchPolicy stream; it is then opened again"
    )
    max_rollouts_ahead: float = Field(
        2.0,
        gt=0,
        description="actors wait while they have produced this many of the learner's rollouts (its"
        " PolicyUpdate.rollout_samples) more than it has trained: bounds the backlog and the policy lag",
    )
    curriculum: CurriculumSettings = Field(default_factory=CurriculumSettings)
    smoke_episodes: int = Field(20, ge=1, description="episodes of a smoke run unless StartRun says")
    phases: PhaseSettings = Field(default_factory=PhaseSettings)
    leases: LeaseSettings = Field(default_factory=LeaseSettings)
    money: MoneySettings = Field(default_factory=MoneySettings, description="phases 3-4 on the ad platform")

