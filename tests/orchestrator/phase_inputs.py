"""Phase-machine inputs for the orchestrator process tests: synthetic GraduationAssessment
messages, produced onto the real topics in place of the metrics and safety-policy services."""

from __future__ import annotations

import asyncio
from typing import Any

from gaelp.bus import BusProducer
from gaelp.config import load_settings
from gaelp.v1 import events_pb2


def produce(bootstrap: str, messages: list[tuple[Any, str, Any]]) -> None:
    """(topic, key, message or raw bytes) in order, each acknowledged by the broker."""

    async def send() -> None:
        settings = load_settings(kafka={"bootstrap": bootstrap, "enable_idempotence": False, "acks": "1"})
        async with BusProducer(settings.kafka, client_id="phase-test") as producer:
            for topic, key, value in messages:
                if isinstance(value, bytes):
                    await producer.send_raw(topic.name, key.encode(), value, [])
                else:
                    await producer.send(topic, key, value)

    asyncio.run(send())


def assessment(run_id: str, phase: int, version: int, ready: bool = True,
               demote: bool = False) -> events_pb2.GraduationAssessment:
    reason = "demote: performance collapse at episode 40" if demote else (
        "all criteria passed" if ready else "not yet: c")
    return events_pb2.GraduationAssessment(
        run_id=run_id, phase=phase, policy_version=version, ready_to_graduate=ready,  # type: ignore[arg-type]
        demote=demote, reason=reason, episodes_considered=50,
        criteria=[events_pb2.CriterionResult(name="c", value=0.9 if ready else 0.1, threshold=0.5,
                                             comparison=">=", passed=ready)],
    )
