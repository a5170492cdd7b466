"""Schema of the environment registry (component "environment_registry"), the same on both dialects.

One row per (environment, version). Phases and tags are also kept in child tables so that List can
filter in SQL; the row's JSON copies are what a spec is read back from. Times are unix milliseconds.
"""

from __future__ import annotations

from gaelp.db.database import Migration

COMPONENT = "environment_registry"

MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "environment specs, their phases and tags, remote health",
        sql="""
        CREATE TABLE environment_specs (
            env_id TEXT NOT NULL,
            version TEXT NOT NULL,
            entry_point TEXT NOT NULL,
            config_json TEXT NOT NULL,
            phases_json TEXT NOT NULL,
            tags_json TEXT NOT NULL,
            remote_url TEXT NOT NULL,
            remote_protocol TEXT NOT NULL,
            description TEXT NOT NULL,
            registered_at_ms BIGINT NOT NULL,
            deprecated INTEGER NOT NULL DEFAULT 0,
            deprecation_reason TEXT NOT NULL DEFAULT '',
            deprecated_at_ms BIGINT,
            health TEXT NOT NULL,
            health_detail TEXT NOT NULL DEFAULT '',
            health_checked_at_ms BIGINT,
            PRIMARY KEY (env_id, version)
        );
        CREATE INDEX environment_specs_by_remote_url ON environment_specs (remote_url);
        CREATE TABLE environment_phases (
            env_id TEXT NOT NULL,
            version TEXT NOT NULL,
            phase INTEGER NOT NULL,
            PRIMARY KEY (env_id, version, phase),
            FOREIGN KEY (env_id, version) REFERENCES environment_specs (env_id, version)
        );
        CREATE INDEX environment_phases_by_phase ON environment_phases (phase);
        CREATE TABLE environment_tags (
            env_id TEXT NOT NULL,
            version TEXT NOT NULL,
            tag TEXT NOT NULL,
            PRIMARY KEY (env_id, version, tag),
            FOREIGN KEY (env_id, version) REFERENCES environment_specs (env_id, version)
        );
        CREATE INDEX environment_tags_by_tag ON environment_tags (tag)
        """,
    ),
)
