"""Tracer and meter providers built from TelemetrySettings, installed as the global providers."""

from __future__ import annotations

from dataclasses import dataclass

import grpc
from opentelemetry import metrics, trace
from opentelemetry.instrumentation.grpc import aio_client_interceptors
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    ConsoleMetricExporter,
    MetricReader,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
)
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ParentBased, Sampler, TraceIdRatioBased

from gaelp.config.sections.infra import TelemetrySettings
from gaelp.telemetry.exporters import JsonLinesSpanExporter, OtlpJsonLinesSpanExporter
from gaelp.telemetry.logs import configure_logging


@dataclass
class Telemetry:
    service_name: str
    tracer_provider: TracerProvider
    meter_provider: MeterProvider
    memory_exporter: InMemorySpanExporter | None = None

    def tracer(self, name: str) -> trace.Tracer:
        return self.tracer_provider.get_tracer(name)

    def meter(self, name: str) -> metrics.Meter:
        return self.meter_provider.get_meter(name)

    def client_interceptors(self) -> list[grpc.aio.ClientInterceptor]:
        return list(aio_client_interceptors(tracer_provider=self.tracer_provider))

    def shutdown(self) -> None:
        self.tracer_provider.force_flush()
        self.tracer_provider.shutdown()
        self.meter_provider.shutdown()


def sampler_of(settings: TelemetrySettings) -> Sampler:
    """Root spans recorded at traces_sample_ratio; a span with a parent does as its parent did, so
    a trace is recorded across every service or by none."""
    return ParentBased(TraceIdRatioBased(settings.traces_sample_ratio))


def configure_telemetry(service_name: str, settings: TelemetrySettings) -> Telemetry:
    """Configure logs, traces and metrics for one process and install them globally."""
    configure_logging(service_name, settings.log_level, settings.json_logs)
    resource = Resource.create(
        {"service.name": service_name, "service.namespace": settings.service_namespace}
    )
    tracer_provider = TracerProvider(resource=resource, sampler=sampler_of(settings))
    readers: list[MetricReader] = []
    memory_exporter: InMemorySpanExporter | None = None
    interval = settings.metric_export_interval_ms
    if settings.exporter == "otlp":
        if not settings.otlp_endpoint:
            raise ValueError("telemetry.exporter is 'otlp' but telemetry.otlp_endpoint is empty")
        # Imported here: the OTLP exporter pulls in its own gRPC channel setup only when used.
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        tracer_provider.add_span_processor(
            BatchSpanProcessor(OTLPSpanExporter(endpoint=settings.otlp_endpoint, insecure=True))
        )
        readers.append(
            PeriodicExportingMetricReader(
                OTLPMetricExporter(endpoint=settings.otlp_endpoint, insecure=True),
                export_interval_millis=interval,
            )
        )
    elif settings.exporter == "console":
        tracer_provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
        readers.append(
            PeriodicExportingMetricReader(ConsoleMetricExporter(), export_interval_millis=interval)
        )
    elif settings.exporter == "file":
        # Spans only: metrics stay in the services' own endpoints and the dashboard.
        tracer_provider.add_span_processor(
            BatchSpanProcessor(OtlpJsonLinesSpanExporter(settings.file_dir, service_name))
        )
    elif settings.exporter == "memory":
        memory_exporter = InMemorySpanExporter()
        tracer_provider.add_span_processor(SimpleSpanProcessor(memory_exporter))
    if settings.span_file:
        tracer_provider.add_span_processor(SimpleSpanProcessor(JsonLinesSpanExporter(settings.span_file)))
    meter_provider = MeterProvider(resource=resource, metric_readers=readers)
    trace.set_tracer_provider(tracer_provider)
    metrics.set_meter_provider(meter_provider)
    return Telemetry(service_name, tracer_provider, meter_provider, memory_exporter)
