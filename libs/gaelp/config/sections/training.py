"""What the orchestrator's actors and the learner must agree on: the algorithm and its settings.

Both sides build the same policy network from these settings (the actors for inference, the learner
for training), so they live in one shared section.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from gaelp.config.sections.algorithms import ALGORITHM_CONFIGS
from gaelp.entry_points import load_entry_point


class PhaseTrainingSettings(BaseModel):
    """How the learner trains a run while it is in one phase (each TransitionBatch says its phase)."""

    model_config = ConfigDict(extra="forbid")

    update_every_episodes: int | None = Field(
        None, ge=1,
        description="an update also waits until its data holds this many finished episodes; none: the"
        " algorithm's rollout alone decides (PPO n_steps, SAC/DQN train_freq)",
    )
    epochs: int | None = Field(
        None, ge=1,
        description="passes over each update's data: PPO's n_epochs, SAC/DQN's gradient_steps; none:"
        " the algorithm's own",
    )
    learning_rate_scale: float = Field(
        1.0, gt=0, le=1, description="multiplies the algorithm's learning rate"
    )


def _default_phase_training() -> dict[int, PhaseTrainingSettings]:
    # Phase 1 trains as the algorithm's settings say; fewer, smaller steps where real money is at
    # stake (phases 3 and 4). Phase 2 scores the policy on logs and trains nothing.
    return {
        1: PhaseTrainingSettings(),
        3: PhaseTrainingSettings(update_every_episodes=8, epochs=2, learning_rate_scale=0.1),
        4: PhaseTrainingSettings(update_every_episodes=16, epochs=2, learning_rate_scale=0.1),
    }


class TrainingSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    algorithm: Literal["ppo", "sac", "dqn"] = Field("ppo", description="the learner's algorithm")
    seed: int = Field(0, description="seeds networks, samplers and environments")
    space_entry_point: str = Field(
        "gaelp.sim:make_ad_env",
        description="module:callable building an env whose spaces are the policy's input and output",
    )
    space_kwargs: dict[str, Any] = Field(
        default_factory=dict,
        description="keyword arguments of space_entry_point, e.g. {id: CartPole-v1} for gymnasium:make",
    )
    agent_entry_point: str = Field(
        "",
        description="module:Class of your own gaelp.rl.Agent subclass (docs/agents.md); when set it is"
        " trained instead of `algorithm`, with agent_config as its config",
    )
    agent_config: dict[str, Any] = Field(
        default_factory=dict, description="the config dict passed to agent_entry_point's class"
    )
    hyperparameters: dict[Literal["ppo", "sac", "dqn"], dict[str, Any]] = Field(
        default_factory=dict,
        description="per algorithm, overrides of its config (gaelp.rl PPOConfig / SACConfig / DQNConfig)",
    )

    phases: dict[int, PhaseTrainingSettings] = Field(
        default_factory=_default_phase_training,
        description="learner settings per phase (1, 3, 4; phase 2 trains nothing); a phase not named"
        " trains as phase 1",
    )

    def phase_training(self, phase: int) -> PhaseTrainingSettings:
        return self.phases.get(phase) or self.phases.get(1) or PhaseTrainingSettings()

    def algorithm_config(self) -> dict[str, Any]:
        """The overrides of the configured algorithm (or the user agent's config)."""
        if self.agent_entry_point:
            return dict(self.agent_config)
        return dict(self.hyperparameters.get(self.algorithm, {}))

    def agent_name(self) -> str:
        """What `gaelp.rl.make_agent` builds: the built-in algorithm or the user agent's entry point."""
        return self.agent_entry_point or self.algorithm

    def make_space_env(self) -> Any:
        return load_entry_point(self.space_entry_point)(**self.space_kwargs)

    @model_validator(mode="after")
    def _phases_exist(self) -> TrainingSettings:
        unknown = sorted(set(self.phases) - {1, 3, 4})
        if unknown:
            raise ValueError(f"training.phases: no training in phase(s) {unknown}; phases 1, 3 and 4 train")
        return self

    @model_validator(mode="after")
    def _algorithm_fits(self) -> TrainingSettings:
        """Settings that could not act are rejected here, naming them. Checked only for what is set
        (building a space env imports the simulator, which most services never need)."""
        if self.agent_entry_point:
            from gaelp.rl.factory import agent_class  # imports torch: only for a user agent

            agent_class(self.agent_entry_point)
            return self
        overrides = self.hyperparameters.get(self.algorithm)
        if overrides:
            try:
                ALGORITHM_CONFIGS[self.algorithm].model_validate(overrides)
            except ValidationError as error:
                problems = "; ".join(
                    f"training.hyperparameters.{self.algorithm}.{'.'.join(map(str, e['loc']))}: {e['msg']}"
                    for e in error.errors()
                )
                raise ValueError(problems) from None
        if self.algorithm == "dqn":
            import gymnasium as gym

            env = self.make_space_env()
            space = env.action_space
            env.close()
            if not isinstance(space, gym.spaces.Discrete):
                # The ad market's action is hybrid (discrete choices next to continuous bid and budget
                # levels): a grid over the continuous part would multiply the Q outputs for every
                # level; PPO and SAC act in the hybrid space directly.
                raise ValueError(
                    "training.algorithm: dqn needs a Discrete action space, and training.space_entry_point "
                    f"{self.space_entry_point!r} has {space}; use ppo or sac for the ad market's hybrid"
                    " action"
                )
        return self
