"""What the orchestrator's actors and the learner must agree on: the algorithm and its settings.

Both sides build the same policy network from these settings (the actors for inference, the learner
for training), so they live in one shared section.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class TrainingSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    algorithm: Literal["ppo", "sac", "dqn"] = Field("ppo", description="the learner's algorithm")
    seed: int = Field(0, description="seeds networks, samplers and environments")
    space_entry_point: str = Field(
        "gaelp.sim:make_ad_env",
        description="module:callable building an env whose spaces are the policy's input and output",
    )
    hyperparameters: dict[Literal["ppo", "sac", "dqn"], dict[str, Any]] = Field(
        default_factory=dict,
        description="per algorithm, overrides of its config (gaelp.rl PPOConfig / SACConfig / DQNConfig)",
    )

    def algorithm_config(self) -> dict[str, Any]:
        """The overrides of the configured algorithm."""
        return dict(self.hyperparameters.get(self.algorithm, {}))
