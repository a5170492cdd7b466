"""Calibration of a simulator level on logged campaign data, before it predicts for phase 2.

The logs come from a market unlike the simulator (the platform sandbox's). A real system would not
compare its policies against an uncalibrated simulator: it first fits the simulator's market
parameters to what the logs show, then predicts. The rules:

What is read. Only the logged rows: the logging policy's arms (its continuous actions are the logs'
LoggingSetup) and the platform's reports per row (impressions, clicks, conversions, spend), plus the
account's own terms (AccountTerms: budget cap, ROAS target, bid cap), which the advertiser knows
and its policy sees in its observation. Never the logged market's configuration: that is the
truth being estimated.

What is fitted (FITTED_PARAMETERS, each over a grid):
    first_price            auction format (1 first price, 0 second price): the CPM paid vs the bid
    competitor_median_cpm  median of the best competing CPM bid: impressions won and CPM paid
    competitor_spread      log-normal sigma of competing bids: with the median, the same two
    competitor_adaptation  how fast competitors raise bids when we win: the hourly trend of both
    traffic_volatility     log-normal sigma of hourly traffic: the impressions' overdispersion
    ctr_scale              factor on every persona's base CTR: clicks per impression, per arm
    cvr_scale              factor on every persona's base CVR: conversions per click
The world's structure (personas' shares, activity curves and relative rates, audiences, creatives,
products), the reserve price and the rest of the level stay the level's: the logs' one bid cannot
identify them. The account terms replace the level's.

The loss. The logged arms are replayed in the candidate market (the same arm sequence, every
campaign of the logs `REPLAY_COPIES` times over, the logs' continuous actions, a fixed seed so that
candidates share their random draws), and these moments of the replay are compared with the logs':
    ctr_by_arm             clicks per impression, per arm
    impressions_by_hour    mean impressions per campaign-hour, per hour of day
    cpm_by_hour            spend per 1000 impressions, per hour of day
    conversions_per_click  all conversions / all clicks
    dispersion             variance / mean of impressions, over cells of (hour of day, audience),
                           in the rows whose campaign still had budget after the hour
Loss = sum over the groups of the mean squared relative error of the group's moments (moments whose
logged value is 0 are left out), so each group weighs the same whatever its size.

The search. First the opening: the auction format, the competitors' median and spread (OPENING)
over the whole of their grids, jointly, on the first hour of the logged days alone (mean
impressions and CPM paid, before competitors adapt to anything; one replayed hour per candidate).
Then the competitors' adaptation over its grid, to the opening's median and spread (the rest of the
day). From there coordinate search: each parameter in turn takes the best value of its grid with
the others fixed. The
competitors' parameters (COUPLED) trade off against one another (a lower median with faster
adaptation makes a similar day), which stalls a search along one axis at a time, so after each
sweep they also move together to the best of their grid neighbours (one grid step up, down or none
on each), as long as that lowers the loss. Sweeps repeat until one changes nothing (at most
MAX_SWEEPS). That valley is narrow (the CPM paid is a deterministic function of the three), so the
competitors' parameters then follow it by scipy's Nelder-Mead (at most SIMPLEX_EVALUATIONS losses). Last,
the same coordinate search again on grids REFINEMENT times finer, one coarse step either side of
that fit (the auction format stays as fitted). Deterministic given the seed; about 2,000 replays
(most of them of one hour), about 10 s of CPU.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize

from gaelp.sim.historical.ad_logs import AccountTerms, LoggedAdData, fixed_continuous_actions
from gaelp.sim.market.config import HOURS_PER_DAY, MarketConfig
from gaelp.sim.market.core import MarketCore
from gaelp.sim.market.env import parse_actions


def _grid(low: float, high: float, step: float) -> tuple[float, ...]:
    return tuple(float(v) for v in np.round(np.arange(low, high + step / 2, step), 4))


# The coarse grid of each parameter; the fine stage searches REFINEMENT times finer around the fit.
FITTED_PARAMETERS: dict[str, tuple[float, ...]] = {
    "first_price": (0.0, 1.0),
    "competitor_median_cpm": _grid(4.0, 20.0, 0.5),
    "competitor_spread": _grid(0.3, 1.2, 0.05),
    "competitor_adaptation": _grid(0.0, 1.0, 0.05),
    "traffic_volatility": _grid(0.0, 0.5, 0.05),
    "ctr_scale": _grid(0.5, 1.5, 0.05),
    "cvr_scale": _grid(0.5, 2.0, 0.05),
}
DISCRETE: frozenset[str] = frozenset({"first_price"})
REFINEMENT = 5
MOMENT_GROUPS: tuple[str, ...] = (
    "ctr_by_arm", "impressions_by_hour", "cpm_by_hour", "conversions_per_click", "dispersion",
)
BUDGET_USED = 1e-3  # a campaign within this share of its daily budget has run out of it
REPLAY_COPIES = 2  # replayed campaigns per logged campaign: halves the replay's own sampling noise
COUPLED: tuple[str, ...] = ("competitor_median_cpm", "competitor_spread", "competitor_adaptation")
OPENING: tuple[str, ...] = ("first_price", "competitor_median_cpm", "competitor_spread")
MAX_SWEEPS = 6
SIMPLEX_EVALUATIONS = 150


@dataclass(frozen=True)
class Calibration:
    parameters: dict[str, float]  # fitted value per FITTED_PARAMETERS name
    loss: float  # at the fitted parameters
    uncalibrated_loss: float  # of the level as it is (with the account's terms)
    moment_errors: dict[str, float]  # per moment group at the fit: root mean squared relative error
    config: MarketConfig  # the calibrated simulator
    replays: int  # candidate markets replayed by the search


def level_parameters(level: MarketConfig) -> dict[str, float]:
    """The level's own values of the fitted parameters (where the search starts)."""
    return {
        "first_price": float(level.auction == "first_price"),
        "competitor_median_cpm": level.competitor_median_cpm,
        "competitor_spread": level.competitor_spread,
        "competitor_adaptation": level.competitor_adaptation,
        "traffic_volatility": level.traffic_volatility,
        "ctr_scale": 1.0,
        "cvr_scale": 1.0,
    }


def calibrated_config(
    level: MarketConfig, parameters: Mapping[str, float], account: AccountTerms | None = None
) -> MarketConfig:
    """The level with these values of FITTED_PARAMETERS and, when given, the account's terms."""
    personas = [
        persona.model_copy(update={
            "base_ctr": min(persona.base_ctr * parameters["ctr_scale"], 0.999),
            "base_cvr": min(persona.base_cvr * parameters["cvr_scale"], 0.999),
        })
        for persona in level.personas
    ]
    terms = account.model_dump() if account is not None else {}
    return level.model_copy(update={
        "name": f"{level.name}-calibrated",
        "personas": personas,
        "auction": "first_price" if parameters["first_price"] >= 0.5 else "second_price",
        "competitor_median_cpm": parameters["competitor_median_cpm"],
        "competitor_spread": parameters["competitor_spread"],
        "competitor_adaptation": parameters["competitor_adaptation"],
        "traffic_volatility": parameters["traffic_volatility"],
        **terms,
    })


@dataclass(frozen=True)
class _Rows:
    """Per-row reports of a log or a replay, rows ordered hour by hour, campaigns within an hour."""

    arm: np.ndarray
    impressions: np.ndarray
    clicks: np.ndarray
    conversions: np.ndarray
    spend: np.ndarray
    campaigns: int


def calibration_blocker(logs: LoggedAdData) -> str | None:
    """Why the simulator cannot be calibrated on `logs`, None when it can: the fit replays whole logged
    days of every campaign hour by hour and compares the platform's reports."""
    if logs.impressions is None or logs.spend is None or logs.conversions is None:
        return "the logs carry no impressions, spend and conversions per row"
    campaign = logs.campaign if logs.campaign is not None else np.zeros(logs.arm.shape[0], dtype=int)
    campaigns = int(np.unique(campaign).shape[0])
    hours, left = divmod(campaign.shape[0], campaigns)
    if left or hours % HOURS_PER_DAY or not np.array_equal(campaign, np.tile(campaign[:campaigns], hours)):
        return "not every campaign has the same hours, in whole days (24 rows a day)"
    return None


def _logged_rows(logs: LoggedAdData) -> _Rows:
    if logs.impressions is None or logs.spend is None or logs.conversions is None:
        raise ValueError("calibration needs logs with impressions, spend and conversions per row")
    hours = _logged_hours(logs)
    return _Rows(logs.arm, logs.impressions, logs.reward, logs.conversions, logs.spend,
                 logs.arm.shape[0] // hours)


def _logged_hours(logs: LoggedAdData) -> int:
    campaigns = int(np.unique(logs.campaign).shape[0]) if logs.campaign is not None else 1
    hours, left = divmod(logs.arm.shape[0], campaigns)
    if left or hours % HOURS_PER_DAY:
        raise ValueError("calibration needs whole logged days: rows = campaigns x 24 x days")
    return hours


def replay(config: MarketConfig, logs: LoggedAdData, seed: int, hours: int | None = None) -> _Rows:
    """The logged arms, hour by hour, in `config`'s market: each logged campaign's arm sequence
    played by REPLAY_COPIES campaigns, with the logs' continuous actions; a new day every 24 hours.
    hours: only the first so many logged hours (None: all)."""
    logged_hours = _logged_hours(logs)
    campaigns = logs.arm.shape[0] // logged_hours
    hours = logged_hours if hours is None else hours
    n = campaigns * REPLAY_COPIES
    arms = np.tile(logs.arm.reshape(logged_hours, campaigns)[:hours], (1, REPLAY_COPIES))
    core = MarketCore(config, n, seed)
    num_audiences = core.world.num_audiences
    continuous = fixed_continuous_actions(n, logs.setup)
    reports: dict[str, list[np.ndarray]] = {k: [] for k in ("impressions", "clicks", "conversions", "spend")}
    for hour in range(hours):
        if hour % HOURS_PER_DAY == 0:
            core.reset()
        discrete = {"creative": arms[hour] // num_audiences, "audience": arms[hour] % num_audiences}
        outcome = core.step(parse_actions(continuous | discrete, n, num_audiences))
        for kpi, values in reports.items():
            values.append(getattr(outcome, kpi))
    joined = {kpi: np.concatenate(values) for kpi, values in reports.items()}
    return _Rows(arm=arms.reshape(-1), campaigns=n, **joined)


def _budget_left(rows: _Rows, daily_budget: float) -> np.ndarray:
    """Per row: whether the campaign still had budget after the hour (a row the budget cut short has
    fewer impressions than the market offered, whatever the market's volatility)."""
    days = rows.spend.shape[0] // (rows.campaigns * HOURS_PER_DAY)
    spend = rows.spend.reshape(days, HOURS_PER_DAY, rows.campaigns)
    spent = np.cumsum(spend, axis=1).reshape(-1)
    return np.asarray(spent < daily_budget * (1.0 - BUDGET_USED))


def moments(rows: _Rows, num_arms: int, num_audiences: int, daily_budget: float) -> dict[str, np.ndarray]:
    """The moment groups of the loss (see the module docstring); daily_budget: what the platform
    lets a campaign spend in a day."""
    hour_of_day = (np.arange(rows.arm.shape[0]) // rows.campaigns) % HOURS_PER_DAY
    per_hour = np.bincount(hour_of_day, minlength=HOURS_PER_DAY).astype(np.float64)
    impressions_by_arm = np.bincount(rows.arm, weights=rows.impressions, minlength=num_arms)
    impressions_by_hour = np.bincount(hour_of_day, weights=rows.impressions, minlength=HOURS_PER_DAY)
    spend_by_hour = np.bincount(hour_of_day, weights=rows.spend, minlength=HOURS_PER_DAY)
    left = _budget_left(rows, daily_budget)
    cell = (hour_of_day * num_audiences + rows.arm % num_audiences)[left]
    cells = HOURS_PER_DAY * num_audiences
    count = np.bincount(cell, minlength=cells).astype(np.float64)
    total = np.bincount(cell, weights=rows.impressions[left], minlength=cells)
    square = np.bincount(cell, weights=rows.impressions[left] ** 2, minlength=cells)
    kept = (count > 1) & (total > 0)
    mean = total[kept] / count[kept]
    variance = (square[kept] - count[kept] * mean**2) / (count[kept] - 1)
    return {
        "ctr_by_arm": np.bincount(rows.arm, weights=rows.clicks, minlength=num_arms)
        / np.maximum(impressions_by_arm, 1e-9),
        "impressions_by_hour": impressions_by_hour / np.maximum(per_hour, 1),
        "cpm_by_hour": spend_by_hour * 1000.0 / np.maximum(impressions_by_hour, 1e-9),
        "conversions_per_click": np.array([rows.conversions.sum() / max(rows.clicks.sum(), 1e-9)]),
        "dispersion": np.array([float((variance / mean).mean()) if mean.size else 0.0]),
    }


def _group_errors(replayed: Mapping[str, np.ndarray], logged: Mapping[str, np.ndarray]) -> dict[str, float]:
    """Mean squared relative error per moment group (logged moments of 0 left out)."""
    errors = {}
    for group in MOMENT_GROUPS:
        target = logged[group]
        kept = target != 0
        relative = replayed[group][kept] / target[kept] - 1.0
        errors[group] = float((relative**2).mean()) if kept.any() else 0.0
    return errors


def _opening(rows: _Rows) -> np.ndarray:
    """Mean impressions per campaign and CPM paid in the first hour of the days of `rows`."""
    first = (np.arange(rows.arm.shape[0]) // rows.campaigns) % HOURS_PER_DAY == 0
    impressions = rows.impressions[first]
    return np.array([impressions.mean(), rows.spend[first].sum() * 1000.0 / max(impressions.sum(), 1e-9)])


def _opening_fit(
    level: MarketConfig, logs: LoggedAdData, start: dict[str, float], seed: int
) -> dict[str, float]:
    """The auction format, competitors' median and spread that best reproduce the first hour of the
    logged days (impressions and CPM paid, before competitors have adapted to anything), over the
    whole of their grids: where the search starts, clear of the valley the three share later on."""
    logged = _opening(_logged_rows(logs))
    best, best_loss = start, np.inf
    for values in itertools.product(*(FITTED_PARAMETERS[name] for name in OPENING)):
        candidate = start | dict(zip(OPENING, values, strict=True))
        replayed = _opening(replay(calibrated_config(level, candidate, logs.account), logs, seed, hours=1))
        loss = float(((replayed / np.maximum(logged, 1e-9) - 1.0) ** 2).sum())
        if loss < best_loss:
            best, best_loss = candidate, loss
    return best


def _nelder_mead(
    start: dict[str, float], evaluate: Callable[[Mapping[str, float]], float]
) -> dict[str, float]:
    """Nelder-Mead (scipy's) over the COUPLED parameters from `start` (a first simplex one coarse step
    along each), within their grids' ranges, at most SIMPLEX_EVALUATIONS losses: it follows the
    narrow valley along which they trade off, where moves on a grid stall."""
    low = np.array([FITTED_PARAMETERS[name][0] for name in COUPLED])
    high = np.array([FITTED_PARAMETERS[name][-1] for name in COUPLED])

    def at(point: np.ndarray) -> dict[str, float]:
        # Rounded as the grids are, so that the loss cache (calibrate's evaluate) is hit on revisits.
        values = np.round(np.clip(point, low, high), 4)
        return start | {name: float(v) for name, v in zip(COUPLED, values, strict=True)}

    origin = np.array([start[name] for name in COUPLED])
    steps = np.array([FITTED_PARAMETERS[name][1] - FITTED_PARAMETERS[name][0] for name in COUPLED])
    simplex = np.array([origin] + [np.clip(origin + np.eye(len(COUPLED))[i] * steps[i], low, high)
                                   for i in range(len(COUPLED))])
    result = minimize(lambda point: evaluate(at(point)), origin, method="Nelder-Mead",
                      bounds=list(zip(low, high, strict=True)),
                      options={"initial_simplex": simplex, "maxfev": SIMPLEX_EVALUATIONS,
                               "xatol": 1e-4, "fatol": 1e-9})
    moved = at(result.x)
    return moved if evaluate(moved) < evaluate(start) else start


def _fine_grids(fit: Mapping[str, float]) -> dict[str, tuple[float, ...]]:
    """Around the coarse fit: each continuous parameter from one coarse step below to one above,
    REFINEMENT times finer (within the coarse grid's range); discrete ones stay as fitted."""
    grids: dict[str, tuple[float, ...]] = {}
    for name, coarse in FITTED_PARAMETERS.items():
        if name in DISCRETE:
            grids[name] = (fit[name],)
            continue
        step = (coarse[1] - coarse[0]) / REFINEMENT
        fine = np.round(fit[name] + step * np.arange(-REFINEMENT, REFINEMENT + 1), 4)
        grids[name] = tuple(float(v) for v in fine if coarse[0] <= v <= coarse[-1])
    return grids


def _best_neighbour(
    parameters: dict[str, float], grids: Mapping[str, tuple[float, ...]],
    evaluate: Callable[[Mapping[str, float]], float],
) -> dict[str, float] | None:
    """The best joint move of the COUPLED parameters to neighbouring grid values, if it lowers the
    loss; None otherwise."""
    steps = []
    for name in COUPLED:
        grid = grids[name]
        at = int(np.argmin([abs(value - parameters[name]) for value in grid]))  # the level's may be off-grid
        steps.append([grid[i] for i in (at - 1, at, at + 1) if 0 <= i < len(grid)])
    candidates = [parameters | dict(zip(COUPLED, values, strict=True))
                  for values in itertools.product(*steps)]
    best = min(candidates, key=evaluate)
    return best if evaluate(best) < evaluate(parameters) else None


def _search(
    start: dict[str, float], grids: Mapping[str, tuple[float, ...]],
    evaluate: Callable[[Mapping[str, float]], float],
) -> dict[str, float]:
    """Coordinate sweeps over the grids, each followed by joint moves of the COUPLED parameters."""
    best = dict(start)
    for _ in range(MAX_SWEEPS):
        changed = False
        for name, grid in grids.items():
            candidates = {value: evaluate(best | {name: value}) for value in grid}
            value = min(candidates, key=lambda v: (candidates[v], abs(v - best[name])))
            if candidates[value] < evaluate(best):
                best[name], changed = value, True
        while (moved := _best_neighbour(best, grids, evaluate)) is not None:
            best, changed = moved, True
        if not changed:
            break
    return best


def calibrate(level: MarketConfig, logs: LoggedAdData, seed: int = 0) -> Calibration:
    """Fit FITTED_PARAMETERS of `level` to the logs by coordinate search (module docstring)."""
    num_audiences = logs.num_audiences
    # What the platform let a campaign spend in a day: the logged budget within the account's cap.
    daily_budget = min(logs.setup.daily_budget,
                       logs.account.max_daily_budget if logs.account is not None else np.inf)
    logged = moments(_logged_rows(logs), logs.num_arms, num_audiences, daily_budget)
    losses: dict[tuple[float, ...], tuple[float, dict[str, float]]] = {}

    def evaluate(parameters: Mapping[str, float]) -> float:
        key = tuple(parameters[name] for name in FITTED_PARAMETERS)
        if key not in losses:
            replayed_rows = replay(calibrated_config(level, parameters, logs.account), logs, seed)
            replayed = moments(replayed_rows, logs.num_arms, num_audiences, daily_budget)
            errors = _group_errors(replayed, logged)
            losses[key] = (sum(errors.values()), errors)
        return losses[key][0]

    start = level_parameters(level)
    uncalibrated_loss = evaluate(start)
    opened = _opening_fit(level, logs, start, seed)
    # The competitors' adaptation next, to the opening's median and spread: the rest of the day.
    adapted = min((opened | {"competitor_adaptation": value}
                   for value in FITTED_PARAMETERS["competitor_adaptation"]), key=evaluate)
    coarse = _nelder_mead(_search(adapted, FITTED_PARAMETERS, evaluate), evaluate)
    best = _search(coarse, _fine_grids(coarse), evaluate)
    loss, errors = losses[tuple(best[name] for name in FITTED_PARAMETERS)]
    return Calibration(
        parameters=best,
        loss=loss,
        uncalibrated_loss=uncalibrated_loss,
        moment_errors={group: float(np.sqrt(error)) for group, error in errors.items()},
        config=calibrated_config(level, best, logs.account),
        replays=len(losses),
    )
