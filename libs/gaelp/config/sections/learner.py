"""Settings of the learner service."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class WarmStartSettings(BaseModel):
    """Behaviour cloning of a teacher policy into a run's policy network before its first version
    is published; PPO then fine-tunes the same network. The teacher acts in the sandbox market."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(False, description="clone the teacher before publishing a run's first policy")
    teacher: str = Field("heuristic", description="reference policy of gaelp.sim.market.policies")
    level: int = Field(0, ge=0, description="sandbox market curriculum level the teacher acts on")
    demo_steps: int = Field(12_288, ge=1, description="demonstration transitions (campaign-hours)")
    envs: int = Field(64, ge=1, description="campaigns the teacher steps as one batch")
    epochs: int = Field(20, ge=1, description="behaviour-cloning passes over the demonstrations")


class LearnerSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    grpc_port: int = 50053
    device: str = Field("auto", description="'auto' picks CUDA when present, else the CPU")
    group_id: str = Field("gaelp-learner", description="consumer group on gaelp.transitions.v1")
    max_policy_lag: int = Field(
        3, ge=0, description="on-policy batches more than this many versions old are dropped"
    )
    rollout_samples: int = Field(
        1536,
        ge=1,
        description="fewest transitions per update and policy version; an update also waits for what"
        " the agent consumes in one (PPO: n_steps x lanes, SAC/DQN: train_freq x lanes)",
    )
    checkpoint_every_updates: int = Field(5, ge=1, description="checkpoint after this many updates")
    checkpoints_kept: int = Field(3, ge=1)
    policy_inline_max_bytes: int = Field(
        1_000_000, ge=1024, description="larger weights travel as a checkpoint URI instead"
    )
    policy_files_kept: int = Field(
        16, ge=2,
        description="policy files (weights over policy_inline_max_bytes) kept per run, newest first:"
        " one per version, so without pruning they would fill the disk",
    )
    warm_start: WarmStartSettings = Field(default_factory=WarmStartSettings)
