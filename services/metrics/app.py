"""The metrics service: the faust worker, the gRPC server and the HTTP dashboard on one event loop.

Start: topics, the bus producer (assessments, DLQ), the faust app as a service inside the runtime's
loop (await app.start(): it joins the group and recovers the tables from their changelogs), then the
dashboard. SIGTERM: health NOT_SERVING, the dashboard stops, faust finishes the events in flight,
flushes the changelogs and commits the offsets, then the producer stops.
"""

from __future__ import annotations

import logging

from gaelp.bus import BusProducer, ensure_topics
from gaelp.config import GaelpSettings, load_settings
from gaelp.service import ServiceRuntime
from gaelp.v1 import metrics_pb2_grpc
from metrics.dashboard import DashboardServer
from metrics.instruments import MetricsInstruments
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
    # Anomaly alerts leave through streams.on_alert (async or plain callables taking a state.Alert):
    # append a publisher here to forward them.
    await streams.start()
    dashboard = DashboardServer(streams)
    await dashboard.start()
    logger.info("dashboard serving", extra={"http_port": dashboard.port})

    servicer = MetricsServicer(streams)
    runtime.add_servicer(lambda server: metrics_pb2_grpc.add_MetricsServicer_to_server(servicer, server),
                         "gaelp.v1.Metrics")
    runtime.on_drain(dashboard.stop)
    runtime.on_drain(streams.stop)
    runtime.on_drain(producer.stop)
    return await runtime.run()
