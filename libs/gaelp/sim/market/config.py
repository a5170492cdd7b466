"""Typed configuration of the ad-market simulator: the world (personas, audiences, creatives,
products) and the curriculum levels that decide how hard the market is.

Defaults live here so the simulator runs with no files; a level can also be read from YAML
(configs/sim/*.yaml) with `load_level_config`.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from gaelp.rl.reward import RewardWeights

HOURS_PER_DAY = 24
CREATIVE_TYPES: tuple[str, ...] = ("image", "video", "carousel")
BID_STRATEGIES: tuple[str, ...] = ("cpc", "cpm", "cpa")


def _flat_activity() -> list[float]:
    return [1.0] * HOURS_PER_DAY


class Persona(BaseModel):
    """A user segment. Activity curves are relative (scaled so their mean is 1 when used)."""

    model_config = ConfigDict(extra="forbid")

    name: str
    age_group: str = Field(description="e.g. '18-24'; audiences target age groups")
    income: float = Field(ge=0.0, le=1.0, description="0 = lowest, 1 = highest income band")
    interests: list[str] = Field(description="interest tags; products and audiences match on them")
    traffic_share: float = Field(gt=0.0, description="relative share of all ad opportunities")
    hourly_activity: list[float] = Field(default_factory=_flat_activity, min_length=24, max_length=24)
    weekday_activity: list[float] = Field(default_factory=lambda: [1.0] * 7, min_length=7, max_length=7)
    base_ctr: float = Field(gt=0.0, lt=1.0, description="click probability of a neutral ad")
    base_cvr: float = Field(gt=0.0, lt=1.0, description="conversion probability of a click")
    creative_affinity: dict[str, float] = Field(
        default_factory=lambda: dict.fromkeys(CREATIVE_TYPES, 1.0),
        description="CTR multiplier per creative type",
    )


class Audience(BaseModel):
    """A targeting choice of the advertiser: which age groups and interests it reaches."""

    model_config = ConfigDict(extra="forbid")

    name: str
    age_groups: list[str]
    interests: list[str] = Field(default_factory=list)
    brand_risk: float = Field(0.05, ge=0.0, le=1.0, description="share of unsafe inventory at full size")


class Creative(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="one of CREATIVE_TYPES")
    visual_richness: float = Field(ge=0.0, le=1.0)
    motion: float = Field(ge=0.0, le=1.0)
    items_shown: float = Field(ge=0.0, le=1.0)


class Product(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    revenue_per_conversion: float = Field(gt=0.0)
    interests: list[str]


def _hours(peaks: dict[int, float], base: float = 0.3) -> list[float]:
    """Activity curve with a floor and a few peak hours, smoothed to neighbours."""
    curve = [base] * HOURS_PER_DAY
    for hour, height in peaks.items():
        for offset, weight in ((-2, 0.3), (-1, 0.7), (0, 1.0), (1, 0.7), (2, 0.3)):
            curve[(hour + offset) % HOURS_PER_DAY] += height * weight
    return curve


def default_personas() -> list[Persona]:
    return [
        Persona(
            name="students",
            age_group="18-24",
            income=0.15,
            interests=["gaming", "fashion", "music"],
            traffic_share=1.2,
            hourly_activity=_hours({13: 0.8, 22: 1.5}, base=0.2),
            weekday_activity=[0.9, 0.9, 0.9, 1.0, 1.1, 1.3, 1.2],
            base_ctr=0.022,
            base_cvr=0.020,
            creative_affinity={"image": 0.8, "video": 1.5, "carousel": 1.0},
        ),
        Persona(
            name="young_professionals",
            age_group="25-34",
            income=0.6,
            interests=["tech", "fitness", "travel"],
            traffic_share=1.0,
            hourly_activity=_hours({8: 1.0, 12: 0.8, 20: 1.2}),
            weekday_activity=[1.1, 1.1, 1.1, 1.1, 1.0, 0.8, 0.8],
            base_ctr=0.016,
            base_cvr=0.035,
            creative_affinity={"image": 1.0, "video": 1.2, "carousel": 1.1},
        ),
        Persona(
            name="families",
            age_group="35-44",
            income=0.5,
            interests=["home", "kids", "food"],
            traffic_share=1.0,
            hourly_activity=_hours({7: 0.6, 21: 1.4}),
            weekday_activity=[0.9, 0.9, 0.9, 1.0, 1.0, 1.2, 1.2],
            base_ctr=0.014,
            base_cvr=0.045,
            creative_affinity={"image": 1.1, "video": 0.9, "carousel": 1.4},
        ),
        Persona(
            name="affluent_executives",
            age_group="45-54",
            income=0.95,
            interests=["travel", "finance", "tech"],
            traffic_share=0.5,
            hourly_activity=_hours({7: 1.0, 19: 0.8}),
            weekday_activity=[1.2, 1.2, 1.1, 1.1, 1.0, 0.7, 0.7],
            base_ctr=0.010,
            base_cvr=0.060,
            creative_affinity={"image": 1.3, "video": 0.8, "carousel": 1.0},
        ),
        Persona(
            name="retirees",
            age_group="65+",
            income=0.4,
            interests=["home", "health", "travel"],
            traffic_share=0.7,
            hourly_activity=_hours({10: 1.2, 15: 0.8}),
            weekday_activity=[1.0] * 7,
            base_ctr=0.012,
            base_cvr=0.030,
            creative_affinity={"image": 1.4, "video": 0.7, "carousel": 0.8},
        ),
        Persona(
            name="bargain_hunters",
            age_group="25-34",
            income=0.3,
            interests=["fashion", "food", "home"],
            traffic_share=0.9,
            hourly_activity=_hours({12: 0.9, 21: 1.0}),
            weekday_activity=[0.9, 0.9, 1.0, 1.0, 1.1, 1.2, 1.0],
            base_ctr=0.020,
            base_cvr=0.015,
            creative_affinity={"image": 0.9, "video": 1.0, "carousel": 1.5},
        ),
    ]


def default_audiences() -> list[Audience]:
    return [
        Audience(
            name="young_adults",
            age_groups=["18-24", "25-34"],
            interests=["gaming", "music", "fashion"],
            brand_risk=0.12,
        ),
        Audience(
            name="professionals",
            age_groups=["25-34", "45-54"],
            interests=["tech", "finance", "travel"],
            brand_risk=0.03,
        ),
        Audience(name="families", age_groups=["35-44"], interests=["home", "kids", "food"], brand_risk=0.04),
        Audience(
            name="seniors",
            age_groups=["65+", "45-54"],
            interests=["health", "home", "travel"],
            brand_risk=0.05,
        ),
        Audience(
            name="broad",
            age_groups=["18-24", "25-34", "35-44", "45-54", "65+"],
            interests=[],
            brand_risk=0.10,
        ),
    ]


def default_creatives() -> list[Creative]:
    return [
        Creative(name="image", visual_richness=0.4, motion=0.0, items_shown=0.2),
        Creative(name="video", visual_richness=0.9, motion=1.0, items_shown=0.3),
        Creative(name="carousel", visual_richness=0.6, motion=0.2, items_shown=1.0),
    ]


def default_products() -> list[Product]:
    return [
        Product(name="running_shoes", revenue_per_conversion=60.0, interests=["fitness", "fashion"]),
        Product(name="laptop_sleeve", revenue_per_conversion=35.0, interests=["tech", "travel"]),
        Product(name="meal_kit", revenue_per_conversion=45.0, interests=["food", "home", "kids"]),
        Product(
            name="travel_insurance", revenue_per_conversion=90.0, interests=["travel", "finance", "health"]
        ),
        Product(name="video_game", revenue_per_conversion=40.0, interests=["gaming", "music"]),
    ]


class MarketConfig(BaseModel):
    """Everything about one difficulty of the market. All money is in dollars."""

    model_config = ConfigDict(extra="forbid")

    name: str = "default"
    personas: list[Persona] = Field(default_factory=default_personas, min_length=1)
    audiences: list[Audience] = Field(default_factory=default_audiences, min_length=4)
    creatives: list[Creative] = Field(default_factory=default_creatives, min_length=3, max_length=3)
    products: list[Product] = Field(default_factory=default_products, min_length=1)
    episode_length: int = Field(HOURS_PER_DAY, ge=1, le=HOURS_PER_DAY, description="hourly steps per episode")
    opportunities_per_hour: float = Field(
        4000.0, gt=0, description="ad opportunities per hour across all personas at mean activity"
    )
    # Auction
    auction: str = Field("second_price", pattern="^(second_price|first_price)$")
    reserve_cpm: float = Field(0.5, ge=0.0, description="reserve price per 1000 impressions")
    competition: bool = Field(True, description="whether other bidders take part")
    competitor_median_cpm: float = Field(6.0, gt=0, description="median of the best competing CPM bid")
    competitor_spread: float = Field(0.6, gt=0, description="log-normal sigma of competing bids")
    competitor_adaptation: float = Field(
        0.0, ge=0.0, description="how fast competitors raise bids when we win (0 = static)"
    )
    competitor_target_win_rate: float = Field(0.3, gt=0.0, lt=1.0)
    # Conversions
    attribution_window_hours: int = Field(12, ge=1, le=48)
    mean_conversion_delay_hours: float = Field(2.0, gt=0.0)
    # Budget
    max_daily_budget: float = Field(200.0, ge=10.0, description="account cap on the daily budget")
    bid_cap: float = Field(20.0, gt=0.0, description="bids above this are penalized as a constraint breach")
    target_roas: float = Field(1.5, gt=0.0, description="ROAS that counts an episode as a success")
    # Noise and non-stationarity
    traffic_volatility: float = Field(0.0, ge=0.0, description="log-normal sigma of hourly traffic")
    drift: float = Field(0.0, ge=0.0, description="hourly random-walk sigma of CTR and competitor bids")
    observation_noise: float = Field(0.0, ge=0.0, description="relative noise on reported KPIs")
    pctr_noise: float = Field(0.0, ge=0.0, description="log-normal sigma of the platform's CTR estimate")
    seasonality_amplitude: float = Field(0.0, ge=0.0, lt=1.0, description="day-of-year traffic swing")
    reward_weights: RewardWeights = Field(default_factory=RewardWeights)
    reward_roas_clip: float = Field(10.0, gt=0.0, description="per-step ROAS component is clipped here")
    reward_conversion_scale: float = Field(5.0, gt=0.0, description="conversions are divided by this")

    @model_validator(mode="after")
    def _check_names(self) -> MarketConfig:
        names = [creative.name for creative in self.creatives]
        if tuple(names) != CREATIVE_TYPES:
            raise ValueError(f"creatives must be {CREATIVE_TYPES} in that order, got {names}")
        return self


def _level(name: str, persona_names: list[str] | None, **fields: object) -> MarketConfig:
    personas = default_personas()
    if persona_names is not None:
        personas = [persona for persona in personas if persona.name in persona_names]
    return MarketConfig(name=name, personas=personas, **fields)


def default_curriculum() -> list[MarketConfig]:
    """Level 0 (easiest) to level 3 (hardest)."""
    return [
        _level(
            "single_persona",
            ["young_professionals"],
            competition=False,
            reserve_cpm=8.0,
            max_daily_budget=200.0,
            target_roas=1.5,
        ),
        _level(
            "many_personas",
            None,
            competition=True,
            competitor_median_cpm=10.0,
            reserve_cpm=2.0,
            max_daily_budget=200.0,
            target_roas=1.5,
        ),
        _level(
            "adaptive_competitors",
            None,
            competition=True,
            competitor_median_cpm=12.0,
            reserve_cpm=2.0,
            competitor_adaptation=0.5,
            auction="first_price",
            max_daily_budget=120.0,
            target_roas=1.3,
            traffic_volatility=0.1,
        ),
        _level(
            "noisy_nonstationary_tight",
            None,
            competition=True,
            competitor_median_cpm=14.0,
            reserve_cpm=2.0,
            competitor_adaptation=0.8,
            max_daily_budget=50.0,
            bid_cap=8.0,
            target_roas=1.2,
            traffic_volatility=0.3,
            drift=0.05,
            observation_noise=0.1,
            pctr_noise=0.2,
            seasonality_amplitude=0.3,
        ),
    ]


CURRICULUM_LEVELS: tuple[MarketConfig, ...] = tuple(default_curriculum())


def curriculum_level(level: int | str) -> MarketConfig:
    """A copy of a curriculum level, by index or by name."""
    if isinstance(level, str):
        for config in CURRICULUM_LEVELS:
            if config.name == level:
                return config.model_copy(deep=True)
        raise KeyError(f"unknown curriculum level {level!r}; known: {[c.name for c in CURRICULUM_LEVELS]}")
    if not 0 <= level < len(CURRICULUM_LEVELS):
        raise IndexError(f"curriculum level {level} out of range 0..{len(CURRICULUM_LEVELS) - 1}")
    return CURRICULUM_LEVELS[level].model_copy(deep=True)


def load_level_config(path: str | Path) -> MarketConfig:
    """Read a level from YAML; `base: <level name or index>` starts from a built-in level."""
    data = yaml.safe_load(Path(path).read_text()) or {}
    base = data.pop("base", None)
    if base is None:
        return MarketConfig(**data)
    merged = curriculum_level(base).model_dump() | data
    return MarketConfig(**merged)


def resolve_market_config(level: int | str | MarketConfig | None) -> MarketConfig:
    if level is None:
        return curriculum_level(0)
    if isinstance(level, MarketConfig):
        return level
    if isinstance(level, str) and level.endswith((".yaml", ".yml")):
        return load_level_config(level)
    if isinstance(level, str) and level.isdigit():
        return curriculum_level(int(level))
    return curriculum_level(level)
