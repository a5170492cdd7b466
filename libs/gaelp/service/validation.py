"""Input checks shared by servicers; each raises InvalidArgument with the field name in the message."""

from __future__ import annotations

import math
import re

from gaelp.service.errors import InvalidArgument

_IDENTIFIER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/@-]*$")


def require_text(name: str, value: str, *, max_length: int = 256, required: bool = True) -> str:
    if required and not value:
        raise InvalidArgument(f"{name} is required")
    if len(value) > max_length:
        raise InvalidArgument(f"{name} is longer than {max_length} characters")
    return value


def require_identifier(name: str, value: str, *, max_length: int = 128) -> str:
    require_text(name, value, max_length=max_length)
    if not _IDENTIFIER.match(value):
        raise InvalidArgument(
            f"{name} must start with a letter or digit and use only letters, digits and ._:/@-"
        )
    return value


def require_number(
    name: str,
    value: float,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    exclusive_minimum: bool = False,
) -> float:
    if not math.isfinite(value):
        raise InvalidArgument(f"{name} must be a finite number, got {value}")
    if minimum is not None and (value <= minimum if exclusive_minimum else value < minimum):
        relation = ">" if exclusive_minimum else ">="
        raise InvalidArgument(f"{name} must be {relation} {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise InvalidArgument(f"{name} must be <= {maximum}, got {value}")
    return value


def require_enum(name: str, value: int, allowed: set[int]) -> int:
    if value not in allowed:
        raise InvalidArgument(f"{name} has an unknown or unset value {value}")
    return value
