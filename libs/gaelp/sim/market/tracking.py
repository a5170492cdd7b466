"""Per-episode bookkeeping the observation and reward need beyond the market state."""

from __future__ import annotations

import numpy as np

from gaelp.sim.market.config import CREATIVE_TYPES
from gaelp.sim.market.core import CampaignActions, HourOutcome

KPI_NAMES: tuple[str, ...] = ("impressions", "clicks", "conversions", "spend", "revenue")
EMA_DECAY = 0.7


class EpisodeTracker:
    def __init__(self, num_campaigns: int, num_audiences: int) -> None:
        n = num_campaigns
        self.num_audiences = num_audiences
        self.pair_counts = np.zeros((n, len(CREATIVE_TYPES) * num_audiences))
        self.spend_by_audience = np.zeros((n, num_audiences))
        self.impressions_by_creative = np.zeros((n, len(CREATIVE_TYPES)))
        self.clicks_by_creative = np.zeros((n, len(CREATIVE_TYPES)))
        self.impressions_by_audience = np.zeros((n, num_audiences))
        self.clicks_by_audience = np.zeros((n, num_audiences))
        self.ema = np.zeros((len(KPI_NAMES), n))  # one row per KPI: contiguous per-KPI updates
        self.last_actions: CampaignActions | None = None
        self.last_outcome: HourOutcome | None = None
        self._rows = np.arange(n)

    def reset(self) -> None:
        for table in (
            self.pair_counts,
            self.spend_by_audience,
            self.impressions_by_creative,
            self.clicks_by_creative,
            self.impressions_by_audience,
            self.clicks_by_audience,
            self.ema,
        ):
            table.fill(0.0)
        self.last_actions = None
        self.last_outcome = None

    def record(self, actions: CampaignActions, outcome: HourOutcome) -> None:
        rows = self._rows
        self.pair_counts[rows, actions.creative * self.num_audiences + actions.audience] += 1.0
        self.spend_by_audience[rows, actions.audience] += outcome.spend
        self.impressions_by_creative[rows, actions.creative] += outcome.impressions
        self.clicks_by_creative[rows, actions.creative] += outcome.clicks
        self.impressions_by_audience[rows, actions.audience] += outcome.impressions
        self.clicks_by_audience[rows, actions.audience] += outcome.clicks
        self.ema *= EMA_DECAY
        for row, latest in zip(
            self.ema,
            (outcome.impressions, outcome.clicks, outcome.conversions, outcome.spend, outcome.revenue),
            strict=True,
        ):
            row += (1.0 - EMA_DECAY) * latest
        self.last_actions = actions
        self.last_outcome = outcome

    def pair_count(self, actions: CampaignActions) -> np.ndarray:
        return self.pair_counts[self._rows, actions.creative * self.num_audiences + actions.audience]
