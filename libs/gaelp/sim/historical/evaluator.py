"""Phase-2 evaluator: score gaelp policies on logged data and compare with the simulator.

For each policy, the logs say (by off-policy evaluation) how many clicks per campaign-hour its
creative/audience choices earn in the logged market; the training simulator predicts the same
quantity by running the policy. The phase-2 gate reads three figures over a set of policies:
    match       1 - mean relative gap between prediction and the logs' DR estimate
    accuracy    share of policies whose prediction is within `tolerance` of that estimate
    correlation Pearson correlation of predictions and estimates across policies
Entry point for the environment registry: gaelp.sim.historical.evaluator:make_historical_evaluator.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from gaelp.sim.historical.ad_logs import LoggedAdData, fixed_continuous_actions, generate_ad_logs
from gaelp.sim.historical.ope import Estimate, OffPolicyInput, estimate_all
from gaelp.sim.market.config import MarketConfig, resolve_market_config
from gaelp.sim.market.env import AdMarketVectorEnv, LevelSpec
from gaelp.sim.market.policies import PolicyFactory
from gaelp.sim.platform.sandbox_market import sandbox_market_config


@dataclass(frozen=True)
class PolicyGap:
    name: str
    predicted: float  # simulator: clicks per campaign-hour
    logged: Estimate  # DR estimate from the logs
    estimates: dict[str, Estimate]


@dataclass(frozen=True)
class GateFigures:
    match: float
    accuracy: float
    correlation: float
    policies: list[PolicyGap]


class HistoricalEvaluator:
    def __init__(
        self, logs: LoggedAdData, simulator: LevelSpec = 1, ridge: float = 1.0, n_bootstrap: int = 300
    ) -> None:
        self.logs = logs
        self.simulator_config: MarketConfig = resolve_market_config(simulator)
        self.n_bootstrap = n_bootstrap
        self._coefficients = self._fit_reward_model(ridge)

    def _fit_reward_model(self, ridge: float) -> np.ndarray:
        """Ridge regression of the reward on the observation, one per arm: (num_arms, 129)."""
        x = np.hstack([np.ones((self.logs.obs.shape[0], 1)), self.logs.obs.astype(np.float64)])
        coefficients = np.zeros((self.logs.num_arms, x.shape[1]))
        for arm in range(self.logs.num_arms):
            rows = self.logs.arm == arm
            xa = x[rows]
            coefficients[arm] = np.linalg.solve(
                xa.T @ xa + ridge * np.eye(x.shape[1]), xa.T @ self.logs.reward[rows]
            )
        return coefficients

    def _policy_arms(self, factory: PolicyFactory) -> np.ndarray:
        n = self.logs.obs.shape[0]
        env = AdMarketVectorEnv(num_envs=n, level=self.simulator_config, seed=0)
        env.reset(seed=0)
        actions = factory(env)(self.logs.obs, {})
        return np.asarray(actions["creative"]) * self.logs.num_audiences + np.asarray(actions["audience"])

    def score_on_logs(self, factory: PolicyFactory, seed: int = 0) -> dict[str, Estimate]:
        """IPW, SNIPW, DM and DR estimates of the policy's clicks per campaign-hour in the logs."""
        n = self.logs.obs.shape[0]
        arms = self._policy_arms(factory)
        action_dist = np.zeros((n, self.logs.num_arms))
        action_dist[np.arange(n), arms] = 1.0
        x = np.hstack([np.ones((n, 1)), self.logs.obs.astype(np.float64)])
        data = OffPolicyInput(
            reward=self.logs.reward,
            action=self.logs.arm,
            pscore=self.logs.pscore,
            action_dist=action_dist,
            estimated_rewards=x @ self._coefficients.T,
        )
        return estimate_all(data, n_bootstrap=self.n_bootstrap, seed=seed)

    def simulator_prediction(
        self, factory: PolicyFactory, num_envs: int = 256, days: int = 2, seed: int = 0
    ) -> float:
        """Clicks per campaign-hour the training simulator predicts for the policy's arm choices."""
        env = AdMarketVectorEnv(num_envs=num_envs, level=self.simulator_config, seed=seed)
        policy = factory(env)
        env.reset(seed=seed)
        clicks = 0.0
        for _ in range(days):
            obs, info = env.batch.reset(), dict[str, object]()
            for _ in range(self.simulator_config.episode_length):
                chosen = policy(obs, info)
                actions = fixed_continuous_actions(num_envs, self.logs.setup)
                actions |= {"creative": chosen["creative"], "audience": chosen["audience"]}
                obs, _, _, info = env.batch.step(actions)
                outcome = env.batch.tracker.last_outcome
                assert outcome is not None  # set by the step just taken
                clicks += float(outcome.clicks.sum())
        return clicks / (num_envs * days * self.simulator_config.episode_length)

    def gate_figures(self, policies: Mapping[str, PolicyFactory], tolerance: float = 0.15) -> GateFigures:
        gaps = []
        for name, factory in policies.items():
            estimates = self.score_on_logs(factory)
            gaps.append(PolicyGap(name, self.simulator_prediction(factory), estimates["dr"], estimates))
        predicted = np.array([g.predicted for g in gaps])
        logged = np.array([g.logged.estimate for g in gaps])
        relative_gap = np.abs(predicted - logged) / np.maximum(np.abs(logged), 1e-12)
        correlation = float(np.corrcoef(predicted, logged)[0, 1]) if len(gaps) > 1 else float("nan")
        return GateFigures(
            match=float(max(0.0, 1.0 - relative_gap.mean())),
            accuracy=float((relative_gap <= tolerance).mean()),
            correlation=correlation,
            policies=gaps,
        )


def make_historical_evaluator(
    simulator: LevelSpec = 1,
    logged_market: MarketConfig | None = None,
    num_campaigns: int = 256,
    days: int = 2,
    seed: int = 0,
) -> HistoricalEvaluator:
    """Entry point: logs from the sandbox's market (unless given), evaluated against a simulator level."""
    logs = generate_ad_logs(logged_market or sandbox_market_config(), num_campaigns, days, seed)
    return HistoricalEvaluator(logs, simulator)
