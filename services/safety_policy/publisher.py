"""Sends queued violations from the ledger's outbox to gaelp.violations.v1, keyed by campaign id.

A row is marked published only after the broker acknowledged it, so a crash or a broker outage
delays violations but never loses them (a crash between the ack and the mark may send one twice;
consumers key on violation_id).
"""

from __future__ import annotations

import asyncio
import logging

from aiokafka.errors import KafkaError

from gaelp.bus import VIOLATIONS, BusProducer
from gaelp.db import Database
from gaelp.db.ledger_outbox import mark_published, unpublished_violations
from gaelp.safety import violation_message

logger = logging.getLogger(__name__)


class ViolationPublisher:
    def __init__(self, db: Database, producer: BusProducer, poll_interval_s: float) -> None:
        self._db = db
        self._producer = producer
        self._poll_interval_s = poll_interval_s

    async def publish_pending(self) -> int:
        """Send every queued violation; return how many were sent."""
        sent = 0
        while batch := await unpublished_violations(self._db):
            for record in batch:
                await self._producer.send(VIOLATIONS, record.campaign_id or "all", violation_message(record))
            await mark_published(self._db, [record.violation_id for record in batch])
            sent += len(batch)
        return sent

    async def run(self) -> None:
        while True:
            try:
                await self.publish_pending()
            except KafkaError as error:
                logger.warning("violations not sent yet, will retry: %r", error)
            await asyncio.sleep(self._poll_interval_s)
