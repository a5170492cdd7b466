"""Phase-2 evaluator: score gaelp policies on logged data and compare with the simulator.

For each policy, the logs say (by off-policy evaluation) how many clicks per campaign-hour its
creative/audience choices earn in the logged market, at the states the logging policy visited; the
training simulator predicts the same quantity: the policy's arm at each state the logging policy
visits in the simulator (gaelp.sim.historical.ad_logs.value_on_logged_states). Running the policy
on its own trajectory would be another quantity (its arms change the budget it has left and the
history it sees), which the logs cannot estimate. With `calibrated`, the simulator level is first
fitted to the logs (gaelp.sim.historical.calibration) and predicts as calibrated. The phase-2 gate
reads three figures over a set of policies:
    match       1 - mean relative gap between prediction and the logs' DR estimate
    accuracy    share of policies whose prediction is within `tolerance` of that estimate
    correlation Pearson correlation of predictions and estimates across policies
Entry point for the environment registry: gaelp.sim.historical.evaluator:make_historical_evaluator.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from gaelp.sim.historical.ad_logs import (
    LoggedAdData,
    LoggingSetup,
    PolicyValue,
    generate_ad_logs,
    value_on_logged_states,
)
from gaelp.sim.historical.calibration import Calibration, calibrate
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
        self,
        logs: LoggedAdData,
        simulator: LevelSpec = 1,
        ridge: float = 1.0,
        n_bootstrap: int = 300,
        n_refit_bootstrap: int = 100,
        calibrated: bool = False,
        calibration_seed: int = 0,
    ) -> None:
        self.logs = logs
        level = resolve_market_config(simulator)
        # The fit of the level to the logs, when calibrated; the simulator then predicts as fitted.
        self.calibration: Calibration | None = (
            calibrate(level, logs, calibration_seed) if calibrated else None
        )
        self.simulator_config: MarketConfig = self.calibration.config if self.calibration else level
        self.n_bootstrap = n_bootstrap
        self.n_refit_bootstrap = n_refit_bootstrap
        self.ridge = ridge
        self._design = self._row_space_design(logs.obs)
        self._arm_rows = [np.flatnonzero(logs.arm == arm) for arm in range(logs.num_arms)]
        self._coefficients = self._fit_reward_model(np.ones(logs.obs.shape[0]))
        self._refits: dict[bytes, np.ndarray] = {}

    @staticmethod
    def _row_space_design(obs: np.ndarray) -> np.ndarray:
        """[1, obs] expressed in an orthonormal basis of its row space.

        The ridge penalty is rotation-invariant and a coefficient outside the row space changes no
        logged row's prediction, so the per-arm ridge fits on these columns predict exactly what
        they would on [1, obs]; constant and collinear features drop out (about 90 of 129 columns
        remain), which makes the bootstrap's refits cheaper."""
        x = np.hstack([np.ones((obs.shape[0], 1)), obs.astype(np.float64)])
        _, singular, vt = np.linalg.svd(x, full_matrices=False)
        rank = int((singular > singular[0] * 1e-10).sum())
        return np.asarray(x @ vt[:rank].T)

    def _fit_reward_model(self, row_weights: np.ndarray) -> np.ndarray:
        """Ridge regression of the reward on the observation, one per arm, on rows weighted by
        row_weights (bootstrap counts when the DM/DR intervals refit it): (num_arms, columns)."""
        d = self._design.shape[1]
        coefficients = np.zeros((self.logs.num_arms, d))
        for arm, rows in enumerate(self._arm_rows):
            xa = self._design[rows]
            weighted = xa * row_weights[rows, None]
            # einsum, not matmul: on these small matrices BLAS's thread start-up costs more than
            # the product, and far more on a loaded machine (measured 10x slower per refit).
            gram = np.einsum("ij,ik->jk", weighted, xa)
            coefficients[arm] = np.linalg.solve(
                gram + self.ridge * np.eye(d), weighted.T @ self.logs.reward[rows]
            )
        return coefficients

    def _refit_reward_model(self, row_weights: np.ndarray) -> np.ndarray:
        """(n, num_arms) predictions of the model refitted on a bootstrap draw. The refit does not
        depend on the evaluated policy, so each draw is fitted once and reused for every policy."""
        key = hashlib.blake2b(row_weights.tobytes(), digest_size=16).digest()
        if key not in self._refits:
            self._refits[key] = self._fit_reward_model(row_weights)
        return np.asarray(self._design @ self._refits[key].T)

    def _policy_arms(self, factory: PolicyFactory) -> np.ndarray:
        n = self.logs.obs.shape[0]
        env = AdMarketVectorEnv(num_envs=n, level=self.simulator_config, seed=0)
        env.reset(seed=0)
        actions = factory(env)(self.logs.obs, {})
        return np.asarray(actions["creative"]) * self.logs.num_audiences + np.asarray(actions["audience"])

    def score_on_logs(self, factory: PolicyFactory, seed: int = 0) -> dict[str, Estimate]:
        """IPW, SNIPW, DM and DR estimates of the policy's clicks per campaign-hour in the logs.

        Intervals resample campaigns (the logs' clusters); the DM and DR ones also refit the reward
        model on each resample, so that they carry the model's estimation error."""
        n = self.logs.obs.shape[0]
        arms = self._policy_arms(factory)
        action_dist = np.zeros((n, self.logs.num_arms))
        action_dist[np.arange(n), arms] = 1.0
        data = OffPolicyInput(
            reward=self.logs.reward,
            action=self.logs.arm,
            pscore=self.logs.pscore,
            action_dist=action_dist,
            estimated_rewards=self._design @ self._coefficients.T,
            cluster=self.logs.campaign,
        )
        return estimate_all(
            data,
            n_bootstrap=self.n_bootstrap,
            seed=seed,
            refit=self._refit_reward_model,
            n_refit_bootstrap=self.n_refit_bootstrap,
        )

    def simulator_prediction(
        self, factory: PolicyFactory, num_envs: int = 256, days: int = 2, seed: int = 0
    ) -> float:
        """Clicks per campaign-hour the training simulator predicts for the policy's arm choices at
        the states a logging policy visits there, with the logs' fixed continuous actions."""
        return policy_value(factory, self.simulator_config, num_envs, days, seed, self.logs.setup).value

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


def policy_value(
    factory: PolicyFactory,
    market: LevelSpec,
    num_campaigns: int,
    days: int,
    seed: int,
    setup: LoggingSetup | None = None,
) -> PolicyValue:
    """A policy's clicks per campaign-hour in a market at the states the logging policy visits there:
    the quantity that the off-policy estimators estimate from logs of that market."""
    env = AdMarketVectorEnv(num_envs=num_campaigns, level=market, seed=seed)
    policy = factory(env)
    env.reset(seed=seed)
    num_audiences = env.core.world.num_audiences

    def choose(obs: np.ndarray) -> np.ndarray:
        chosen = policy(obs, {})
        return np.asarray(chosen["creative"]) * num_audiences + np.asarray(chosen["audience"])

    return value_on_logged_states(env.batch, choose, days, seed, setup)


def make_historical_evaluator(
    simulator: LevelSpec = 1,
    logged_market: MarketConfig | None = None,
    num_campaigns: int = 256,
    days: int = 2,
    seed: int = 0,
    calibrated: bool = False,
) -> HistoricalEvaluator:
    """Entry point: logs from the sandbox's market (unless given), evaluated against a simulator level
    (calibrated on the logs first when `calibrated`)."""
    logs = generate_ad_logs(logged_market or sandbox_market_config(), num_campaigns, days, seed)
    return HistoricalEvaluator(logs, simulator, calibrated=calibrated)
