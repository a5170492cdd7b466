"""Input checks shared by servicers; each raises InvalidArgument with the field name in the message.

Messages quote at most a short prefix of an offending value (excerpt), so an error about a 100 kB
field stays a short status line.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Set as AbstractSet
from typing import Any, TypeVar

from gaelp.service.errors import InvalidArgument

_IDENTIFIER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/@-]*$")
EXCERPT_CHARS = 40
MAX_JSON_DEPTH = 32


def excerpt(value: str, limit: int = EXCERPT_CHARS) -> str:
    """The value quoted for an error message: whole if short, else its first characters and length."""
    if len(value) <= limit:
        return repr(value)
    return f"{value[:limit]!r}... ({len(value)} characters)"


def require_unicode(name: str, value: str) -> str:
    """Refuse text that is not valid Unicode (a lone surrogate cannot be encoded, stored or sent)."""
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as error:
            raise InvalidArgument(
                f"{name} is not valid Unicode (a lone surrogate at character {error.start})"
            ) from None
    return value


def require_text(name: str, value: str, *, max_length: int = 256, required: bool = True) -> str:
    if required and not value:
        raise InvalidArgument(f"{name} is required")
    if len(value) > max_length:
        raise InvalidArgument(f"{name} is longer than {max_length} characters")
    return require_unicode(name, value)


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


EnumValue = TypeVar("EnumValue", bound=int)  # a protobuf enum's ValueType (an int)


def require_enum(name: str, value: EnumValue, allowed: AbstractSet[EnumValue]) -> EnumValue:
    if value not in allowed:
        raise InvalidArgument(f"{name} has an unknown or unset value {value}")
    return value


def _nesting_depth(text: str) -> int:
    """The deepest array/object nesting of JSON text, counted without parsing (strings skipped), so
    that a deep document is refused before the recursive parser could overflow the stack."""
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _check_values(name: str, value: Any) -> None:
    """Every string valid Unicode and every number finite (1e999 parses to inf)."""
    if isinstance(value, str):
        require_unicode(name, value)
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidArgument(f"{name} holds a number out of the finite range")
    elif isinstance(value, dict):
        for key, item in value.items():
            require_unicode(f"{name} (a key)", key)
            _check_values(name, item)
    elif isinstance(value, list):
        for item in value:
            _check_values(name, item)


def parse_json_object(
    name: str, text: str, *, max_bytes: int, max_depth: int = MAX_JSON_DEPTH
) -> dict[str, Any]:
    """A JSON object from a request field, within size and nesting limits, with valid Unicode
    strings and finite numbers only; empty text is {}. Anything else raises InvalidArgument."""
    require_unicode(name, text)
    if len(text.encode("utf-8")) > max_bytes:
        raise InvalidArgument(f"{name} is larger than {max_bytes} bytes")
    if not text.strip():
        return {}
    depth = _nesting_depth(text)
    if depth > max_depth:
        raise InvalidArgument(f"{name} nests {depth} levels deep, at most {max_depth} are allowed")
    try:
        parsed = json.loads(text, parse_constant=_reject_constant)
    except ValueError as error:  # JSONDecodeError, and int() of a number with too many digits
        raise InvalidArgument(f"{name} is not valid JSON: {str(error)[:120]}") from None
    if not isinstance(parsed, dict):
        raise InvalidArgument(f"{name} must be a JSON object, got {type(parsed).__name__}")
    _check_values(name, parsed)
    return parsed
