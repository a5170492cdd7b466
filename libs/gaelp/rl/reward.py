"""Weighted multi-objective reward for the ad action (docs/architecture.md, "The ad action").

Environments report each component separately; this module turns them into the scalar the agents
optimize. Weights live in config so that a run can change what it optimizes without code changes.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

REWARD_COMPONENTS: tuple[str, ...] = (
    "roas",
    "ctr",
    "conversions",
    "brand_safety",
    "budget_efficiency",
    "exploration",
    "diversity",
    "constraint_penalty",
)


class RewardWeights(BaseModel):
    """Weight of each reward component. Penalties are reported as positive numbers and subtracted."""

    model_config = ConfigDict(extra="forbid")

    roas: float = Field(1.0, description="return on ad spend, revenue / spend, clipped by the env")
    ctr: float = Field(0.2, description="click-through rate relative to the task's reference CTR")
    conversions: float = Field(0.3, description="conversions this step, scaled by the env")
    brand_safety: float = Field(0.1, description="1 when the creative/placement is brand safe, else 0")
    budget_efficiency: float = Field(0.2, description="share of the budget turned into results")
    exploration: float = Field(0.0, description="bonus for trying rarely used discrete actions")
    diversity: float = Field(0.0, description="bonus for spreading spend across audiences")
    constraint_penalty: float = Field(1.0, description="subtracted: overspend, bid above cap, unsafe")


class RewardEngine:
    """Combines per-component arrays (any shape, same for all) into the scalar reward."""

    def __init__(self, weights: RewardWeights | None = None) -> None:
        self.weights = weights or RewardWeights()

    def contributions(self, components: Mapping[str, np.ndarray | float]) -> dict[str, np.ndarray]:
        """Signed weighted value of each given component (what `combine` sums), for reporting."""
        unknown = set(components) - set(REWARD_COMPONENTS)
        if unknown:
            raise ValueError(f"unknown reward components: {sorted(unknown)}")
        out: dict[str, np.ndarray] = {}
        for name, value in components.items():
            weight = getattr(self.weights, name)
            signed = -weight if name == "constraint_penalty" else weight
            out[name] = signed * np.asarray(value, dtype=np.float64)
        return out

    def combine(self, components: Mapping[str, np.ndarray | float]) -> np.ndarray:
        total: np.ndarray | float = 0.0
        for contribution in self.contributions(components).values():
            total = total + contribution
        return np.asarray(total, dtype=np.float64)
