"""Semantic versions (semver.org 2.0) and the version constraints clients resolve them with.

Registered versions are full MAJOR.MINOR.PATCH with an optional -prerelease; build metadata (+...)
is refused because two versions differing only in build metadata would have equal precedence.

Constraints follow the npm/cargo conventions people already know:
  "1.2.3" or "=1.2.3"  exactly that version
  "^1.2"               >=1.2.0 <2.0.0   (^0.2 -> <0.3.0, ^0.0.3 -> <0.0.4)
  "~1.2.0"             >=1.2.0 <1.3.0   (~1 -> <2.0.0)
  "1.2", "1.2.x"       >=1.2.0 <1.3.0
  ">=1.0,<2"           comparators joined by commas or spaces are all required
  "^1 || ^2"           alternatives
  "", "*"              any version
A prerelease version only satisfies a constraint that names a prerelease of the same
MAJOR.MINOR.PATCH (so "^1.2" never picks 2.0.0-rc.1 or 1.3.0-beta).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

_NUMBER = r"0|[1-9]\d*"
_PRERELEASE_ID = r"0|[1-9]\d*|\d*[A-Za-z-][0-9A-Za-z-]*"
_SEMVER = re.compile(
    rf"^(?P<major>{_NUMBER})\.(?P<minor>{_NUMBER})\.(?P<patch>{_NUMBER})"
    rf"(?:-(?P<prerelease>(?:{_PRERELEASE_ID})(?:\.(?:{_PRERELEASE_ID}))*))?"
    r"(?:\+(?P<build>[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?$"
)
# A possibly partial version inside a constraint: "1", "1.2", "1.x", "1.2.3-rc.1".
_PARTIAL = re.compile(
    rf"^(?P<major>{_NUMBER}|[xX*])(?:\.(?P<minor>{_NUMBER}|[xX*]))?(?:\.(?P<patch>{_NUMBER}|[xX*]))?"
    rf"(?:-(?P<prerelease>(?:{_PRERELEASE_ID})(?:\.(?:{_PRERELEASE_ID}))*))?$"
)
_OPERATOR = re.compile(r"^(>=|<=|>|<|=|\^|~)?\s*(.*)$")
_WILDCARDS = {"x", "X", "*"}
MAX_VERSION_LENGTH = 64


@functools.total_ordering
@dataclass(frozen=True)
class SemVer:
    major: int
    minor: int
    patch: int
    prerelease: tuple[int | str, ...] = ()

    @property
    def release(self) -> tuple[int, int, int]:
        return (self.major, self.minor, self.patch)

    def _precedence(self) -> tuple[object, ...]:
        # A release sorts above its prereleases; numeric identifiers sort below alphanumeric ones.
        identifiers = tuple(
            (0, part, "") if isinstance(part, int) else (1, 0, part) for part in self.prerelease
        )
        return (*self.release, 0 if self.prerelease else 1, identifiers)

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, SemVer):
            return NotImplemented
        return self._precedence() < other._precedence()

    def __str__(self) -> str:
        text = f"{self.major}.{self.minor}.{self.patch}"
        if self.prerelease:
            text += "-" + ".".join(str(part) for part in self.prerelease)
        return text


def _prerelease_parts(text: str | None) -> tuple[int | str, ...]:
    if not text:
        return ()
    return tuple(int(part) if part.isdigit() else part for part in text.split("."))


def parse_version(text: str) -> SemVer:
    """Parse a full semantic version; ValueError says what is wrong."""
    if len(text) > MAX_VERSION_LENGTH:
        raise ValueError(f"version is longer than {MAX_VERSION_LENGTH} characters")
    match = _SEMVER.match(text)
    if match is None:
        raise ValueError(f"{text!r} is not a semantic version MAJOR.MINOR.PATCH[-prerelease]")
    if match["build"] is not None:
        raise ValueError(
            f"{text!r} has build metadata (+{match['build']}); it does not change precedence, "
            "so it cannot tell versions apart: drop it or use a prerelease"
        )
    return SemVer(
        int(match["major"]), int(match["minor"]), int(match["patch"]), _prerelease_parts(match["prerelease"])
    )


def is_exact_version(text: str) -> bool:
    return _SEMVER.match(text) is not None


# The lowest version with a given release: MAJOR.MINOR.PATCH-0 sorts below every other prerelease.
def _floor(major: int, minor: int, patch: int) -> SemVer:
    return SemVer(major, minor, patch, (0,))


@dataclass(frozen=True)
class _Comparator:
    operator: str  # one of >=, >, <=, <, =
    version: SemVer

    def allows(self, version: SemVer) -> bool:
        match self.operator:
            case ">=":
                return version >= self.version
            case ">":
                return version > self.version
            case "<=":
                return version <= self.version
            case "<":
                return version < self.version
            case _:
                return version == self.version


@dataclass(frozen=True)
class _ComparatorSet:
    """Comparators that must all hold, plus the releases whose prereleases the user named."""

    comparators: tuple[_Comparator, ...]
    prerelease_releases: frozenset[tuple[int, int, int]]

    def allows(self, version: SemVer) -> bool:
        if version.prerelease and version.release not in self.prerelease_releases:
            return False
        return all(comparator.allows(version) for comparator in self.comparators)


@dataclass(frozen=True)
class VersionConstraint:
    text: str
    alternatives: tuple[_ComparatorSet, ...]

    def allows(self, version: SemVer) -> bool:
        return any(alternative.allows(version) for alternative in self.alternatives)


def parse_constraint(text: str) -> VersionConstraint:
    """Parse a constraint (see the module doc); ValueError names the clause that is wrong."""
    if len(text) > 4 * MAX_VERSION_LENGTH:
        raise ValueError(f"version constraint is longer than {4 * MAX_VERSION_LENGTH} characters")
    alternatives = []
    pieces = text.split("||")
    for alternative in pieces:
        clauses = [clause for clause in re.split(r"[,\s]+", _join_operators(alternative.strip())) if clause]
        if not clauses and len(pieces) > 1:
            raise ValueError(f"{text!r} has an empty alternative around '||'")
        comparators: list[_Comparator] = []
        prerelease_releases: set[tuple[int, int, int]] = set()
        for clause in clauses or ["*"]:
            clause_comparators, named_prerelease = _parse_clause(clause)
            comparators.extend(clause_comparators)
            if named_prerelease is not None:
                prerelease_releases.add(named_prerelease)
        alternatives.append(_ComparatorSet(tuple(comparators), frozenset(prerelease_releases)))
    return VersionConstraint(text, tuple(alternatives))


def _join_operators(text: str) -> str:
    """'>= 1.0' -> '>=1.0', so that whitespace can separate clauses."""
    return re.sub(r"(>=|<=|>|<|=|\^|~)\s+", r"\1", text)


def _parse_clause(clause: str) -> tuple[list[_Comparator], tuple[int, int, int] | None]:
    operator_match = _OPERATOR.match(clause)
    assert operator_match is not None  # the pattern matches every string
    operator, body = operator_match[1] or "", operator_match[2]
    if body in _WILDCARDS and operator in {"", "="}:
        return [], None
    partial = _PARTIAL.match(body)
    if partial is None:
        raise ValueError(f"{clause!r} is not a version, a partial version or a comparator on one")
    parts: list[int] = []
    for name in ("major", "minor", "patch"):
        value = partial[name]
        if value is None or value in _WILDCARDS:
            break
        parts.append(int(value))
    prerelease = _prerelease_parts(partial["prerelease"])
    if prerelease and len(parts) < 3:
        raise ValueError(f"{clause!r}: a prerelease needs a full MAJOR.MINOR.PATCH")
    if not parts and operator not in {"", "="}:
        raise ValueError(f"{clause!r}: a comparator needs at least a major version")
    named = (parts[0], parts[1], parts[2]) if prerelease else None
    return _comparators(operator, parts, prerelease), named


def _comparators(operator: str, parts: list[int], prerelease: tuple[int | str, ...]) -> list[_Comparator]:
    padded = [*parts, 0, 0, 0][:3]
    lower = SemVer(padded[0], padded[1], padded[2], prerelease)
    full = len(parts) == 3
    if operator in {"", "="}:
        if full:
            return [_Comparator("=", lower)]
        return [_Comparator(">=", lower), *_below_next(parts, len(parts) - 1)] if parts else []
    if operator == "^":
        # The leftmost non-zero component given is the one that may not change.
        fixed = next((index for index, value in enumerate(parts) if value != 0), len(parts) - 1)
        return [_Comparator(">=", lower), *_below_next(parts, fixed)]
    if operator == "~":
        return [_Comparator(">=", lower), *_below_next(parts, min(len(parts) - 1, 1))]
    if full:
        return [_Comparator(operator, lower)]
    # Partial bounds cover whole ranges: ">1.2" means above every 1.2.x, "<=1.2" includes them.
    match operator:
        case ">=":
            return [_Comparator(">=", lower)]
        case ">":
            return [_Comparator(">=", _bump(parts, len(parts) - 1))]
        case "<":
            return [_Comparator("<", _floor(*padded))]
        case _:  # "<="
            return _below_next(parts, len(parts) - 1)


def _bump(parts: list[int], index: int) -> SemVer:
    bumped = [*parts[:index], parts[index] + 1, 0, 0, 0][:3]
    return _floor(bumped[0], bumped[1], bumped[2])


def _below_next(parts: list[int], index: int) -> list[_Comparator]:
    return [_Comparator("<", _bump(parts, index))]
