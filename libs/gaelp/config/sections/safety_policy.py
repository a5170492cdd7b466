"""Settings of the safety_policy service: spend limits per phase, creative rules, operators, TLS."""

from __future__ import annotations

import re
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from gaelp.config.action_bounds import BID_RANGE

_SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")


class PhaseSpendLimits(BaseModel):
    """The money limits of one real-money phase, in dollars."""

    model_config = ConfigDict(extra="forbid")

    daily_limit_min: float = Field(10.0, gt=0, description="smallest base daily limit a campaign may have")
    daily_limit_max: float = Field(50.0, gt=0, description="largest base daily limit a campaign may have")
    episode_limit: float = Field(10.0, gt=0, description="most one episode may spend")
    phase_total: float = Field(500.0, gt=0, description="most one campaign may spend in the phase")
    # The top of the policy's bid range by default: a lower cap is allowed (a tighter safety limit),
    # and the orchestrator then clips the policy's bids to it, logged and counted per campaign.
    max_bid: float = Field(BID_RANGE[1], gt=0, description="largest bid a reservation may carry")

    @model_validator(mode="after")
    def _ordered(self) -> PhaseSpendLimits:
        if self.daily_limit_min > self.daily_limit_max:
            raise ValueError("daily_limit_min must be <= daily_limit_max")
        return self


class CreativeThresholds(BaseModel):
    """Scores in [0, 1] a creative must reach in one phase; a missing score always fails."""

    model_config = ConfigDict(extra="forbid")

    brand_safety_min: float = Field(0.5, ge=0, le=1)
    content_quality_min: float = Field(0.3, ge=0, le=1)


class CampaignConfig(BaseModel):
    """A campaign registered at startup (operators can also add campaigns with RegisterCampaign)."""

    model_config = ConfigDict(extra="forbid")

    campaign_id: str = Field(min_length=1, max_length=128)
    time_zone: str = Field("UTC", description="IANA zone of the ad account; day boundaries follow it")
    daily_limit: float = Field(50.0, gt=0, description="base daily limit in dollars")

    @field_validator("time_zone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as error:
            raise ValueError(f"unknown time zone {value!r}") from error
        return value


def _default_creative_thresholds() -> dict[str, CreativeThresholds]:
    lenient = CreativeThresholds(brand_safety_min=0.5, content_quality_min=0.3)
    strict = CreativeThresholds(brand_safety_min=0.8, content_quality_min=0.6)
    return {"simulation": lenient, "historical": lenient, "real_testing": strict, "scaled": strict}


class SafetyPolicySettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    grpc_port: int = 50054
    real_testing: PhaseSpendLimits = Field(default_factory=PhaseSpendLimits)
    scaled: PhaseSpendLimits = Field(
        default_factory=lambda: PhaseSpendLimits(episode_limit=50.0, phase_total=5000.0)
    )
    scaled_daily_ceiling: float = Field(
        1000.0, gt=0, description="phase 4: approved budget steps never raise a daily limit past this"
    )
    max_budget_step: float = Field(50.0, gt=0, description="largest daily-limit raise one approval may ask")
    max_amount: float = Field(
        100_000.0, gt=0, description="amounts above this are input errors, not refusals"
    )
    reservation_ttl_s: float = Field(
        300.0, gt=0, description="an uncommitted reservation is released after this"
    )
    sweep_interval_s: float = Field(1.0, gt=0, description="how often expired reservations are released")
    database_pool_size: int = Field(
        16, ge=1, le=200,
        description="PostgreSQL connections of the ledger; each reservation holds one for one round trip",
    )
    outbox_poll_interval_s: float = Field(0.5, gt=0, description="how often violations are sent to Kafka")
    forbidden_keywords: list[str] = Field(
        default_factory=lambda: ["guaranteed", "miracle", "risk-free", "get rich", "100% free", "cure"],
        description="case-insensitive words or phrases a creative may not contain",
    )
    creative_thresholds: dict[str, CreativeThresholds] = Field(
        default_factory=_default_creative_thresholds,
        description="per phase name: simulation, historical, real_testing, scaled",
    )
    max_creative_chars: int = Field(4096, ge=1, description="longest headline or body accepted")
    operators: dict[str, str] = Field(
        default_factory=dict,
        description="operator name -> SHA-256 hex of its token (sent as 'authorization: Bearer <token>')",
    )
    campaigns: list[CampaignConfig] = Field(default_factory=list)
    tls_port: int = Field(0, ge=0, le=65535, description="also serve TLS on this port when > 0")
    tls_cert_path: str = Field("", description="PEM certificate chain for the TLS port")
    tls_key_path: str = Field("", description="PEM private key for the TLS port")

    @field_validator("operators")
    @classmethod
    def _hashes(cls, value: dict[str, str]) -> dict[str, str]:
        bad = [name for name, digest in value.items() if not _SHA256_HEX.match(digest)]
        if bad:
            raise ValueError(f"operator token hashes must be lowercase SHA-256 hex: {bad}")
        return value

    @field_validator("creative_thresholds")
    @classmethod
    def _phase_names(cls, value: dict[str, CreativeThresholds]) -> dict[str, CreativeThresholds]:
        unknown = set(value) - {"simulation", "historical", "real_testing", "scaled"}
        if unknown:
            raise ValueError(f"unknown phases in creative_thresholds: {sorted(unknown)}")
        return value

    @model_validator(mode="after")
    def _tls_paths(self) -> SafetyPolicySettings:
        if self.tls_port and not (self.tls_cert_path and self.tls_key_path):
            raise ValueError("tls_port needs tls_cert_path and tls_key_path")
        return self
