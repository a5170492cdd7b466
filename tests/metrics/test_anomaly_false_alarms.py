"""The anomaly rule on real simulator episodes: quiet on a healthy, improving run; loud on a real collapse.

No broker: the episodes are played on the ad-market simulator and folded into the metrics state as
the service folds them (metrics.state.apply_episode, default settings). The improving policy mixes
the heuristic into random play per campaign and step, its share rising over each stay on a task,
through the curriculum's tasks with one return to an earlier task (as a curriculum regression
does). The collapse: the same run whose policy then diverges on the task it is on (every output at
the top of its range: top bid, full budget).
(The false-alarm count of PPO training through the whole curriculum: benchmarks/anomaly_false_alarms.py.)
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import pytest

from gaelp.config.sections.metrics import MetricsSettings
from gaelp.rl.rollout import FinishedEpisode
from gaelp.sim import CURRICULUM_LEVELS, AdMarketVectorEnv
from gaelp.sim.market.policies import Policy, PolicyFactory, heuristic_policy, random_policy
from gaelp.v1 import events_pb2
from metrics.anomaly import Alert
from metrics.state import RunState, apply_episode
from orchestrator.evaluation import reference_scores
from orchestrator.messages import episode_summary

LANES = 32
ROUNDS_PER_STAY = 12  # one episode per campaign per round: 384 episodes a stay
REFERENCE_ENVS = 8


class ImprovingRun:
    """Plays stays on tasks; the heuristic's share of the actions rises from `start` to `end`."""

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed
        self.episodes: list[events_pb2.EpisodeSummary] = []
        self._references: dict[int, dict[str, float]] = {}

    def stay(self, level: int, start: float, end: float, rounds: int = ROUNDS_PER_STAY,
             policy: PolicyFactory = heuristic_policy) -> None:
        """`policy` (the heuristic unless told) plays a share of the campaigns, random play the rest."""
        if level not in self._references:
            self._references[level] = reference_scores(level, REFERENCE_ENVS)
        refs = self._references[level]
        self.seed += 1
        env = AdMarketVectorEnv(num_envs=LANES, level=level, seed=self.seed)
        rng = np.random.default_rng(self.seed)
        skilled_play, random_play = policy(env), random_policy(env)
        obs, info = env.reset(seed=self.seed)
        returns = np.zeros(LANES)
        for round_index in range(rounds):
            share = start + (end - start) * round_index / max(rounds - 1, 1)
            while True:
                skilled = rng.random(LANES) < share
                chosen, fallback = skilled_play(obs, info), random_play(obs, info)
                actions = {key: np.where(skilled.reshape((LANES,) + (1,) * (value.ndim - 1)), value,
                                         fallback[key]) for key, value in chosen.items()}
                obs, reward, terminated, truncated, info = env.step(actions)
                returns += reward
                if (terminated | truncated).any():
                    break
            metrics = info["episode_metrics"]
            for lane in range(LANES):
                episode = FinishedEpisode(lane=lane, steps=env.config.episode_length,
                                          total_reward=float(returns[lane]),
                                          metrics={k: float(v[lane]) for k, v in metrics.items()},
                                          reward_components={})
                self.episodes.append(episode_summary(
                    episode, "healthy", "healthy-actor-0", self.seed,
                    CURRICULUM_LEVELS[level].name, refs, curriculum_level=level + 1,
                    curriculum_levels=len(CURRICULUM_LEVELS)))
            returns.fill(0.0)
        env.close()


def saturated_policy(env: AdMarketVectorEnv) -> Policy:
    """A diverged network: every output at the top of its range (top bid, full budget, widest audience)."""
    space = env.single_action_space
    assert isinstance(space, gym.spaces.Dict)

    def act(obs: np.ndarray, info: dict[str, Any]) -> dict[str, np.ndarray]:
        actions = {}
        for key, part in space.spaces.items():
            if isinstance(part, gym.spaces.Box):
                actions[key] = np.broadcast_to(part.high, (len(obs), *part.shape)).astype(part.dtype)
            else:
                actions[key] = np.zeros(len(obs), dtype=np.int64)
        return actions

    return act


def _alerts(episodes: list[events_pb2.EpisodeSummary]) -> list[Alert]:
    settings = MetricsSettings()
    run = RunState(run_id="healthy")
    return [alert for offset, episode in enumerate(episodes)
            for alert in apply_episode(run, episode, 0, offset, settings)]


@pytest.fixture(scope="module")
def healthy() -> ImprovingRun:
    run = ImprovingRun()
    run.stay(0, 0.0, 1.0)
    run.stay(1, 0.3, 0.9)
    run.stay(2, 0.2, 0.6)
    run.stay(1, 0.6, 1.0)  # a regression: back to the prerequisite, then on again
    run.stay(2, 0.5, 1.0)
    run.stay(3, 0.3, 1.0)
    return run


def test_a_healthy_improving_run_raises_no_alert(healthy: ImprovingRun) -> None:
    assert len(healthy.episodes) == 6 * LANES * ROUNDS_PER_STAY
    assert _alerts(healthy.episodes) == []


def test_a_diverged_policy_raises_a_collapse_alert(healthy: ImprovingRun) -> None:
    collapsed = ImprovingRun(seed=100)
    collapsed.episodes = list(healthy.episodes)
    collapsed.stay(3, 1.0, 1.0, rounds=4)
    collapsed.stay(3, 1.0, 1.0, rounds=2, policy=saturated_policy)  # the policy diverged on the same task
    alerts: list[Any] = _alerts(collapsed.episodes)
    assert alerts, "a policy that overspends at the top bid must alert"
    assert {alert.metric for alert in alerts} & {"normalized_reward", "roas"}
    assert all(alert.episode_index > len(healthy.episodes) for alert in alerts)
