"""The connector interface every ad platform is driven through, and its data types.

Money note: the connector moves no money by itself and keeps no ledger; callers reserve spend at
safety-policy before raising a bid or a budget (docs/architecture.md, "Money rules").
"""

from __future__ import annotations

from typing import Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

CampaignStatus = Literal["active", "paused"]
CreativeType = Literal["image", "video", "carousel"]
BidStrategy = Literal["cpc", "cpm", "cpa"]


class PlatformError(RuntimeError):
    """A request the platform refused or could not complete; not worth retrying as is."""

    def __init__(self, operation: str, message: str, code: str = "error") -> None:
        super().__init__(f"{operation} failed ({code}): {message}")
        self.operation = operation
        self.code = code
        self.detail = message


class TransientPlatformError(PlatformError):
    """The platform (or the way to it) failed temporarily; the same request may succeed later."""


class CampaignSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    product: str = Field(description="what the campaign sells; the platform knows its catalogue")
    daily_budget: float = Field(gt=0.0)
    bid: float = Field(gt=0.0)
    bid_strategy: BidStrategy = "cpc"
    creative: CreativeType = "image"
    audience: str = "broad"
    audience_size: float = Field(0.5, gt=0.0, le=1.0)


class Campaign(CampaignSpec):
    campaign_id: str
    status: CampaignStatus


class CampaignReport(BaseModel):
    """Totals over the hours the platform has reported so far (reports lag real time)."""

    model_config = ConfigDict(extra="forbid")

    campaign_id: str
    reported_through_hour: int = Field(description="platform hours covered: [0, this)")
    impressions: int
    clicks: int
    conversions: int
    spend: float
    revenue: float
    hourly_spend: list[float] = Field(default_factory=list)


class AccountSpend(BaseModel):
    model_config = ConfigDict(extra="forbid")

    total_spend: float
    spend_today: float
    spend_this_month: float
    by_campaign: dict[str, float]


class PlatformConnector(Protocol):
    """Operations of an ad platform; implementations raise PlatformError on refusal."""

    async def create_campaign(self, spec: CampaignSpec, request_id: str) -> Campaign: ...

    async def update_bid(
        self, campaign_id: str, bid: float, bid_strategy: BidStrategy | None = None
    ) -> Campaign: ...

    async def update_budget(self, campaign_id: str, daily_budget: float) -> Campaign: ...

    async def update_creative(self, campaign_id: str, creative: CreativeType) -> Campaign: ...

    async def update_audience(self, campaign_id: str, audience: str, audience_size: float) -> Campaign: ...

    async def pause(self, campaign_id: str) -> Campaign: ...

    async def resume(self, campaign_id: str) -> Campaign: ...

    async def fetch_report(self, campaign_id: str) -> CampaignReport: ...

    async def account_spend(self) -> AccountSpend: ...
