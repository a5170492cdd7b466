"""serve(): the safety-policy process — ledger migrations, campaigns from config, the gRPC API
(plus an optional TLS port), the expiry sweeper and the violation publisher."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from pathlib import Path

import grpc

from gaelp.bus import BusProducer
from gaelp.config import GaelpSettings, load_settings
from gaelp.db import Database
from gaelp.db.ledger import CampaignConflict, SpendLedger, to_micros
from gaelp.db.ledger_approvals import ApprovalStore
from gaelp.db.ledger_schema import COMPONENT, MIGRATIONS
from gaelp.service import ServiceRuntime
from gaelp.v1 import safety_pb2_grpc
from safety_policy.publisher import ViolationPublisher
from safety_policy.servicer import SafetyPolicyServicer

logger = logging.getLogger(__name__)

SERVICE_NAME = "gaelp.v1.SafetyPolicy"


async def open_ledger(settings: GaelpSettings) -> tuple[Database, SpendLedger, ApprovalStore]:
    """Connect, migrate and register the configured campaigns."""
    section = settings.safety_policy
    db = await Database.connect(settings.database.url, pool_size=section.database_pool_size)
    await db.migrate(COMPONENT, MIGRATIONS)
    ledger = SpendLedger(db, section.reservation_ttl_s)
    for campaign in section.campaigns:
        try:
            await ledger.register_campaign(
                campaign.campaign_id, campaign.time_zone, to_micros(campaign.daily_limit), time.time()
            )
        except CampaignConflict as error:
            logger.warning("configured campaign kept as registered: %s", error)
    return db, ledger, ApprovalStore(db)


async def sweep_expired(ledger: SpendLedger, interval_s: float) -> None:
    while True:
        released = await ledger.expire_due(time.time())
        if released:
            logger.info("released expired reservations", extra={"count": released})
        await asyncio.sleep(interval_s)


def add_tls_port(runtime: ServiceRuntime, settings: GaelpSettings) -> int:
    """Serve the same servicers over TLS on safety_policy.tls_port as well; return the bound port."""
    section = settings.safety_policy
    credentials = grpc.ssl_server_credentials(
        [(Path(section.tls_key_path).read_bytes(), Path(section.tls_cert_path).read_bytes())]
    )
    port = runtime.server.add_secure_port(f"{settings.grpc.host}:{section.tls_port}", credentials)
    if port == 0:
        raise RuntimeError(f"cannot bind the TLS port {section.tls_port}")
    return port


async def serve(settings: GaelpSettings | None = None) -> int:
    settings = settings or load_settings()
    section = settings.safety_policy
    runtime = ServiceRuntime("safety_policy", settings, section.grpc_port)
    db, ledger, approvals = await open_ledger(settings)
    try:
        servicer = SafetyPolicyServicer(section, ledger, approvals)
        runtime.add_servicer(
            lambda server: safety_pb2_grpc.add_SafetyPolicyServicer_to_server(servicer, server),
            SERVICE_NAME,
        )
        if section.tls_port:
            logger.info("serving TLS", extra={"tls_port": add_tls_port(runtime, settings)})
        runtime.start_task(sweep_expired(ledger, section.sweep_interval_s), "reservation-sweeper")
        if settings.kafka.bootstrap:
            producer = BusProducer(settings.kafka, client_id="safety-policy")
            await producer.start()
            publisher = ViolationPublisher(db, producer, section.outbox_poll_interval_s)
            publishing = runtime.start_task(publisher.run(), "violation-publisher")

            async def flush_violations() -> None:
                # Stop the loop first so that the last flush is the only user of the producer.
                publishing.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await publishing
                await publisher.publish_pending()
                await producer.stop()

            runtime.on_drain(flush_violations)
        else:
            logger.warning(
                "kafka.bootstrap is empty: violations stay in the ledger outbox until a broker is set"
            )
        return await runtime.run()
    finally:
        await db.close()
