"""The creative a campaign goes live with, and the scores ValidateCreative judges it on.

The text comes from the catalogue: the product's name and interests and the creative format. The
scores are computed here, deterministically, from the text itself (never left to a caller):
  brand_safety    = 1 - 0.25 x (risky claims found), at least 0: superlatives, urgency and pressure
                    words that ad policies flag ("best", "now", "hurry", ...; whole words).
  content_quality = mean of four checks in [0, 1]: the headline is 3-12 words; the body is 8-40
                    words; no word is written in capitals only; the body names the product.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

RISKY_WORDS: tuple[str, ...] = ("best", "now", "hurry", "free", "only", "never", "always", "instant",
                                "limited", "act", "winner", "amazing")
_FORMAT_LINES = {
    "image": "See it at a glance",
    "video": "Watch how it fits your day",
    "carousel": "Browse the range, one card at a time",
}
_WORD = re.compile(r"[A-Za-z][A-Za-z'-]*")


@dataclass(frozen=True)
class Creative:
    headline: str
    body: str
    scores: dict[str, float]


def _words(text: str) -> list[str]:
    return _WORD.findall(text)


def creative_scores(headline: str, body: str, product_label: str) -> dict[str, float]:
    words = _words(f"{headline} {body}")
    risky = sum(1 for word in words if word.lower() in RISKY_WORDS)
    checks = [
        3 <= len(_words(headline)) <= 12,
        8 <= len(_words(body)) <= 40,
        not any(len(word) > 1 and word.isupper() for word in words),
        product_label.lower() in body.lower(),
    ]
    return {"brand_safety": max(0.0, 1.0 - 0.25 * risky), "content_quality": sum(checks) / len(checks)}


def make_creative(product: str, interests: list[str], creative_format: str) -> Creative:
    label = product.replace("_", " ")
    topics = " and ".join(interests[:2]) if interests else "everyday life"
    headline = f"{label.capitalize()} for {topics}"
    body = (f"{_FORMAT_LINES.get(creative_format, 'Have a look')}: our {label} is made for people who "
            f"care about {topics}. Compare the options and choose what suits you.")
    return Creative(headline, body, creative_scores(headline, body, label))
