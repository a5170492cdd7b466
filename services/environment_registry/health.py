"""The background loop that keeps the health of remote environments current.

Every interval (or as soon as a remote environment is registered) it probes each distinct remote
endpoint of the non-deprecated versions concurrently and stores the result on every version that
endpoint serves, so Get and List report health with the spec, from any registry replica.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime

from opentelemetry import metrics

from environment_registry.probes import ProbeResult, probe
from gaelp.db.registry import Health, RegistryStore, RemoteTarget

logger = logging.getLogger(__name__)


class HealthMonitor:
    def __init__(
        self,
        store: RegistryStore,
        wake: asyncio.Event,
        interval_s: float,
        timeout_s: float,
        meter: metrics.Meter,
    ) -> None:
        self.store = store
        self.wake = wake
        self.interval_s = interval_s
        self.timeout_s = timeout_s
        self._last_health: dict[RemoteTarget, Health] = {}
        self._probes = meter.create_counter(
            "gaelp.registry.health_probes", description="remote environment health probes by outcome"
        )
        self._probe_duration = meter.create_histogram(
            "gaelp.registry.health_probe_duration", unit="s", description="time one health probe took"
        )

    async def run(self) -> None:
        while True:
            self.wake.clear()
            try:
                await self.probe_all()
            except Exception:
                # The database may be briefly away (a PostgreSQL failover): keep the loop, retry next round.
                logger.exception("health probe round failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), timeout=self.interval_s)

    async def probe_all(self) -> dict[RemoteTarget, ProbeResult]:
        targets = await self.store.remote_targets()
        results = await asyncio.gather(*(probe(target, self.timeout_s) for target in targets))
        checked_at = datetime.now(UTC)
        for target, result in zip(targets, results, strict=True):
            await self.store.record_health(target, result.health, result.detail, checked_at)
            self._observe(target, result)
        return dict(zip(targets, results, strict=True))

    def _observe(self, target: RemoteTarget, result: ProbeResult) -> None:
        attributes = {"protocol": target.protocol.value, "health": result.health.value}
        self._probes.add(1, attributes)
        self._probe_duration.record(result.duration_s, attributes)
        previous = self._last_health.get(target)
        if previous != result.health:
            # Log transitions only, so a long outage is one line, not one per interval.
            level = logging.INFO if result.health is Health.HEALTHY else logging.WARNING
            logger.log(
                level,
                "remote environment %s is %s",
                target.url,
                result.health.value,
                extra={"remote_url": target.url, "health_detail": result.detail},
            )
        self._last_health[target] = result.health
