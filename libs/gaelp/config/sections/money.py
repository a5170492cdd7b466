"""Settings of the money phases (3: small-budget testing, 4: scaled) as the orchestrator drives them."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

from gaelp.config.sections.platform import McpConnectorConfig


class PlatformRules(BaseModel):
    """How much the ad platform may spend of a daily budget (Google Ads' rules; the sandbox's too)."""

    model_config = ConfigDict(extra="forbid")

    overdelivery_factor: float = Field(2.0, ge=1.0, description="one day may spend this x the daily budget")
    monthly_budget_factor: float = Field(30.4, gt=0, description="a month spends at most this x the budget")


class TransferSettings(BaseModel):
    """Phase 4's transfer test (orchestrator.money.transfer): the phase-3 policy fine-tuned on the
    simulator's model of the catalogue products phase 1 never trained on, against a policy trained
    from scratch there on the same budget."""

    model_config = ConfigDict(extra="forbid")

    campaigns: int = Field(
        2, ge=0,
        description="phase-4 campaigns on held-out products (flagged transfer), of scaled_campaigns"
    )
    env_steps: int = Field(
        24_576, ge=1,
        description="simulator env steps each policy trains (the fine-tuned and the scratch one)"
    )
    envs: int = Field(64, ge=1, description="simulated campaigns stepped as one batch while training")
    evaluation_envs: int = Field(64, ge=1, description="seeded simulated campaign-days each policy is scored")


class MoneySettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    safety_policy_target: str = Field("127.0.0.1:50054", description="host:port of the safety policy")
    rpc_deadline_s: float = Field(10.0, gt=0, description="deadline of each safety-policy call")
    platform: McpConnectorConfig = Field(
        default_factory=McpConnectorConfig,
        description="the ad platform's MCP server (the sandbox: the driver moves its clock by its"
        " sandbox_advance_time tool)",
    )
    rules: PlatformRules = Field(default_factory=PlatformRules)
    ledger_campaigns: list[str] = Field(
        default_factory=lambda: ["gaelp-money-1"],
        min_length=1,
        description="campaign ids registered at the safety policy that the run's spend is booked on;"
        " phase 3 uses the first",
    )
    products: list[str] = Field(
        default_factory=list, description="catalogue products phase-3 campaigns sell; empty: the sandbox's"
    )
    daily_budget_min: float = Field(10.0, gt=0, description="phase-3 campaign budgets, dollars a day")
    daily_budget_max: float = Field(50.0, gt=0)
    target_roas: float = Field(
        1.5, gt=0, description="the account's ROAS target, shown to the policy as the simulator shows its"
        " task's (the sandbox account's: 1.5)")
    campaigns: int = Field(
        12, ge=1,
        description="most phase-3 campaigns (one episode each), one after another: the phase stops"
        " starting new ones once an assessment moved the run on (e.g. after 5 in a row with positive ROI)",
    )
    campaign_days: int = Field(
        2, ge=1, le=31,
        description="platform days each money-phase campaign runs: one day's revenue comes from a few"
        " conversions (a one-day campaign often has none), too lumpy to judge a campaign's ROI on",
    )
    step_hours: int = Field(6, ge=1, le=24, description="platform hours between the policy's decisions")
    settle_max_hours: int = Field(
        48, ge=1, description="platform hours a paused campaign's last report may take to arrive"
    )
    approval_poll_s: float = Field(1.0, gt=0, description="how often a pending approval is checked")
    scaled_campaigns: int = Field(5, ge=1, description="phase-4 campaigns, run at the same time")
    budget_step_factor: float = Field(
        1.5, gt=1.0, description="phase 4: an approved step-up multiplies a campaign's daily budget by this"
    )
    scaled_budget_max: float = Field(
        100.0, gt=0, description="phase 4: no step-up takes a campaign's daily budget above this (dollars)"
    )

    transfer: TransferSettings = Field(default_factory=TransferSettings)

    @model_validator(mode="after")
    def _consistent(self) -> MoneySettings:
        if self.daily_budget_min > self.daily_budget_max:
            raise ValueError("daily_budget_min must be <= daily_budget_max")
        if self.scaled_budget_max < self.daily_budget_max:
            raise ValueError("scaled_budget_max must be >= daily_budget_max (phase 4 starts in phase 3's)")
        if self.transfer.campaigns > self.scaled_campaigns:
            raise ValueError("transfer.campaigns must be <= scaled_campaigns (they are phase-4 campaigns)")
        if 24 % self.step_hours:
            raise ValueError("step_hours must divide 24 (a decision window never spans two platform days)")
        return self
