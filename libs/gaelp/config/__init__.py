"""Typed settings: pydantic models, YAML presets in configs/, GAELP_* environment overrides."""

from gaelp.config.settings import GaelpSettings, load_settings

__all__ = ["GaelpSettings", "load_settings"]
