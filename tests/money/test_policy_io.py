"""The live campaign's observation agrees with the simulator's on every feature the advertiser knows.

A campaign runs for some hours in the sandbox market's simulator (the market the sandbox platform
serves); its report is built from the simulator's own totals and hourly spend, as the platform
would report them, and platform_observation must put the same figures where the simulator does.
"""

from __future__ import annotations

import numpy as np
import pytest

from gaelp.sim.market.config import BID_STRATEGIES, CREATIVE_TYPES
from gaelp.sim.market.env import AdMarketBatch
from gaelp.sim.platform.connector import CampaignReport
from gaelp.sim.platform.sandbox_market import sandbox_catalogue_market
from orchestrator.money.policy_io import LIVE_ROWS, CampaignSettings, advertiser_view, platform_observation

HOURS = 11
BUDGET, BID, AUDIENCE_SIZE = 40.0, 6.0, 0.6
# Rows the platform fills from what it reports or the advertiser knows (the rest: market context,
# per-persona mix, hourly delivery, day of year and weekday, which the simulator draws itself).
KNOWN_ROWS = [26, 27, 28, 29, 30, 32, 33, 34, 35, 43, 45, 72, 73, 74, 75, 80, 81, 83, *range(84, 100),
              *range(100, 112), *range(121, 127)]


@pytest.mark.parametrize("seed", [3, 8])
def test_the_platform_observation_is_the_simulators_for_what_the_advertiser_knows(seed: int) -> None:
    market = sandbox_catalogue_market().model_copy(update={"max_daily_budget": 50.0})
    batch = AdMarketBatch(market, num_campaigns=1, seed=seed)
    batch.reset()
    audiences = [a.name for a in market.audiences]
    creative, audience, strategy = 2, 3, 1
    actions = {"creative": [creative], "audience": [audience], "bid_strategy": [strategy],
               "daily_budget": [BUDGET], "bid": [BID], "audience_size": [AUDIENCE_SIZE]}
    hourly_spend = []
    for _ in range(HOURS):
        spent_before = float(batch.core.totals["spend"][0])
        simulated, _, _, _ = batch.step(actions)
        hourly_spend.append(float(batch.core.totals["spend"][0]) - spent_before)
    totals = {name: float(value[0]) for name, value in batch.core.totals.items()}
    assert totals["spend"] > 0 and totals["clicks"] > 0

    report = CampaignReport(campaign_id="c", reported_through_hour=HOURS,
                            impressions=round(totals["impressions"]), clicks=round(totals["clicks"]),
                            conversions=round(totals["conversions"]), spend=totals["spend"],
                            revenue=totals["revenue"], hourly_spend=hourly_spend)
    live = CampaignSettings(daily_budget=BUDGET, bid=BID, bid_strategy=BID_STRATEGIES[strategy],  # type: ignore[arg-type]
                            creative=CREATIVE_TYPES[creative], audience=audiences[audience],  # type: ignore[arg-type]
                            audience_size=AUDIENCE_SIZE, policy_bid=BID)
    product = market.products[int(batch.core.product[0])].name
    view = advertiser_view(market, product, market.max_daily_budget, market.target_roas, market.bid_cap)
    observed = platform_observation(report, live, HOURS, market.episode_length, HOURS, audiences, view,
                                    hourly_spend)

    np.testing.assert_allclose(observed[0, KNOWN_ROWS], simulated[0, KNOWN_ROWS], rtol=1e-4, atol=1e-5)
    assert observed[0, 90] > 0 and observed[0, 121:127].any()  # the product and its audience fit are shown
    assert not np.delete(observed[0], LIVE_ROWS).any()  # LIVE_ROWS names every row it fills


def test_before_any_report_the_policy_sees_the_product_and_the_cap_as_the_simulator_shows_them() -> None:
    market = sandbox_catalogue_market().model_copy(update={"max_daily_budget": 50.0})
    batch = AdMarketBatch(market, num_campaigns=1, seed=5)
    simulated = batch.reset()
    product = market.products[int(batch.core.product[0])].name
    view = advertiser_view(market, product, market.max_daily_budget, market.target_roas, market.bid_cap)
    audiences = [a.name for a in market.audiences]
    observed = platform_observation(None, None, 0, market.episode_length, 0, audiences, view, [])
    rows = [*range(84, 93), 96, 97, *range(121, 127)]
    np.testing.assert_allclose(observed[0, rows], simulated[0, rows], rtol=1e-5, atol=1e-6)


def test_a_product_outside_the_catalogue_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="'umbrella' is not in the catalogue"):
        advertiser_view(sandbox_catalogue_market(), "umbrella", 50.0, 1.5, 20.0)
