"""Runs episodes of a gymnasium environment and turns each into an EpisodeSummary."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import gymnasium as gym
import numpy as np
from google.protobuf.timestamp_pb2 import Timestamp

from gaelp.v1 import common_pb2, events_pb2


@dataclass(frozen=True)
class EpisodeResult:
    steps: int
    total_reward: float


def run_random_episode(env: gym.Env, rng: np.random.Generator) -> EpisodeResult:
    """One episode with uniformly random actions (the reference a learning agent must beat)."""
    env.action_space.seed(int(rng.integers(2**31)))
    env.reset(seed=int(rng.integers(2**31)))
    steps, total = 0, 0.0
    while True:
        _, reward, terminated, truncated, _ = env.step(env.action_space.sample())
        steps += 1
        total += float(reward)
        if terminated or truncated:
            return EpisodeResult(steps, total)


def episode_summary(
    run_id: str, task: str, actor_id: str, policy_version: int, result: EpisodeResult
) -> events_pb2.EpisodeSummary:
    finished_at = Timestamp()
    finished_at.GetCurrentTime()
    return events_pb2.EpisodeSummary(
        run_id=run_id,
        episode_id=uuid.uuid4().hex,
        phase=common_pb2.PHASE_SIMULATION,
        task=task,
        policy_version=policy_version,
        steps=result.steps,
        total_reward=result.total_reward,
        actor_id=actor_id,
        finished_at=finished_at,
    )
