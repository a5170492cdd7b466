"""Warm start of a run's policy: behaviour cloning of a sandbox-market teacher before version 0.

The learner builds a run's agent, clones the teacher's actions into that very policy network
(gaelp.rl.algorithms.bc), and only then publishes the run's first policy, so the actors' first
episodes already follow the clone and PPO fine-tunes it from there.
"""

from __future__ import annotations

import logging

from gaelp.config.sections.learner import WarmStartSettings
from gaelp.rl.algorithms.base import Agent
from gaelp.rl.algorithms.bc import BehaviourCloningConfig, behaviour_cloning, collect_demonstrations
from gaelp.sim import AdMarketVectorEnv
from gaelp.sim.market.policies import REFERENCE_POLICIES

logger = logging.getLogger(__name__)


def warm_start(agent: Agent, settings: WarmStartSettings, seed: int) -> dict[str, float]:
    """Clone `settings.teacher` into `agent.policy`; the behaviour-cloning losses."""
    teacher = REFERENCE_POLICIES.get(settings.teacher)
    if teacher is None:
        known = sorted(REFERENCE_POLICIES)
        raise ValueError(f"unknown warm-start teacher {settings.teacher!r}; known: {known}")
    env = AdMarketVectorEnv(num_envs=settings.envs, level=settings.level, seed=seed)
    if env.single_action_space != agent.action_space:
        raise ValueError("warm start clones a sandbox-market teacher: the policy must act in that market")
    steps = max(1, settings.demo_steps // settings.envs)
    obs, actions = collect_demonstrations(agent, env, teacher(env), steps, seed)
    stats = behaviour_cloning(agent, obs, actions, BehaviourCloningConfig(epochs=settings.epochs))
    logger.info("policy warm-started by behaviour cloning",
                extra={"teacher": settings.teacher, "demonstrations": len(obs), **stats})
    return stats
