"""The entry-point allow-list the registry and the orchestrator both apply."""

from __future__ import annotations

import pytest

from gaelp.entry_points import in_allowed_module

ALLOWED = ("gaelp.sim", "gaelp.rl")


@pytest.mark.parametrize("entry_point", ["gaelp.sim:make", "gaelp.sim.market.env:make_vector_env",
                                         "gaelp.rl.gymnasium_env:make_vector_env"])
def test_modules_under_an_allowed_package_pass(entry_point: str) -> None:
    assert in_allowed_module(entry_point, ALLOWED)


@pytest.mark.parametrize("entry_point", ["os:system", "builtins:eval", "gaelp.simulator_of_mine:make",
                                         "gaelp:sim", "gaelp.service.runtime:ServiceRuntime", ""])
def test_everything_else_is_refused(entry_point: str) -> None:
    assert not in_allowed_module(entry_point, ALLOWED)


def test_an_empty_allow_list_allows_nothing() -> None:
    assert not in_allowed_module("gaelp.sim:make", ())
