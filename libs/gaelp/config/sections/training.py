"""What the orchestrator's actors and the learner must agree on: the algorithm and its settings.

Both sides build the same policy network from these settings (the actors for inference, the learner
for training), so they live in one shared section.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from gaelp.config.sections.algorithms import ALGORITHM_CONFIGS
from gaelp.entry_points import load_entry_point


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
