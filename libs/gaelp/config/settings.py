"""The root settings object: defaults < YAML file (preset) < GAELP_* environment variables.

Environment variables name a section and a field joined by one underscore, e.g.
GAELP_KAFKA_BOOTSTRAP=host:9092 or GAELP_DATABASE_URL=postgresql://... ; GAELP_CONFIG names the
YAML file to load.
"""

from __future__ import annotations

import os
from contextvars import ContextVar
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from gaelp.config.sections.environment_registry import EnvironmentRegistrySettings
from gaelp.config.sections.infra import (
    DatabaseSettings,
    GrpcSettings,
    KafkaSettings,
    StorageSettings,
    TelemetrySettings,
)
from gaelp.config.sections.learner import LearnerSettings
from gaelp.config.sections.metrics import MetricsSettings
from gaelp.config.sections.operator import OperatorSettings
from gaelp.config.sections.orchestrator import OrchestratorSettings
from gaelp.config.sections.pubsub import PubSubSettings
from gaelp.config.sections.safety_policy import SafetyPolicySettings
from gaelp.config.sections.training import TrainingSettings

CONFIG_ENV_VAR = "GAELP_CONFIG"
# The YAML data of the load in progress; a context variable keeps concurrent loads apart.
_yaml_data: ContextVar[dict[str, Any] | None] = ContextVar("gaelp_yaml_data", default=None)


class _YamlSource(PydanticBaseSettingsSource):
    """Reads the YAML file given to load_settings (or named by GAELP_CONFIG)."""

    def __init__(self, settings_cls: type[BaseSettings]) -> None:
        super().__init__(settings_cls)
        self._data = _yaml_data.get() or {}

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return self._data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(self._data)


class GaelpSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="GAELP_",
        env_nested_delimiter="_",
        env_nested_max_split=1,
        extra="forbid",
        case_sensitive=False,
    )

    preset: str = Field("development", description="name of the preset these settings came from")
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    telemetry: TelemetrySettings = Field(default_factory=TelemetrySettings)
    grpc: GrpcSettings = Field(default_factory=GrpcSettings)
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    storage: StorageSettings = Field(default_factory=StorageSettings)
    training: TrainingSettings = Field(default_factory=TrainingSettings)
    orchestrator: OrchestratorSettings = Field(default_factory=OrchestratorSettings)
    learner: LearnerSettings = Field(default_factory=LearnerSettings)
    safety_policy: SafetyPolicySettings = Field(default_factory=SafetyPolicySettings)
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)
    environment_registry: EnvironmentRegistrySettings = Field(
        default_factory=EnvironmentRegistrySettings
    )
    pubsub: PubSubSettings = Field(default_factory=PubSubSettings)
    operator: OperatorSettings = Field(default_factory=OperatorSettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _YamlSource(settings_cls))


def read_yaml(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: the top level must be a mapping, got {type(data).__name__}")
    return data


def load_settings(path: str | Path | None = None, **overrides: Any) -> GaelpSettings:
    """Load settings from a YAML file (or $GAELP_CONFIG), then environment, then overrides."""
    source = path if path is not None else os.environ.get(CONFIG_ENV_VAR)
    data = read_yaml(Path(source)) if source else {}
    token = _yaml_data.set(data)
    try:
        return GaelpSettings(**overrides)
    finally:
        _yaml_data.reset(token)


