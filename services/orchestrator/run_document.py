"""A run's persisted state: everything needed to resume it where it was after a restart."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from google.protobuf.timestamp_pb2 import Timestamp
from pydantic import BaseModel, Field

from gaelp.v1 import common_pb2, events_pb2, orchestrator_pb2

RunKind = Literal["train", "smoke"]
RunState = Literal["running", "paused", "awaiting_approval", "completed", "failed"]


class CurriculumDocument(BaseModel):
    task_index: int = 0
    episodes_on_task: int = 0
    steps_on_task: int = 0
    window: list[float] = Field(default_factory=list)
    history: list[dict[str, object]] = Field(default_factory=list)


class LevelReportDocument(BaseModel):
    task: str
    level: int
    agent_start: float
    agent_end: float = 0.0
    random: float
    heuristic: float
    oracle_roas: float
    agent_reward_start: float = 0.0
    agent_reward_end: float = 0.0
    random_reward: float = 0.0
    heuristic_reward: float = 0.0
    oracle_reward: float = 0.0
    episodes: int = 0
    env_steps: int = 0
    decision: str = ""


class CriterionDocument(BaseModel):
    name: str
    value: float
    threshold: float
    comparison: str
    passed: bool


class PhaseTransitionDocument(BaseModel):
    """One phase transition; to_phase 0 (unspecified) means the run completed its last phase."""

    at: float  # seconds since the epoch
    from_phase: int
    to_phase: int
    reason: str
    criteria: list[CriterionDocument] = Field(default_factory=list)
    policy_version: int = 0

    def message(self) -> orchestrator_pb2.PhaseHistoryEntry:
        at = Timestamp()
        at.FromNanoseconds(int(self.at * 1e9))
        transition = events_pb2.PhaseTransition(
            from_phase=self.from_phase,  # type: ignore[arg-type]
            to_phase=self.to_phase,  # type: ignore[arg-type]
            reason=self.reason,
            criteria=[events_pb2.CriterionResult(**c.model_dump()) for c in self.criteria],
            policy_version=self.policy_version,
        )
        return orchestrator_pb2.PhaseHistoryEntry(transition=transition, at=at)


@dataclass(frozen=True)
class PhaseEntry:
    """One entry of a run into a phase: `attempt` 1 is its first time there, each re-entry (after a
    demotion, a graduation back) one more; `entered_at` is the transition's time (0 for the phase a
    run was created or stored in: its whole life so far). Money records, reservation keys and the
    metrics service's assessment of the phase belong to one entry."""

    attempt: int
    entered_at: float

    def stamp(self, episode: events_pb2.EpisodeSummary) -> events_pb2.EpisodeSummary:
        """The episode names this entry (the metrics service assesses the phase's current entry)."""
        episode.phase_entry = self.attempt
        if self.entered_at > 0:
            episode.phase_entered_at.FromNanoseconds(int(self.entered_at * 1e9))
        return episode


FIRST_ENTRY = PhaseEntry(attempt=1, entered_at=0.0)


class RunDocument(BaseModel):
    run_id: str
    kind: RunKind = "train"
    state: RunState = "running"
    phase: int = common_pb2.PHASE_SIMULATION
    seed: int = 0
    max_env_steps: int = 0
    smoke_episodes: int = 0
    episodes: int = 0
    failed_episodes: int = 0
    env_steps: int = 0
    batches_published: int = 0
    actor_batches: list[int] = Field(default_factory=list)
    policy_version: int = 0
    curriculum: CurriculumDocument = Field(default_factory=CurriculumDocument)
    levels: list[LevelReportDocument] = Field(default_factory=list)
    references: dict[int, dict[str, float]] = Field(default_factory=dict)
    detail: str = ""
    phase_entry_policy_version: int = 0  # the policy version that entered the current phase
    phase_history: list[PhaseTransitionDocument] = Field(default_factory=list)
    campaign_ids: list[str] = Field(default_factory=list)  # platform campaigns the run drives
    phase_work_done: bool = False  # the current phase's own work is done; it waits for a decision
    historical: dict[str, float] = Field(default_factory=dict)  # phase-2 figures and OPE estimates
    consolidation_env_steps: int = 0  # steps on the last task since the curriculum completed

    def phase_entry(self, phase: int | None = None) -> PhaseEntry:
        """The latest entry into `phase` (default: the current phase), derived from phase_history:
        the phase the run started in counts as its first entry, each transition into it as one more."""
        phase = self.phase if phase is None else phase
        started_in = self.phase_history[0].from_phase if self.phase_history else self.phase
        entries = [entry.at for entry in self.phase_history if entry.to_phase == phase]
        attempt = len(entries) + int(started_in == phase)
        return PhaseEntry(attempt=max(attempt, 1), entered_at=entries[-1] if entries else 0.0)

    def status(self, task: str, window_mean: float, task_budget: int) -> orchestrator_pb2.RunStatus:
        return orchestrator_pb2.RunStatus(
            run_id=self.run_id,
            state=self.state,
            phase=self.phase,  # type: ignore[arg-type]
            task=task,
            episodes=self.episodes,
            env_steps=self.env_steps,
            policy_version=self.policy_version,
            batches_published=self.batches_published,
            detail=self.detail,
            kind=self.kind,
            levels=[orchestrator_pb2.LevelReport(**level.model_dump()) for level in self.levels],
            window_mean=window_mean,
            task_episodes=self.curriculum.episodes_on_task,
            task_env_steps=self.curriculum.steps_on_task,
            task_step_budget=task_budget,
            failed_episodes=self.failed_episodes,
            max_env_steps=self.max_env_steps,
            phase_history=[entry.message() for entry in self.phase_history],
            phase_work_done=self.phase_work_done,
            consolidation_env_steps=self.consolidation_env_steps,
            historical=self.historical,
        )
