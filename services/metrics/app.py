"""The metrics service: the faust worker, the gRPC server and the HTTP dashboard on one event loop.

Start: topics, the bus producer (assessments, DLQ), the faust app as a service inside the runtime's
loop (await app.start(): it joins the group and recovers the tables from their changelogs), then the
dashboard, and with pubsub.enabled the operator-event publisher (operator_events.py). SIGTERM: health
NOT_SERVING, the dashboard stops, faust finishes the events in flight, flushes the changelogs and
commits the offsets, the publisher sends what it holds, then the producer stops.
"""

from __future__ import annotations

import logging

from gaelp.bus import BusProducer, ensure_topics
from gaelp.config import GaelpSettings, load_settings
from gaelp.service import ServiceRuntime
from gaelp.v1 import metrics_pb2_grpc
from metrics.dashboard import DashboardServer
from metrics.instruments import MetricsInstruments
from metrics.operator_events import OperatorEvents
from metrics.servicer import MetricsServicer
from metrics.streams import MetricsStreams

logger = logging.getLogger(__name__)


async def serve(settings: GaelpSettings | None = None) -> int:
    settings = settings or load_settings()
    runtime = ServiceRuntime("metrics", settings, settings.metrics.grpc_port)

    def fail(error: BaseException) -> None:
        logger.error("metrics cannot go on: %r", error)
        runtime.failed = True
        runtime.request_stop()

    await ensure_topics(settings.kafka)
    producer = BusProducer(settings.kafka, client_id=f"{settings.kafka.client_id}-metrics")
    await producer.start()
    streams = MetricsStreams(settings, producer, MetricsInstruments(runtime.telemetry.meter("gaelp.metrics")),
                             fail)
    # Anomaly alerts leave through streams.on_alert; with Pub/Sub on they join the operator events.
    operator_events = OperatorEvents(settings, producer, fail) if settings.pubsub.enabled else None
    if operator_events is not None:
        streams.on_alert.append(operator_events.enqueue_alert)
    await streams.start()
    if operator_events is not None:
        await operator_events.start()
        logger.info("publishing operator events to Pub/Sub", extra={"project": settings.pubsub.project_id})
    dashboard = DashboardServer(streams)
    await dashboard.start()
    logger.info("dashboard serving", extra={"http_port": dashboard.port})

    servicer = MetricsServicer(streams)
    runtime.add_servicer(lambda server: metrics_pb2_grpc.add_MetricsServicer_to_server(servicer, server),
                         "gaelp.v1.Metrics")
    runtime.on_drain(dashboard.stop)
    runtime.on_drain(streams.stop)
    if operator_events is not None:
        runtime.on_drain(operator_events.stop)  # after the streams: their last alerts still go out
    runtime.on_drain(producer.stop)
    return await runtime.run()
