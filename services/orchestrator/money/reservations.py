"""The reservation policy: how much a decision window may let the platform spend, and its keys.

A campaign runs in windows of `step_hours` platform hours that never span two platform days. Before
the platform calls that open a window (create, budget, bid, creative or audience changes; time
passing with the campaign active is what spends), the orchestrator reserves the most the platform
may spend in it under its own rules: one day spends at most overdelivery_factor x the daily budget
in force, so what is left of the day is at most

    cap = overdelivery_factor x daily_budget - spend already reported for the day

(reported spend is a lower bound of what was spent, so the cap is an upper bound of what is left;
the monthly rule, monthly_budget_factor x the budget, only ever lowers it and is not needed for a
bound). Amounts are rounded up to the cent, and are at least one cent (the ledger reserves no zero
amounts; a cent more than the platform can spend is on the safe side). Keys are derived from run,
ledger campaign, phase, the run's entry into the phase (its attempt: RunDocument.phase_entry),
campaign index and window, so a retry or a restarted orchestrator asks for the same reservation and
the ledger answers with the decision it stored, while a run that re-enters the phase after a
demotion asks under keys of its own (an earlier entry's keys would get that entry's decisions).
"""

from __future__ import annotations

import math

from gaelp.config.sections.money import PlatformRules

MICROS = 1_000_000


def window_cap(rules: PlatformRules, daily_budget: float, reported_today: float) -> float:
    """Dollars, rounded up to the cent: the most one window of the day may spend."""
    cap = max(rules.overdelivery_factor * daily_budget - reported_today, 0.0)
    return max(math.ceil(round(cap * 100, 6)), 1) / 100


def as_micros(dollars: float) -> float:
    """Dollars rounded to whole micro-dollars (what the ledger accepts)."""
    return round(dollars * MICROS) / MICROS


def reservation_key(run_id: str, ledger_campaign: str, phase: int, attempt: int, campaign_index: int,
                    window: int) -> str:
    return f"{run_id}:{ledger_campaign}:p{phase}:a{attempt}:c{campaign_index}:w{window}"


def episode_id(run_id: str, phase: int, attempt: int, campaign_index: int) -> str:
    return f"{run_id}-p{phase}-a{attempt}-c{campaign_index}"
