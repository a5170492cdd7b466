"""Entry point of the environment-registry process.

Start: connect the database (SQLite or PostgreSQL by settings.database.url), apply the registry's
migrations, register the spec files of settings.environment_registry.specs_dir (a spec file that
contradicts an already registered version stops the start: bump its version), serve gRPC and
probe remote environments in the background. SIGTERM: the runtime stops serving, the drain hook
stops the probes, and the database closes once the server has stopped.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path

from environment_registry.catalogue import EnvironmentCatalogue
from environment_registry.health import HealthMonitor
from environment_registry.servicer import EnvironmentRegistryServicer
from environment_registry.spec_files import SpecFileError, load_spec_files
from environment_registry.specs import SpecLimits, validate_spec
from gaelp.config import GaelpSettings, load_settings
from gaelp.db import Database
from gaelp.db.registry import RegistryStore
from gaelp.service import ServiceError, ServiceRuntime
from gaelp.service.auth import OperatorAuth
from gaelp.v1 import registry_pb2_grpc

logger = logging.getLogger(__name__)
SERVICE_NAME = "gaelp.v1.EnvironmentRegistry"


async def register_spec_files(catalogue: EnvironmentCatalogue, directory: Path, limits: SpecLimits) -> int:
    """Register every spec file of the folder; return how many versions were new."""
    created_count = 0
    for path, spec_file in load_spec_files(directory):
        try:
            stored, created = await catalogue.register(validate_spec(spec_file.to_message(), limits))
        except ServiceError as error:
            raise SpecFileError(f"{path}: {error}") from error
        created_count += created
        logger.info(
            "environment %s %s %s",
            stored.env_id,
            stored.version,
            "registered" if created else "already registered",
            extra={"spec_file": str(path)},
        )
    return created_count


async def serve(settings: GaelpSettings | None = None) -> int:
    settings = settings or load_settings()
    registry_settings = settings.environment_registry
    runtime = ServiceRuntime("environment-registry", settings, registry_settings.grpc_port)
    limits = SpecLimits(
        max_string_length=settings.grpc.max_string_length,
        max_config_bytes=registry_settings.max_config_bytes,
        max_tags=registry_settings.max_tags,
        entry_point_modules=tuple(registry_settings.entry_point_modules),
    )
    db = await Database.connect(settings.database.url)
    try:
        catalogue = EnvironmentCatalogue(await RegistryStore.open(db))
        if registry_settings.specs_dir:
            try:
                await register_spec_files(catalogue, Path(registry_settings.specs_dir), limits)
            except SpecFileError as error:
                logger.error("cannot register the environment spec files: %s", error)
                runtime.telemetry.shutdown()
                return 1
        servicer = EnvironmentRegistryServicer(catalogue, limits, OperatorAuth(registry_settings.operators))
        runtime.add_servicer(
            lambda server: registry_pb2_grpc.add_EnvironmentRegistryServicer_to_server(servicer, server),
            SERVICE_NAME,
        )
        monitor = HealthMonitor(
            catalogue.store,
            catalogue.remote_registered,
            interval_s=registry_settings.health_interval_s,
            timeout_s=registry_settings.health_timeout_s,
            meter=runtime.telemetry.meter("environment_registry"),
        )
        monitor_task = runtime.start_task(monitor.run(), "health-monitor")

        async def stop_probes() -> None:
            monitor_task.cancel()
            with contextlib.suppress(BaseException):
                await monitor_task

        runtime.on_drain(stop_probes)
        return await runtime.run()
    finally:
        await db.close()
