"""Phase 2, historical validation: the run's own policy scored on logged campaign data.

The logs come from the platform sandbox's market (a market unlike the training simulator), with
the logging policy's propensities, or from a user's own file (`orchestrator.phases.historical.
user_logs`, format in docs/historical_data.md; without the platform's report columns the simulator
predicts uncalibrated). The agent's policy is valued on them by IPS, SNIPS, DM and DR
with 95% intervals (gaelp.sim.historical.ope), and the training simulator predicts the same
quantity (clicks per campaign-hour) for the same policy, after it was calibrated on the same logs
(gaelp.sim.historical.calibration: a few market parameters fitted to the logging policy's logged
outcomes), as a real system would before trusting its simulator's predictions. The figures, per
compared policy p (the agent, then the heuristic and random reference policies, valued the same way):
    gap(p)                  = |simulator(p) - DR(p)| / |DR(p)|
    historical_match        = max(0, 1 - gap(agent)): how well the simulator's prediction for the
                              agent matches what the logs say the agent would have earned
    prediction_accuracy     = share of compared policies with gap(p) <= tolerance
    prediction_correlation  = Pearson correlation of simulator(p) and DR(p) over compared policies
They travel to the metrics service in an EpisodeSummary of phase 2, whose assessment gates the phase.
The run document also carries the calibration: each fitted parameter (calibration_<name>), the loss
at the fit and of the level as it was (calibration_loss, calibration_uncalibrated_loss) and each
moment group's error at the fit (calibration_error_<group>).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from gaelp.config.sections.orchestrator import UserLogsSettings
from gaelp.sim.historical.ad_logs import AccountTerms, LoggedAdData, LoggingSetup
from gaelp.sim.historical.calibration import Calibration, calibration_blocker
from gaelp.sim.historical.evaluator import HistoricalEvaluator, make_historical_evaluator
from gaelp.sim.historical.ope import Estimate
from gaelp.sim.historical.user_logs import load_user_logs
from gaelp.sim.market.config import MarketConfig
from gaelp.sim.market.env import AdMarketVectorEnv
from gaelp.sim.market.policies import heuristic_policy, random_policy
from orchestrator.evaluation import deterministic_policy

AGENT = "agent"
logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class HistoricalFigures:
    historical_match: float
    prediction_accuracy: float
    prediction_correlation: float
    predicted: dict[str, float]  # simulator's clicks per campaign-hour, per compared policy
    estimates: dict[str, dict[str, Estimate]]  # per compared policy, per estimator
    calibration: Calibration | None  # the simulator's fit to the logs; None: predicted uncalibrated

    def flat(self) -> dict[str, float]:
        """One level of names (for the run document): figures, predictions, estimates and intervals."""
        flat = {"historical_match": self.historical_match, "prediction_accuracy": self.prediction_accuracy,
                "prediction_correlation": self.prediction_correlation}
        for name, per_estimator in self.estimates.items():
            flat[f"simulator_{name}"] = self.predicted[name]
            for estimator, estimate in per_estimator.items():
                flat[f"{estimator}_{name}"] = estimate.estimate
                flat[f"{estimator}_{name}_ci_low"] = estimate.ci_low
                flat[f"{estimator}_{name}_ci_high"] = estimate.ci_high
        if self.calibration is not None:
            flat |= {f"calibration_{name}": value for name, value in self.calibration.parameters.items()}
            flat["calibration_loss"] = self.calibration.loss
            flat["calibration_uncalibrated_loss"] = self.calibration.uncalibrated_loss
            flat |= {f"calibration_error_{group}": error
                     for group, error in self.calibration.moment_errors.items()}
        return flat


def load_logs(settings: UserLogsSettings, simulator_level: int) -> LoggedAdData:
    """A user's log file, validated (LogFileError names the bad line and column) against the audiences
    of the simulator level the policy acts in."""
    num_audiences = AdMarketVectorEnv(num_envs=1, level=simulator_level, seed=0).core.world.num_audiences
    setup = LoggingSetup(bid_strategy=settings.bid_strategy, bid=settings.bid,
                         daily_budget=settings.daily_budget, audience_size=settings.audience_size)
    account = (AccountTerms(max_daily_budget=settings.max_daily_budget, target_roas=settings.target_roas,
                            bid_cap=settings.bid_cap)
               if settings.max_daily_budget is not None and settings.target_roas is not None
               and settings.bid_cap is not None else None)
    return load_user_logs(settings.file, num_audiences, setup, account)


def historical_figures(agent: Any, simulator_level: int, campaigns: int, days: int, seed: int,
                       tolerance: float, logged_market: MarketConfig | None = None,
                       calibrated: bool = True, logs: LoggedAdData | None = None) -> HistoricalFigures:
    """logged_market: the market the logs come from; None: the platform sandbox's. logs: given logs
    instead (a user's file; campaigns, days and logged_market then play no part). calibrated: the
    simulator level is fitted to the logs before it predicts (False, or logs that cannot be
    calibrated on: the level as it is)."""
    if logs is None:
        evaluator = make_historical_evaluator(simulator=simulator_level, logged_market=logged_market,
                                              num_campaigns=campaigns, days=days, seed=seed,
                                              calibrated=calibrated)
    else:
        blocker = calibration_blocker(logs) if calibrated else None
        if blocker is not None:
            logger.warning("phase 2 predicts with the simulator uncalibrated: %s", blocker)
        evaluator = HistoricalEvaluator(logs, simulator_level, calibrated=calibrated and blocker is None)
    compared = {AGENT: deterministic_policy(agent), "heuristic": heuristic_policy, "random": random_policy}
    figures = evaluator.gate_figures(compared, tolerance=tolerance)
    gaps = {gap.name: gap for gap in figures.policies}
    own = gaps[AGENT]
    match = max(0.0, 1.0 - abs(own.predicted - own.logged.estimate) / max(abs(own.logged.estimate), 1e-12))
    correlation = figures.correlation if np.isfinite(figures.correlation) else 0.0
    return HistoricalFigures(
        historical_match=float(match),
        prediction_accuracy=figures.accuracy,
        prediction_correlation=float(correlation),
        predicted={name: gap.predicted for name, gap in gaps.items()},
        estimates={name: gap.estimates for name, gap in gaps.items()},
        calibration=evaluator.calibration,
    )
