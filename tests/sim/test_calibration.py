"""Calibration of a simulator level on logs: it recovers the parameters of the market the logs come
from, when that market is the level with parameters set here (its gap on the sandbox's logs:
test_historical_evaluator)."""

from __future__ import annotations

import pytest

from gaelp.sim.historical.ad_logs import AccountTerms, generate_ad_logs
from gaelp.sim.historical.calibration import FITTED_PARAMETERS, calibrate, calibrated_config, level_parameters
from gaelp.sim.market.config import curriculum_level
from gaelp.sim.platform.sandbox_market import sandbox_market_config

LEVEL = 2
# The logged market: level 2 with each fitted parameter moved away from the level's own value.
TRUE_PARAMETERS = {
    "first_price": 0.0,
    "competitor_median_cpm": 9.0,
    "competitor_spread": 0.8,
    "competitor_adaptation": 0.2,
    "traffic_volatility": 0.25,
    "ctr_scale": 1.2,
    "cvr_scale": 0.8,
}
# Recovery tolerance per parameter, from 96 logged campaigns over 2 days.
TOLERANCE = {
    "first_price": 0.0,
    "competitor_median_cpm": 0.75,
    "competitor_spread": 0.1,
    "competitor_adaptation": 0.1,
    "traffic_volatility": 0.05,
    "ctr_scale": 0.06,
    "cvr_scale": 0.1,
}


@pytest.mark.parametrize(("seed", "budget_cap"), [(0, 1000.0), (1, 1000.0), (1, 120.0)])
def test_calibration_recovers_the_parameters_of_the_logged_market(seed: int, budget_cap: float) -> None:
    """budget_cap 1000: the account's cap does not bind the logging budget (as in the sandbox's
    logs); 120 (level 2's): campaigns run out of budget on some days."""
    level = curriculum_level(LEVEL)
    assert all(level_parameters(level)[name] != value for name, value in TRUE_PARAMETERS.items())
    account = AccountTerms(max_daily_budget=budget_cap, target_roas=level.target_roas, bid_cap=level.bid_cap)
    market = calibrated_config(level, TRUE_PARAMETERS, account)  # the level with the parameters set above
    logs = generate_ad_logs(market, num_campaigns=96, days=2, seed=seed)
    calibration = calibrate(level, logs, seed=0)
    for name, value in TRUE_PARAMETERS.items():
        assert abs(calibration.parameters[name] - value) <= TOLERANCE[name], (name, calibration.parameters)
    assert calibration.loss < 0.1 * calibration.uncalibrated_loss, calibration
    assert set(calibration.parameters) == set(FITTED_PARAMETERS)


def test_the_calibrated_simulator_takes_the_accounts_terms_from_the_logs() -> None:
    sandbox = sandbox_market_config()
    logs = generate_ad_logs(sandbox, num_campaigns=32, days=1, seed=0)
    calibration = calibrate(curriculum_level(LEVEL), logs, seed=0)
    assert calibration.config.max_daily_budget == sandbox.max_daily_budget
    assert calibration.config.target_roas == sandbox.target_roas
    assert calibration.config.bid_cap == sandbox.bid_cap


def test_calibration_needs_the_platforms_reports() -> None:
    logs = generate_ad_logs(curriculum_level(LEVEL), num_campaigns=8, days=1, seed=0)
    without_reports = type(logs)(obs=logs.obs, arm=logs.arm, pscore=logs.pscore, reward=logs.reward,
                                 num_audiences=logs.num_audiences, setup=logs.setup, campaign=logs.campaign)
    with pytest.raises(ValueError, match="impressions, spend and conversions"):
        calibrate(curriculum_level(LEVEL), without_reports)
