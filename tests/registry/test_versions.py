"""Semantic version parsing, precedence and the constraint language of Get."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from environment_registry.versions import SemVer, is_exact_version, parse_constraint, parse_version

# semver.org's own precedence example, lowest first.
PRECEDENCE = [
    "1.0.0-alpha",
    "1.0.0-alpha.1",
    "1.0.0-alpha.beta",
    "1.0.0-beta",
    "1.0.0-beta.2",
    "1.0.0-beta.11",
    "1.0.0-rc.1",
    "1.0.0",
    "1.0.1",
    "1.1.0",
    "2.0.0",
    "10.0.0",
]
CATALOGUE = [
    "0.0.3",
    "0.0.4",
    "0.2.0",
    "0.2.5",
    "0.3.0",
    "1.0.0",
    "1.2.0",
    "1.2.7",
    "1.3.0-beta.1",
    "1.3.0",
    "1.10.2",
    "2.0.0-rc.1",
    "2.0.0",
    "2.1.0",
]


def highest(constraint: str) -> str | None:
    allowed = parse_constraint(constraint)
    matches = [v for v in map(parse_version, CATALOGUE) if allowed.allows(v)]
    return str(max(matches)) if matches else None


def test_precedence_follows_semver_org() -> None:
    parsed = [parse_version(text) for text in PRECEDENCE]
    assert sorted(reversed(parsed)) == parsed
    assert [str(version) for version in parsed] == PRECEDENCE


@pytest.mark.parametrize(
    "text",
    ["1.2", "1", "v1.2.3", "01.2.3", "1.02.3", "1.2.3-", "1.2.3-01", "1.2.3.4", "", " 1.2.3", "1.2.3-a..b"],
)
def test_malformed_versions_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="not a semantic version"):
        parse_version(text)


def test_build_metadata_is_refused_with_a_reason() -> None:
    with pytest.raises(ValueError, match="build metadata"):
        parse_version("1.2.3+exp.sha.5114f85")
    assert is_exact_version("1.2.3+exp.sha.5114f85")  # recognised as a version, then refused


@pytest.mark.parametrize(
    ("constraint", "expected"),
    [
        ("", "2.1.0"),
        ("*", "2.1.0"),
        ("^1.2", "1.10.2"),
        ("^1.2.7", "1.10.2"),
        ("^0.2", "0.2.5"),
        ("^0.2.1", "0.2.5"),
        ("^0.0.3", "0.0.3"),
        ("^0", "0.3.0"),
        ("~1.2.0", "1.2.7"),
        ("~1.2", "1.2.7"),
        ("~1", "1.10.2"),
        ("1.2", "1.2.7"),
        ("1.x", "1.10.2"),
        ("1.2.x", "1.2.7"),
        (">=1.0,<2", "1.10.2"),
        (">=1.0 <2", "1.10.2"),
        (">= 1.0, < 2", "1.10.2"),
        (">1.2", "2.1.0"),
        (">1.2 <2", "1.10.2"),
        ("<=1.2", "1.2.7"),
        ("<1.2", "1.0.0"),
        ("<1.2.7", "1.2.0"),
        ("=1.3.0", "1.3.0"),
        ("1.3.0", "1.3.0"),
        ("^3", None),
        ("^0.1", None),
        ("^1.2 || ^0.2", "1.10.2"),
        ("^0.0 || ~0.2.0", "0.2.5"),
    ],
)
def test_constraints_pick_the_highest_compatible_release(constraint: str, expected: str | None) -> None:
    assert highest(constraint) == expected


def test_prereleases_only_match_when_named() -> None:
    assert highest(">=1.3.0-alpha <1.4") == "1.3.0"
    assert parse_constraint(">=1.3.0-alpha <1.4").allows(parse_version("1.3.0-beta.1"))
    assert not parse_constraint("^1.2").allows(parse_version("1.3.0-beta.1"))
    assert not parse_constraint(">=1.0").allows(parse_version("2.0.0-rc.1"))
    assert parse_constraint("2.0.0-rc.1").allows(parse_version("2.0.0-rc.1"))
    assert highest("") == "2.1.0"
    assert not parse_constraint("").allows(parse_version("2.0.0-rc.1"))


@pytest.mark.parametrize(
    "constraint",
    ["^", ">=", "^x", "1.2.3.4", "abc", ">=1.0 banana", "1.2-rc.1", "^1 ||", "|| ^1", "1.0 - 2.0"],
)
def test_malformed_constraints_are_refused(constraint: str) -> None:
    with pytest.raises(ValueError):
        parse_constraint(constraint)


versions = st.builds(
    SemVer,
    st.integers(0, 30),
    st.integers(0, 30),
    st.integers(0, 30),
    st.lists(st.one_of(st.integers(0, 5), st.sampled_from(["alpha", "beta", "rc"])), max_size=3).map(tuple),
)


@given(versions)
def test_printing_and_parsing_round_trip(version: SemVer) -> None:
    assert parse_version(str(version)) == version


@given(versions, versions)
def test_caret_range_is_at_and_above_the_version_below_the_next_breaking_one(
    base: SemVer, candidate: SemVer
) -> None:
    release = SemVer(base.major, base.minor, base.patch)
    allowed = parse_constraint(f"^{release}")
    if candidate.prerelease:
        assert not allowed.allows(candidate)  # the constraint names no prerelease
        return
    if release.major > 0:
        same_line = candidate.major == release.major
    elif release.minor > 0:
        same_line = (candidate.major, candidate.minor) == (0, release.minor)
    else:
        same_line = candidate.release == release.release
    assert allowed.allows(candidate) == (same_line and candidate >= release)
