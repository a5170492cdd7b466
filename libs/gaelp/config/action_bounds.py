"""The continuous bounds of the ad action (docs/architecture.md, "The ad action"), defined here so
that settings can derive from them without importing the simulator: the policy's action space
(gaelp.sim.market.spaces) is built from them, and the ledger's default largest bid in phases 3 and 4
is the top of the policy's bid range (gaelp.config.sections.safety_policy)."""

from __future__ import annotations

DAILY_BUDGET_RANGE = (10.0, 200.0)
BID_RANGE = (0.5, 20.0)
AUDIENCE_SIZE_RANGE = (0.1, 1.0)
