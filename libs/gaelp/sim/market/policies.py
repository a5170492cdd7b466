"""Reference policies for every curriculum level, and the one yardstick they are scored on.

A policy is a callable (obs, info) -> dict of batched actions. The factories below take the vector
env: `random` samples the action space; `heuristic` uses only the observation (target-CPA bidding
with even pacing, audience chosen by public product/audience interest match); `upper_bound` is a
planner that reads the market's true rates, competitor bids and traffic and, every hour, picks the
action with the highest expected reward (the same weighted multi-objective reward the agent is
trained on); `oracle` reads the true rates and bids a share of the true value per impression (a
ROAS maximizer, kept as a ROAS reference, not a reward one).

The yardstick ("normalized reward"): on a level, with R the mean undiscounted episode reward,
    normalized = (R_policy - R_random) / (R_upper_bound - R_random)
so random play scores 0 and the planner with the true simulator parameters scores 1. Every
reference, the curriculum and the graduation figure use this one quantity.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from gaelp.sim.market.auction import auction_outcome
from gaelp.sim.market.env import AdMarketVectorEnv, LevelSpec
from gaelp.sim.market.spaces import BID_RANGE

Actions = dict[str, np.ndarray]
Policy = Callable[[np.ndarray, dict[str, Any]], Actions]
PolicyFactory = Callable[[AdMarketVectorEnv], Policy]

ORACLE_AUDIENCE_SIZES = np.array([0.1, 0.25, 0.5, 0.75, 1.0])
# The oracle bids this share of the true value of an impression, keeping its marginal ROAS >= 1/share.
ORACLE_BID_SHARE = 0.4
HEURISTIC_AUDIENCE_SIZE = 0.5
HEURISTIC_TEST_HOURS = 3  # one hour per creative before keeping the best
CPM, CPA = 1, 2
PLANNER_AUDIENCE_SIZES = np.array([0.1, 0.25, 0.5, 0.75, 1.0])
# Candidate CPM bids: quantiles of the best competing bid, in its log-normal sigmas.
PLANNER_BID_QUANTILES = np.array([-1.5, -1.0, -0.5, 0.0, 0.5, 1.0, 1.5])
# An hour may spend up to this multiple of its traffic's share of the remaining budget.
PLANNER_PACING_SLACK = 1.5


def _amounts(n: int, budget: np.ndarray | float, bid: np.ndarray, size: np.ndarray | float) -> Actions:
    return {
        "daily_budget": np.broadcast_to(np.asarray(budget, dtype=np.float32), (n,)).reshape(n, 1).copy(),
        "bid": np.clip(bid, *BID_RANGE).astype(np.float32).reshape(n, 1),
        "audience_size": np.broadcast_to(np.asarray(size, dtype=np.float32), (n,)).reshape(n, 1).copy(),
    }


def random_policy(env: AdMarketVectorEnv) -> Policy:
    def act(obs: np.ndarray, info: dict[str, Any]) -> Actions:
        return env.action_space.sample()

    return act


def heuristic_policy(env: AdMarketVectorEnv) -> Policy:
    """What a careful marketer does without the market's true rates: target the audience whose
    interests match the product, A/B test the three creatives in the first hours and then keep the
    one with the best observed CTR, bid a target CPA (product value / target ROAS) and pace evenly."""

    def act(obs: np.ndarray, info: dict[str, Any]) -> Actions:
        n = obs.shape[0]
        value = obs[:, 90] * 100.0
        target_roas = obs[:, 91] * 2.0
        pace = obs[:, 88]  # spend so far over the even-pacing plan; 1 = on plan
        correction = np.clip(1.0 / np.maximum(pace, 1e-3), 0.7, 1.2)
        match = obs[:, 121:127]
        hour = np.rint(obs[:, 80] * env.config.episode_length).astype(np.int64)
        observed_ctr = obs[:, 112:115]
        creative = np.where(hour < HEURISTIC_TEST_HOURS, hour % 3, np.argmax(observed_ctr, axis=1))
        return {
            "creative": creative.astype(np.int64),
            "audience": np.argmax(match, axis=1).astype(np.int64),
            "bid_strategy": np.full(n, CPA, dtype=np.int64),
            **_amounts(n, obs[:, 85] * 200.0, value / target_roas * correction, HEURISTIC_AUDIENCE_SIZE),
        }

    return act


def oracle_policy(env: AdMarketVectorEnv) -> Policy:
    """Knows the true rates: picks the creative/audience/size with the highest value per impression."""
    core = env.core
    n = env.num_envs
    num_audiences = core.world.num_audiences
    combos = [(c, a, s) for c in range(3) for a in range(num_audiences) for s in ORACLE_AUDIENCE_SIZES]
    creative_of = np.array([c for c, _, _ in combos])
    audience_of = np.array([a for _, a, _ in combos])
    size_of = np.array([s for _, _, s in combos])

    def act(obs: np.ndarray, info: dict[str, Any]) -> Actions:
        hour = core.hour_index % core.config.episode_length
        values = np.stack(
            [
                core.expected_rates(
                    np.full(n, c), np.full(n, a), np.full(n, s, dtype=np.float64), hour
                ).value_per_impression
                for c, a, s in combos
            ],
            axis=1,
        )
        best = np.argmax(values, axis=1)
        value_cpm = values[np.arange(n), best] * 1000.0
        # Shade the bid, but clear the reserve price whenever an impression is worth more than it.
        reserve = core.config.reserve_cpm
        bid_cpm = np.where(
            value_cpm > reserve, np.maximum(value_cpm * ORACLE_BID_SHARE, reserve * 1.01), BID_RANGE[0]
        )
        return {
            "creative": creative_of[best].astype(np.int64),
            "audience": audience_of[best].astype(np.int64),
            "bid_strategy": np.full(n, CPM, dtype=np.int64),
            **_amounts(n, core.config.max_daily_budget, bid_cpm, size_of[best]),
        }

    return act


def upper_bound_policy(env: AdMarketVectorEnv) -> Policy:
    """The upper-bound reference: a one-hour-lookahead planner on the true simulator parameters.

    For every creative x audience x size and a grid of CPM bids it computes, from the true rates,
    auction and competitor state, the expected reward components of the hour and picks the action
    with the highest weighted sum, among those whose expected spend keeps the day's budget paced over
    the remaining traffic. Ratio components (ROAS, CTR) are weighted by the chance that the hour
    sees at least one conversion / click, since a thin hour usually pays nothing."""
    core = env.core
    cfg = core.config
    n = env.num_envs
    weights = cfg.reward_weights
    audiences = range(core.world.num_audiences)
    combos = [(c, a, float(s)) for c in range(3) for a in audiences for s in PLANNER_AUDIENCE_SIZES]
    second_price = cfg.auction == "second_price"

    def act(obs: np.ndarray, info: dict[str, Any]) -> Actions:
        hour = core.hour_index % cfg.episode_length
        budget = cfg.max_daily_budget
        spent, earned = core.totals["spend"], core.totals["revenue"]
        remaining = np.maximum(budget - core.spent_today, 0.0)
        traffic = core.traffic.sum(axis=2)
        hour_share = traffic[hour] / np.maximum(traffic[hour : cfg.episode_length].sum(axis=0), 1e-9)
        allowance = remaining * np.minimum(hour_share * PLANNER_PACING_SLACK, 1.0)
        reserve_bid = np.full((n, 1), cfg.reserve_cpm * 1.01)
        if cfg.competition:
            spread = cfg.competitor_spread * PLANNER_BID_QUANTILES[None, :]
            bids = np.concatenate([np.exp(core.log_competitor_median[:, None] + spread), reserve_bid], axis=1)
        else:
            bids = reserve_bid
        bids = np.clip(bids, *BID_RANGE)
        paced_spend = budget * (hour + 1) / cfg.episode_length
        best_score = np.full(n, -np.inf)
        best = np.zeros((n, 4))
        for creative, audience, size in combos:
            rates = core.expected_rates(np.full(n, creative), np.full(n, audience), np.full(n, size), hour)
            brand_safety = 1.0 - core.world.brand_risk[audience] * size
            for column in range(bids.shape[1]):
                bid = bids[:, column]
                win, price = auction_outcome(bid, core.log_competitor_median, cfg.competitor_spread,
                                             cfg.reserve_cpm, second_price, cfg.competition)
                impressions = rates.opportunities * win
                spend = impressions * price / 1000.0
                clicks = impressions * rates.ctr
                conversions = clicks * rates.cvr
                revenue = conversions * core.product_value
                roas = np.minimum(revenue / np.maximum(spend, 1e-9), cfg.reward_roas_clip)
                roas = roas * -np.expm1(-conversions)
                ctr = np.minimum(rates.ctr / core.world.reference_ctr, 5.0) * -np.expm1(-clicks)
                paced = np.minimum((spent + spend) / paced_spend, 1.0)
                payback = np.minimum((earned + revenue) / np.maximum(spent + spend, 1e-9), 1.0)
                over_bid = np.maximum(bid - cfg.bid_cap, 0.0) / cfg.bid_cap
                score = (
                    weights.roas * roas
                    + weights.ctr * ctr
                    + weights.conversions * conversions / cfg.reward_conversion_scale
                    + weights.brand_safety * brand_safety
                    + weights.budget_efficiency * paced * payback
                    - weights.constraint_penalty * over_bid
                )
                # Over the hour's allowance: only when nothing fits, and then the cheapest.
                score = np.where(spend <= allowance, score, -1e6 - spend)
                better = score > best_score
                best_score = np.where(better, score, best_score)
                best[better, :3] = (creative, audience, size)
                best[better, 3] = bid[better]
        return {
            "creative": best[:, 0].astype(np.int64),
            "audience": best[:, 1].astype(np.int64),
            "bid_strategy": np.full(n, CPM, dtype=np.int64),
            **_amounts(n, budget, best[:, 3], best[:, 2]),
        }

    return act


REFERENCE_POLICIES: dict[str, PolicyFactory] = {
    "random": random_policy,
    "heuristic": heuristic_policy,
    "upper_bound": upper_bound_policy,
    "oracle": oracle_policy,
}


@dataclass(frozen=True)
class PolicyEvaluation:
    mean_roas: float  # mean over episodes of revenue / spend
    aggregate_roas: float  # total revenue / total spend
    mean_reward: float  # mean undiscounted episode return
    success_rate: float
    episodes: int


def evaluate_policy(
    policy: str | PolicyFactory,
    level: LevelSpec = 0,
    num_envs: int = 64,
    episodes_per_env: int = 1,
    seed: int = 0,
) -> PolicyEvaluation:
    """Run a policy for whole days in a fresh vector env and summarise ROAS and reward."""
    factory = REFERENCE_POLICIES[policy] if isinstance(policy, str) else policy
    env = AdMarketVectorEnv(num_envs=num_envs, level=level, seed=seed)
    act = factory(env)
    obs, info = env.reset(seed=seed)
    returns = np.zeros(num_envs)
    roas: list[np.ndarray] = []
    spend: list[np.ndarray] = []
    revenue: list[np.ndarray] = []
    success: list[np.ndarray] = []
    episode_returns: list[np.ndarray] = []
    while len(roas) < episodes_per_env:
        obs, reward, terminated, _, info = env.step(act(obs, info))
        returns += reward
        if terminated.any():
            metrics = info["episode_metrics"]
            roas.append(metrics["roas"])
            spend.append(metrics["spend"])
            revenue.append(metrics["revenue"])
            success.append(metrics["success"])
            episode_returns.append(returns.copy())
            returns.fill(0.0)
    total_spend = float(np.sum(spend))
    return PolicyEvaluation(
        mean_roas=float(np.mean(roas)),
        aggregate_roas=float(np.sum(revenue) / total_spend) if total_spend > 0 else 0.0,
        mean_reward=float(np.mean(episode_returns)),
        success_rate=float(np.mean(success)),
        episodes=num_envs * episodes_per_env,
    )


def fraction_of_oracle(policy: str | PolicyFactory, level: LevelSpec = 0, **kwargs: Any) -> float:
    """A policy's mean ROAS as a fraction of the oracle's on the same level and seeds."""
    oracle = evaluate_policy("oracle", level, **kwargs).mean_roas
    return evaluate_policy(policy, level, **kwargs).mean_roas / oracle


def normalized_reward(reward: float, random_reward: float, upper_bound_reward: float) -> float:
    """The yardstick: 0 = random play, 1 = the upper-bound planner, on the same episode reward.
    Not clipped: an agent above the planner scores above 1, one below random play below 0."""
    span = upper_bound_reward - random_reward
    return (reward - random_reward) / span if span > 0 else 0.0
