"""Content and brand rules for a creative: forbidden keywords and score thresholds per phase.

A score that is missing fails the check; the system this replaced treated a missing score as safe.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from gaelp.config.sections.safety_policy import CreativeThresholds

SCORE_NAMES: tuple[str, ...] = ("brand_safety", "content_quality")


@dataclass(frozen=True)
class CreativeFinding:
    rule: str
    reason: str


def _keyword_pattern(keyword: str) -> re.Pattern[str]:
    # Whole words or phrases, case-insensitive: "cure" must not match "secure".
    return re.compile(rf"(?<!\w){re.escape(keyword.lower())}(?!\w)")


def assess_creative(
    headline: str,
    body: str,
    scores: Mapping[str, float],
    thresholds: CreativeThresholds,
    forbidden_keywords: Sequence[str],
) -> list[CreativeFinding]:
    """Every rule the creative breaks; an empty list means approved."""
    findings: list[CreativeFinding] = []
    text = f"{headline}\n{body}".lower()
    for keyword in forbidden_keywords:
        if _keyword_pattern(keyword).search(text):
            reason = f"contains the forbidden keyword {keyword!r}"
            findings.append(CreativeFinding("forbidden_keyword", reason))
    minimums = {
        "brand_safety": thresholds.brand_safety_min,
        "content_quality": thresholds.content_quality_min,
    }
    for name, minimum in minimums.items():
        if name not in scores:
            findings.append(CreativeFinding(f"{name}_missing", f"{name} score is missing"))
        elif scores[name] < minimum:
            findings.append(
                CreativeFinding(f"{name}_below_threshold", f"{name} score {scores[name]:.3f} < {minimum}")
            )
    return findings
