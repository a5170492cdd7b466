"""Numeric tables of a market world, derived once from MarketConfig.

Every per-step quantity the simulator needs is a gather from these tables, so stepping N campaigns
is a handful of array operations with no Python loop over campaigns or users.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gaelp.sim.market.config import MarketConfig


def _overlap(a: list[str], b: list[str]) -> float:
    """Share of b's tags present in a (0 when b has no tags)."""
    return len(set(a) & set(b)) / len(b) if b else 0.0


@dataclass(frozen=True)
class WorldTables:
    persona_share: np.ndarray  # (P,) sums to 1
    hourly_activity: np.ndarray  # (P, 24) mean 1 per persona
    weekday_activity: np.ndarray  # (P, 7) mean 1 per persona
    audience_reach: np.ndarray  # (A, P) share of a persona an audience can reach
    click_rate: np.ndarray  # (C, A, P) CTR of creative c shown to persona p through audience a
    product_cvr: np.ndarray  # (K, P) conversion probability of a click
    creative_cvr_lift: np.ndarray  # (C,) showing more items converts more clicks
    product_value: np.ndarray  # (K,) revenue per conversion
    brand_risk: np.ndarray  # (A,)
    audience_product_match: np.ndarray  # (A, K) public interest overlap, what a marketer can know
    reference_ctr: float

    @property
    def num_personas(self) -> int:
        return int(self.persona_share.shape[0])

    @property
    def num_audiences(self) -> int:
        return int(self.audience_reach.shape[0])


def audience_size_quality(size: np.ndarray) -> np.ndarray:
    """Narrow audiences reach the best-matching users; widening dilutes CTR and CVR."""
    return 1.25 - 0.5 * size


def build_world(config: MarketConfig) -> WorldTables:
    personas, audiences, products = config.personas, config.audiences, config.products
    share = np.array([p.traffic_share for p in personas], dtype=np.float64)
    hourly = np.array([p.hourly_activity for p in personas], dtype=np.float64)
    weekday = np.array([p.weekday_activity for p in personas], dtype=np.float64)
    reach = np.array(
        [[1.0 if p.age_group in a.age_groups else 0.05 for p in personas] for a in audiences],
        dtype=np.float64,
    )
    # Interest-targeted audiences find users who click more; the broad audience is neutral.
    quality = np.array(
        [[1.0 + 0.6 * _overlap(p.interests, a.interests) for p in personas] for a in audiences]
    )
    # Persona taste for the format, times the asset's own pull (richer visuals draw more clicks).
    asset_pull = np.array([0.85 + 0.3 * c.visual_richness for c in config.creatives])
    creative = np.array([[p.creative_affinity[c.name] for p in personas] for c in config.creatives])
    creative = creative * asset_pull[:, None]
    base_ctr = np.array([p.base_ctr for p in personas])
    click_rate = base_ctr[None, None, :] * creative[:, None, :] * quality[None, :, :]
    # Interest fit drives conversion; expensive products convert better with higher income.
    product_cvr = np.array(
        [
            [
                p.base_cvr
                * (0.3 + 1.4 * _overlap(p.interests, k.interests))
                * ((0.6 + 0.8 * p.income) if k.revenue_per_conversion > 50 else 1.0)
                for p in personas
            ]
            for k in products
        ]
    )
    match = np.array([[_overlap(a.interests, k.interests) for k in products] for a in audiences])
    return WorldTables(
        persona_share=share / share.sum(),
        hourly_activity=hourly / hourly.mean(axis=1, keepdims=True),
        weekday_activity=weekday / weekday.mean(axis=1, keepdims=True),
        audience_reach=reach,
        click_rate=click_rate,
        product_cvr=product_cvr,
        creative_cvr_lift=np.array([1.0 + 0.2 * c.items_shown for c in config.creatives]),
        product_value=np.array([k.revenue_per_conversion for k in products]),
        brand_risk=np.array([a.brand_risk for a in audiences]),
        audience_product_match=match,
        reference_ctr=float(base_ctr.mean()),
    )
