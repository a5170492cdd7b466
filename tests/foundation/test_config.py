"""Settings: presets load and validate, environment overrides win, the CLI reports errors by path."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from gaelp.cli.config_cmd import PRESETS, PRESETS_DIR
from gaelp.cli.main import main as gaelp_main
from gaelp.config import load_settings


@pytest.mark.parametrize("preset", PRESETS)
def test_every_preset_loads(preset: str) -> None:
    settings = load_settings(PRESETS_DIR / f"{preset}.yaml")
    assert settings.preset == preset


def test_environment_overrides_yaml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"kafka": {"bootstrap": "yaml:1", "acks": "1"}}))
    monkeypatch.setenv("GAELP_KAFKA_BOOTSTRAP", "env:2")
    monkeypatch.setenv("GAELP_GRPC_GRACE_PERIOD_S", "3.5")
    monkeypatch.setenv("GAELP_CONFIG", str(config))
    settings = load_settings()
    assert settings.kafka.bootstrap == "env:2"
    assert settings.kafka.acks == "1"  # from the file, not overridden
    assert settings.grpc.grace_period_s == 3.5


def test_production_preset_uses_idempotent_producer() -> None:
    production = load_settings(PRESETS_DIR / "production.yaml")
    development = load_settings(PRESETS_DIR / "development.yaml")
    assert production.kafka.enable_idempotence and production.kafka.acks == "all"
    assert not development.kafka.enable_idempotence


def test_cli_init_then_validate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "gaelp.yaml"
    assert gaelp_main(["config", "init", "--preset", "production", "--out", str(out)]) == 0
    assert gaelp_main(["config", "validate", str(out)]) == 0
    assert "valid" in capsys.readouterr().out
    assert gaelp_main(["config", "init", "--preset", "production", "--out", str(out)]) == 1


def test_cli_validate_prints_each_error_with_its_path(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({
        "kafka": {"acks": "7", "partitions": {"gaelp.episodes.v1": 0}},
        "grpc": {"grace_period_s": -1},
        "unknown_section": {},
    }))
    assert gaelp_main(["config", "validate", str(bad)]) == 1
    errors = capsys.readouterr().err
    for path in ("kafka.acks", "kafka.partitions", "grpc.grace_period_s", "unknown_section"):
        assert f"{bad}: {path}:" in errors


def test_phase_2_reads_a_users_log_file_named_in_the_settings(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    user_logs = {"file": str(tmp_path / "logs.csv"), "bid": 8.0, "max_daily_budget": 500.0,
                 "target_roas": 1.5, "bid_cap": 20.0}
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump({"orchestrator": {"phases": {"historical": {"user_logs": user_logs}}}}))
    configured = load_settings(good).orchestrator.phases.historical.user_logs
    assert configured is not None and configured.file == tmp_path / "logs.csv" and configured.bid == 8.0
    assert load_settings().orchestrator.phases.historical.user_logs is None  # the sandbox's logs
    bad = tmp_path / "bad.yaml"
    partial = {"file": "logs.csv", "target_roas": 1.5}
    bad.write_text(yaml.safe_dump({"orchestrator": {"phases": {"historical": {"user_logs": partial}}}}))
    assert gaelp_main(["config", "validate", str(bad)]) == 1
    assert "account terms" in capsys.readouterr().err
