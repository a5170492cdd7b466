"""Aggregate auction outcomes: win probability and expected price against log-normal competitors.

Rather than running one auction per impression, each hour uses the closed form of the best
competing bid's distribution: P(win) = P(C < b) and, in a second-price auction, the expected
payment E[max(reserve, C) | C < b]. Impressions are then drawn as Poisson counts.
"""

from __future__ import annotations

import numpy as np

_SQRT_HALF = np.sqrt(0.5)


def normal_cdf(z: np.ndarray) -> np.ndarray:
    """Standard normal CDF via Abramowitz-Stegun 7.1.26 (error < 2e-7); numpy has no erf."""
    x = np.abs(z) * _SQRT_HALF
    t = 1.0 / (1.0 + 0.3275911 * x)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    erf = 1.0 - poly * np.exp(-x * x)
    return 0.5 * (1.0 + np.copysign(erf, z))


def auction_outcome(
    bid_cpm: np.ndarray,
    log_median_cpm: np.ndarray,
    spread: float,
    reserve_cpm: float,
    second_price: bool,
    competition: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """Win probability and expected price (per 1000 impressions) of each campaign's bid."""
    above_reserve = bid_cpm >= reserve_cpm
    if not competition:
        win = above_reserve.astype(np.float64)
        price = np.full_like(bid_cpm, reserve_cpm) if second_price else bid_cpm.copy()
        return win, np.maximum(price, 1e-6)
    log_bid = np.log(np.maximum(bid_cpm, 1e-9))
    z_bid = (log_bid - log_median_cpm) / spread
    p_below_bid = normal_cdf(z_bid)
    win = np.where(above_reserve, p_below_bid, 0.0)
    if not second_price:
        return win, np.maximum(bid_cpm, 1e-6)
    z_reserve = (np.log(max(reserve_cpm, 1e-9)) - log_median_cpm) / spread
    p_below_reserve = normal_cdf(z_reserve)
    partial_mean = np.exp(log_median_cpm + 0.5 * spread * spread) * (
        normal_cdf(z_bid - spread) - normal_cdf(z_reserve - spread)
    )
    expected = (reserve_cpm * p_below_reserve + np.maximum(partial_mean, 0.0)) / np.maximum(
        p_below_bid, 1e-12
    )
    price = np.clip(expected, reserve_cpm, bid_cpm)
    return win, np.maximum(price, 1e-6)
