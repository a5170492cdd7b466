"""Phase-2 figures for an agent's own policy on logs whose truth is known.

When the logs come from the simulator's own market, the uncalibrated simulator's prediction for a
policy is that policy's true value in the logged market, so the off-policy estimates must find it
and the figures must say the simulator matches; on the sandbox's logs (another market) they must
say it does not, until the simulator is calibrated on those logs, as phase 2 does.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from gaelp.config import load_settings
from gaelp.config.sections.orchestrator import UserLogsSettings
from gaelp.rl.factory import make_agent
from gaelp.sim.historical.ad_logs import generate_ad_logs
from gaelp.sim.historical.calibration import MOMENT_GROUPS
from gaelp.sim.historical.user_logs import write_user_logs
from gaelp.sim.market.config import curriculum_level
from gaelp.sim.market.env import AdMarketVectorEnv
from gaelp.sim.platform.sandbox_market import sandbox_market_config
from orchestrator.phase2 import AGENT, historical_figures, load_logs

LEVEL = 3


def an_agent() -> object:
    torch.manual_seed(3)
    settings = load_settings()
    env = AdMarketVectorEnv(num_envs=1, level=LEVEL, seed=0)
    return make_agent(settings.training.algorithm, env.single_observation_space, env.single_action_space,
                      settings.training.algorithm_config(), device="cpu", seed=3)


def test_on_the_simulators_own_market_the_estimates_find_the_agents_true_value() -> None:
    agent = an_agent()
    figures = historical_figures(agent, LEVEL, campaigns=96, days=2, seed=5, tolerance=0.15,
                                 logged_market=curriculum_level(LEVEL), calibrated=False)
    truth = figures.predicted[AGENT]
    for name in ("snipw", "dr"):
        estimate = figures.estimates[AGENT][name]
        assert estimate.ci_low <= truth <= estimate.ci_high, (name, estimate, truth)
    assert figures.historical_match >= 0.9, figures.flat()
    assert figures.prediction_correlation >= 0.8, figures.flat()
    assert set(figures.estimates[AGENT]) == {"ipw", "snipw", "dm", "dr"}


def test_on_the_sandbox_logs_the_sim_to_real_gap_shows() -> None:
    agent = an_agent()
    own = historical_figures(agent, LEVEL, 96, 2, 5, 0.15, logged_market=curriculum_level(LEVEL),
                             calibrated=False)
    sandbox = historical_figures(agent, LEVEL, 96, 2, 5, 0.15, calibrated=False)
    assert sandbox.historical_match < own.historical_match
    assert sandbox.prediction_accuracy <= own.prediction_accuracy
    assert sandbox.calibration is None and not any(key.startswith("calibration_") for key in sandbox.flat())


def test_calibrated_on_the_sandbox_logs_the_simulator_predicts_them() -> None:
    """Phase 2 as the orchestrator runs it (its simulator level, calibrated) on a small sample."""
    agent = an_agent()
    level = load_settings().orchestrator.phases.historical.simulator_level
    uncalibrated = historical_figures(agent, level, 64, 2, 3, 0.15, calibrated=False)
    calibrated = historical_figures(agent, level, 64, 2, 3, 0.15)
    assert calibrated.historical_match > uncalibrated.historical_match, (uncalibrated, calibrated)
    assert calibrated.historical_match >= 0.9, calibrated.flat()
    flat = calibrated.flat()
    assert set(uncalibrated.flat()) < set(flat)  # the figures as before, and the calibration
    assert calibrated.calibration is not None
    for name, value in calibrated.calibration.parameters.items():
        assert flat[f"calibration_{name}"] == value
    assert flat["calibration_loss"] < flat["calibration_uncalibrated_loss"]
    assert {f"calibration_error_{group}" for group in MOMENT_GROUPS} <= set(flat)


def test_a_users_log_file_scores_the_policy_as_the_logs_it_was_written_from(tmp_path: Path) -> None:
    """The sandbox's logs written as a user's file (the documented format) and read back through
    phase 2's settings give the same figures, calibration included, as the logs themselves."""
    agent = an_agent()
    level = load_settings().orchestrator.phases.historical.simulator_level
    logs = generate_ad_logs(sandbox_market_config(), num_campaigns=16, days=1, seed=4)
    write_user_logs(logs, tmp_path / "logs.csv")
    account = logs.account
    assert account is not None
    settings = UserLogsSettings(file=tmp_path / "logs.csv", max_daily_budget=account.max_daily_budget,
                                target_roas=account.target_roas, bid_cap=account.bid_cap)
    from_file = historical_figures(agent, level, 0, 0, 0, 0.15, logs=load_logs(settings, level))
    direct = historical_figures(agent, level, 0, 0, 0, 0.15, logs=logs)
    assert from_file.flat() == direct.flat()
    assert from_file.calibration is not None


def test_a_log_file_without_platform_reports_is_scored_uncalibrated(tmp_path: Path) -> None:
    agent = an_agent()
    level = load_settings().orchestrator.phases.historical.simulator_level
    logs = generate_ad_logs(sandbox_market_config(), num_campaigns=16, days=1, seed=4)
    write_user_logs(dataclasses.replace(logs, impressions=None, spend=None, conversions=None),
                    tmp_path / "logs.csv")
    figures = historical_figures(agent, level, 0, 0, 0, 0.15,
                                 logs=load_logs(UserLogsSettings(file=tmp_path / "logs.csv"), level))
    assert figures.calibration is None
    assert set(figures.estimates[AGENT]) == {"ipw", "snipw", "dm", "dr"}
    assert 0.0 <= figures.historical_match <= 1.0
