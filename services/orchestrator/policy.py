"""The newest policy of a run, as actors use it for batched inference on the CPU.

The policy state carries what the agent needs to act as the learner's would: weights, observation
statistics and the env-step count its exploration schedule reads (DQN's epsilon, SAC's warm-up).
Updates arrive at any time (policy topic, Learner.GetPolicy) and are only offered; the run loads
the newest offer between rounds of collection, so no actor thread ever infers with half-loaded
weights, and each chunk is tagged with the one version that produced it.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import gymnasium as gym

from gaelp.config.sections.training import TrainingSettings
from gaelp.rl.algorithms.base import Agent
from gaelp.rl.factory import make_agent
from gaelp.v1 import events_pb2


def policy_weights(update: events_pb2.PolicyUpdate) -> bytes:
    if update.WhichOneof("payload") == "weights":
        return update.weights
    uri = urlparse(update.checkpoint_uri)
    if uri.scheme != "file":
        raise ValueError(f"unsupported policy checkpoint URI {update.checkpoint_uri!r}")
    return Path(uri.path).read_bytes()


# The weights come from the learner; the seed only sets the actors' exploration streams. Seeded
# like the learner's agent, an actor's noise repeats the learner's own draws (replay minibatches,
# SAC's action noise), and SAC then learns nothing: actors draw from streams of their own.
ACTOR_SEED_OFFSET = 1_000_003


class PolicyHolder:
    def __init__(self, training: TrainingSettings, observation_space: gym.Space[Any],
                 action_space: gym.Space[Any]) -> None:
        self.agent: Agent = make_agent(training.agent_name(), observation_space, action_space,
                                       training.algorithm_config(), device="cpu",
                                       seed=training.seed + ACTOR_SEED_OFFSET)
        self.version = -1
        self.rollout_samples = 0  # the learner's transitions per version (0: no pacing)
        self._offer: events_pb2.PolicyUpdate | None = None
        self._offered = asyncio.Condition()

    @property
    def newest_offered(self) -> int:
        return self._offer.version if self._offer is not None else self.version

    async def offer(self, update: events_pb2.PolicyUpdate) -> None:
        if update.version > self.newest_offered:
            self._offer = update
            async with self._offered:
                self._offered.notify_all()

    def apply_offer(self) -> bool:
        """Load the newest offered version; True when the policy changed."""
        offer, self._offer = self._offer, None
        if offer is None or offer.version <= self.version:
            return False
        try:
            weights = policy_weights(offer)
        except FileNotFoundError:
            # The learner keeps its newest policy files only: this one was pruned, so a newer
            # version is out (policy topic, WatchPolicy) and is offered next.
            return False
        self.agent.load_policy_state(weights)
        self.version = offer.version
        self.rollout_samples = offer.rollout_samples
        return True

    async def wait_for_offer_above(self, version: int, timeout_s: float) -> bool:
        async with self._offered:
            try:
                await asyncio.wait_for(
                    self._offered.wait_for(lambda: self.newest_offered > version), timeout_s
                )
            except TimeoutError:
                return False
        return True
