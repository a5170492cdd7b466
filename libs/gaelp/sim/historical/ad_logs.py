"""Logged campaign data from a market that is not the training simulator (by default the platform
sandbox's market), in logged-bandit form: the observation a policy saw, the arm the logging policy
chose with its propensity, the outcome, and the campaign the row belongs to.

Arms are the discrete part of the ad action (creative x audience); the logging policy picks them
uniformly at random while bid, budget and audience size stay at the fixed LoggingSetup, because
importance weighting needs a known propensity for each logged choice.

What the logs can value. A policy's arm changes the campaign's later states (budget spent, the
history its observation shows), but the logs only hold the states the logging policy visited. So
the estimand of every estimator on these logs is the policy's expected clicks per campaign-hour at
the logging policy's states: E_{s ~ logging}[clicks(s, policy(x(s)))], with the LoggingSetup's
continuous actions. `value_on_logged_states` computes that quantity in a market by branching: at
each state the logging policy visits, a copy of the market takes one step with the policy's arm.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from gaelp.sim.market.config import CREATIVE_TYPES, MarketConfig
from gaelp.sim.market.core import HourOutcome
from gaelp.sim.market.env import AdMarketBatch, parse_actions


class LoggingSetup(BaseModel):
    model_config = ConfigDict(extra="forbid")

    bid_strategy: int = Field(1, ge=0, le=2, description="0 CPC, 1 CPM, 2 CPA")
    bid: float = Field(12.0, gt=0)
    daily_budget: float = Field(200.0, gt=0)
    audience_size: float = Field(0.5, gt=0, le=1)


class AccountTerms(BaseModel):
    """The advertiser's own account settings while the logs were taken: known to whoever owns the
    account, and shown to a policy in its observation (its budget-state features)."""

    model_config = ConfigDict(extra="forbid")

    max_daily_budget: float = Field(gt=0, description="account cap on the daily budget")
    target_roas: float = Field(gt=0)
    bid_cap: float = Field(gt=0)


@dataclass(frozen=True)
class LoggedAdData:
    obs: np.ndarray  # (n, 128) what a policy would have seen
    arm: np.ndarray  # (n,) creative * num_audiences + audience
    pscore: np.ndarray  # (n,)
    reward: np.ndarray  # (n,) clicks in the hour
    num_audiences: int
    setup: LoggingSetup
    # (n,) int: the campaign of each row. Rows of one campaign are correlated over hours and days,
    # so intervals resample campaigns; None: every row is its own campaign.
    campaign: np.ndarray | None = None
    # The platform's other per-row reports (what calibration fits the simulator to) and the
    # account's terms; None where a log file does not carry them.
    impressions: np.ndarray | None = None  # (n,)
    spend: np.ndarray | None = None  # (n,) dollars
    conversions: np.ndarray | None = None  # (n,) attributed in the hour
    account: AccountTerms | None = None

    @property
    def num_arms(self) -> int:
        return len(CREATIVE_TYPES) * self.num_audiences


@dataclass(frozen=True)
class PolicyValue:
    value: float  # clicks per campaign-hour
    standard_error: float  # over campaigns (each campaign's mean is one independent draw)
    num_campaigns: int


def fixed_continuous_actions(n: int, setup: LoggingSetup) -> dict[str, np.ndarray]:
    return {
        "bid_strategy": np.full(n, setup.bid_strategy),
        "bid": np.full(n, setup.bid),
        "daily_budget": np.full(n, setup.daily_budget),
        "audience_size": np.full(n, setup.audience_size),
    }


def _arm_actions(arm: np.ndarray, num_audiences: int, setup: LoggingSetup) -> dict[str, np.ndarray]:
    actions = fixed_continuous_actions(arm.shape[0], setup)
    return actions | {"creative": arm // num_audiences, "audience": arm % num_audiences}


def _logging_day(
    batch: AdMarketBatch, rng: np.random.Generator, setup: LoggingSetup
) -> list[tuple[np.ndarray, np.ndarray, HourOutcome]]:
    """One day under the uniform logging policy: (observation, arm, outcome) per hour."""
    num_audiences = batch.core.world.num_audiences
    num_arms = len(CREATIVE_TYPES) * num_audiences
    hours = []
    obs = batch.reset()
    for _ in range(batch.config.episode_length):
        arm = rng.integers(0, num_arms, size=batch.num_campaigns)
        next_obs, _, _, _ = batch.step(_arm_actions(arm, num_audiences, setup))
        outcome = batch.tracker.last_outcome
        assert outcome is not None  # set by the step just taken
        hours.append((obs, arm, outcome))
        obs = next_obs
    return hours


def generate_ad_logs(
    config: MarketConfig,
    num_campaigns: int = 256,
    days: int = 2,
    seed: int = 0,
    setup: LoggingSetup | None = None,
) -> LoggedAdData:
    setup = setup or LoggingSetup()
    batch = AdMarketBatch(config, num_campaigns, seed)
    rng = np.random.default_rng(seed + 1)
    hours = [hour for _ in range(days) for hour in _logging_day(batch, rng, setup)]
    arm_all = np.concatenate([arm for _, arm, _ in hours])
    num_audiences = batch.core.world.num_audiences

    def reported(kpi: str) -> np.ndarray:
        return np.concatenate([getattr(outcome, kpi) for _, _, outcome in hours])

    return LoggedAdData(
        obs=np.concatenate([obs for obs, _, _ in hours]),
        arm=arm_all,
        pscore=np.full(arm_all.shape[0], 1.0 / (len(CREATIVE_TYPES) * num_audiences)),
        reward=reported("clicks"),
        num_audiences=num_audiences,
        setup=setup,
        campaign=np.tile(np.arange(num_campaigns), len(hours)),
        impressions=reported("impressions"),
        spend=reported("spend"),
        conversions=reported("conversions"),
        account=AccountTerms(max_daily_budget=config.max_daily_budget, target_roas=config.target_roas,
                             bid_cap=config.bid_cap),
    )


def value_on_logged_states(
    batch: AdMarketBatch,
    choose: Callable[[np.ndarray], np.ndarray],
    days: int,
    seed: int,
    setup: LoggingSetup | None = None,
) -> PolicyValue:
    """The policy's clicks per campaign-hour at the states the logging policy visits in `batch`'s
    market (the estimand of the off-policy estimators on logs of that market).

    choose maps observations (n, 128) to arms (n,). At each hour a copy of the market, with a
    random stream of its own, takes the policy's arm; the market itself goes on with the logging
    policy's arm, exactly as generate_ad_logs does."""
    setup = setup or LoggingSetup()
    num_audiences = batch.core.world.num_audiences
    num_arms = len(CREATIVE_TYPES) * num_audiences
    n = batch.num_campaigns
    rng = np.random.default_rng(seed + 1)
    branch_seeds = np.random.SeedSequence([seed, 1]).spawn(days * batch.config.episode_length)
    clicks = np.zeros(n)
    hours = 0
    for _ in range(days):
        obs = batch.reset()
        for _ in range(batch.config.episode_length):
            core = batch.core
            # The world tables and config are read-only: shared, not copied.
            branch = copy.deepcopy(core, memo={id(core.config): core.config, id(core.world): core.world})
            branch.rng = np.random.default_rng(branch_seeds[hours])
            target = _arm_actions(np.asarray(choose(obs)).reshape(n), num_audiences, setup)
            clicks += branch.step(parse_actions(target, n, num_audiences)).clicks
            arm = rng.integers(0, num_arms, size=n)
            obs, _, _, _ = batch.step(_arm_actions(arm, num_audiences, setup))
            hours += 1
    per_campaign = clicks / hours
    error = float(per_campaign.std(ddof=1) / np.sqrt(n)) if n > 1 else float("nan")
    return PolicyValue(value=float(per_campaign.mean()), standard_error=error, num_campaigns=n)
