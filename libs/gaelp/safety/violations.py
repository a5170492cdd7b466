"""Violations on gaelp.violations.v1: the message built from a ledger record, and the consumer side.

The orchestrator (pause a campaign, stop a phase, demote a run) and metrics subscribe with
ViolationListener; handlers receive decoded events_pb2.Violation messages keyed by campaign id.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from google.protobuf.timestamp_pb2 import Timestamp

from gaelp.bus import VIOLATIONS, BusConsumer, BusProducer, Delivery
from gaelp.config.sections.infra import KafkaSettings
from gaelp.db.ledger import to_dollars
from gaelp.db.ledger_outbox import ViolationRecord
from gaelp.v1 import common_pb2, events_pb2

_SEVERITIES = {
    "info": events_pb2.SEVERITY_INFO,
    "warning": events_pb2.SEVERITY_WARNING,
    "critical": events_pb2.SEVERITY_CRITICAL,
}

ViolationHandler = Callable[[events_pb2.Violation], Awaitable[None]]


def violation_message(record: ViolationRecord) -> events_pb2.Violation:
    occurred_at = Timestamp()
    occurred_at.FromNanoseconds(int(record.occurred_at * 1e9))
    return events_pb2.Violation(
        violation_id=record.violation_id,
        campaign_id=record.campaign_id,
        run_id=record.run_id,
        rule=record.rule,
        severity=_SEVERITIES[record.severity],
        amount=to_dollars(record.amount_micros),
        phase=common_pb2.Phase.ValueType(record.phase),
        action_taken=record.action_taken,
        detail=record.detail,
        occurred_at=occurred_at,
    )


class ViolationListener:
    """Consume gaelp.violations.v1 in a consumer group and hand each Violation to a handler.

    A handler that raises sends that message to the DLQ (the bus consumer's rule) and goes on.
    Use `async with ViolationListener(...) as listener: await listener.run()`; stop_soon() ends run().
    """

    def __init__(self, kafka: KafkaSettings, group_id: str, handler: ViolationHandler) -> None:
        self._handler = handler
        self._dlq_producer = BusProducer(kafka, client_id=f"{group_id}-dlq")
        self._consumer = BusConsumer(kafka, [VIOLATIONS], group_id, self._dlq_producer)

    async def start(self) -> None:
        await self._dlq_producer.start()
        await self._consumer.start()

    async def run(self) -> None:
        await self._consumer.run(self._deliver)

    def stop_soon(self) -> None:
        self._consumer.stop_soon()

    async def stop(self) -> None:
        await self._consumer.stop()
        await self._dlq_producer.stop()

    async def __aenter__(self) -> ViolationListener:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _deliver(self, delivery: Delivery[events_pb2.Violation]) -> None:
        await self._handler(delivery.value)
