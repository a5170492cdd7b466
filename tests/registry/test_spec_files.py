"""configs/environments: valid specs with real entry points, registered at start, held immutable."""

from __future__ import annotations

import asyncio
import importlib
import inspect
import json
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from environment_registry.spec_files import PHASES_BY_NAME, SpecFileError, load_spec_file, load_spec_files
from environment_registry.specs import SpecLimits, validate_spec
from gaelp.config import load_settings
from gaelp.v1 import registry_pb2

REPO_ROOT = Path(__file__).resolve().parents[2]
SPECS_DIR = REPO_ROOT / "configs" / "environments"
SPEC_PATHS = sorted(SPECS_DIR.glob("*.yaml"))
T = 5.0  # seconds: the deadline of every call


def limits() -> SpecLimits:
    settings = load_settings()
    return SpecLimits(
        max_string_length=settings.grpc.max_string_length,
        max_config_bytes=settings.environment_registry.max_config_bytes,
        max_tags=settings.environment_registry.max_tags,
        entry_point_modules=tuple(settings.environment_registry.entry_point_modules),
    )


def resolve_entry_point(entry_point: str) -> object:
    module_name, _, attribute_path = entry_point.partition(":")
    target: object = importlib.import_module(module_name)
    for attribute in attribute_path.split("."):
        target = getattr(target, attribute)
    return target


def test_the_specs_of_every_phase_are_there() -> None:
    specs = [spec for _, spec in load_spec_files(SPECS_DIR)]
    assert {"ad-market-simulator", "historical-evaluator", "platform-sandbox"} <= {spec.id for spec in specs}
    assert {phase for spec in specs for phase in spec.phases} == set(PHASES_BY_NAME)


@pytest.mark.parametrize("path", SPEC_PATHS, ids=[path.stem for path in SPEC_PATHS])
def test_spec_file_is_valid_and_its_entry_point_takes_its_config(path: Path) -> None:
    valid = validate_spec(load_spec_file(path).to_message(), limits())
    entry_point = resolve_entry_point(valid.content.entry_point)
    assert callable(entry_point), valid.content.entry_point
    # `config` holds the entry point's keyword arguments: every name must be one it accepts.
    inspect.signature(entry_point).bind_partial(**json.loads(valid.content.config_json))


def test_a_wrong_entry_point_would_fail_the_check() -> None:
    with pytest.raises(AttributeError):
        resolve_entry_point("gaelp.sim:make_ad_vector_environment")
    with pytest.raises(ModuleNotFoundError):
        resolve_entry_point("gaelp.sim.no_such_module:make")
    with pytest.raises(TypeError):
        inspect.signature(resolve_entry_point("gaelp.sim:make_ad_vector_env")).bind_partial(levels=2)


def test_a_spec_file_with_unknown_fields_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "typo.yaml"
    path.write_text("id: x\nversion: 1.0.0\nentry_point: a:b\nphases: [simulation]\nphase: [scaled]\n")
    with pytest.raises(SpecFileError, match="phase"):
        load_spec_file(path)


async def test_spec_files_are_registered_at_start_and_a_changed_version_stops_the_start(
    tmp_path: Path, start_registry: Callable[..., Any], registry_stub_for: Callable[..., Any]
) -> None:
    database_url = f"sqlite:///{tmp_path / 'registry.db'}"
    registry = start_registry(database_url, specs_dir=SPECS_DIR)
    stub = registry_stub_for(registry)
    listed = await stub.List(registry_pb2.ListEnvironmentsRequest(), timeout=T)
    assert {(s.id, s.version) for s in listed.specs} == {
        (spec.id, spec.version) for _, spec in load_spec_files(SPECS_DIR)
    }
    sandbox = next(s for s in listed.specs if s.id == "platform-sandbox")
    assert sandbox.remote_protocol == registry_pb2.REMOTE_PROTOCOL_MCP
    assert sandbox.health != registry_pb2.ENVIRONMENT_HEALTH_UNSPECIFIED  # remote: probed
    local = next(s for s in listed.specs if s.id == "ad-market-simulator")
    assert local.health == registry_pb2.ENVIRONMENT_HEALTH_UNSPECIFIED  # local: not probed
    assert registry.stop() == 0

    # A restart on the same database registers nothing new and serves the same specs.
    restarted = start_registry(database_url, specs_dir=SPECS_DIR)
    assert "already registered" in restarted.log()
    assert restarted.stop() == 0

    # Editing a spec without bumping its version contradicts the stored one: the start fails.
    edited_dir = tmp_path / "edited"
    shutil.copytree(SPECS_DIR, edited_dir)
    edited = edited_dir / "ad_market_simulator.yaml"
    data = yaml.safe_load(edited.read_text())
    data["config"]["num_envs"] = data["config"]["num_envs"] + 1
    edited.write_text(yaml.safe_dump(data))
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "environment_registry",
        env={
            **os.environ,
            "GAELP_GRPC_PORT": "0",
            "GAELP_DATABASE_URL": database_url,
            "GAELP_ENVIRONMENT_REGISTRY_SPECS_DIR": str(edited_dir),
        },
        cwd=REPO_ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 1
    assert b"ad_market_simulator.yaml" in output
    assert b"differs in: config_json" in output
