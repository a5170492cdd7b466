"""Entry point of the learner process."""

from __future__ import annotations

import logging

from gaelp.bus import TRANSITIONS, BusConsumer, BusProducer, ensure_topics
from gaelp.config import GaelpSettings, load_settings
from gaelp.service import ServiceRuntime
from gaelp.v1 import learner_pb2_grpc
from learner.service import LearnerService
from learner.servicer import LearnerServicer

logger = logging.getLogger(__name__)


async def serve(settings: GaelpSettings | None = None) -> int:
    settings = settings or load_settings()
    runtime = ServiceRuntime("learner", settings, settings.learner.grpc_port)
    await ensure_topics(settings.kafka)
    producer = BusProducer(settings.kafka, client_id="learner")
    await producer.start()
    learner = LearnerService(settings, producer)
    learner.restore()
    consumer = BusConsumer(
        settings.kafka,
        [TRANSITIONS],
        settings.learner.group_id,
        producer,
        client_id="learner",
        on_assigned=learner.on_assigned,
        commit_after_batch=False,
    )
    learner.consumer = consumer
    runtime.add_servicer(
        lambda server: learner_pb2_grpc.add_LearnerServicer_to_server(LearnerServicer(learner), server),
        "gaelp.v1.Learner",
    )
    await consumer.start()
    consume = runtime.start_task(consumer.run_batches(learner.handle), "transitions-consumer")
    logger.info("learner ready", extra={"algorithm": settings.training.agent_name(),
                                        "device": settings.learner.device})

    async def drain() -> None:
        # Stop reading first, so the checkpoint holds everything handled and its offsets.
        await consumer.finish(consume, settings.grpc.grace_period_s / 3)
        await learner.checkpoint()
        await consumer.stop()
        await producer.stop()

    runtime.on_drain(drain)
    return await runtime.run()
