"""W3C trace context in Kafka headers: injected on produce, extracted as the parent on consume."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager

from google.protobuf.message import Message
from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.propagators.textmap import Getter, Setter

Headers = list[tuple[str, bytes]]


class _HeaderSetter(Setter[Headers]):
    def set(self, carrier: Headers, key: str, value: str) -> None:
        carrier[:] = [(k, v) for k, v in carrier if k != key]
        carrier.append((key, value.encode()))


class _HeaderGetter(Getter[Sequence[tuple[str, bytes]]]):
    def get(self, carrier: Sequence[tuple[str, bytes]], key: str) -> list[str] | None:
        values = [v.decode(errors="replace") for k, v in carrier if k == key and v is not None]
        return values or None

    def keys(self, carrier: Sequence[tuple[str, bytes]]) -> list[str]:
        return [k for k, _ in carrier]


def inject_context(headers: Headers) -> Headers:
    propagate.inject(headers, setter=_HeaderSetter())
    return headers


def extract_context(headers: Sequence[tuple[str, bytes]]) -> Context:
    return propagate.extract(headers, getter=_HeaderGetter())


def message_attributes(value: Message | None) -> dict[str, str]:
    """gaelp.run_id / gaelp.episode_id of a message that has them: how an operator finds its trace."""
    if value is None:
        return {}
    fields = value.DESCRIPTOR.fields_by_name
    found = {}
    for name in ("run_id", "episode_id"):
        if name in fields and getattr(value, name):
            found[f"gaelp.{name}"] = str(getattr(value, name))
    return found


@contextmanager
def publish_span(
    tracer: trace.Tracer, topic: str, key: str, value: Message | None = None
) -> Iterator[trace.Span]:
    """A PRODUCER span named and attributed as the OpenTelemetry messaging conventions say."""
    with tracer.start_as_current_span(
        f"publish {topic}",
        kind=trace.SpanKind.PRODUCER,
        attributes={
            "messaging.system": "kafka",
            "messaging.operation.type": "send",
            "messaging.operation.name": "publish",
            "messaging.destination.name": topic,
            "messaging.kafka.message.key": key,
            **message_attributes(value),
        },
    ) as span:
        yield span


def record_delivery(span: trace.Span, partition: int, offset: int) -> None:
    """Partition and offset are known only once the broker acknowledged the message."""
    span.set_attribute("messaging.destination.partition.id", str(partition))
    span.set_attribute("messaging.kafka.message.offset", offset)


@contextmanager
def process_span(
    tracer: trace.Tracer, topic: str, partition: int, offset: int, headers: Sequence[tuple[str, bytes]],
    *, consumer_group: str | None = None, key: bytes | None = None, value: Message | None = None,
    operation: str = "process",
) -> Iterator[trace.Span]:
    """A CONSUMER span per message, child of the producer's span carried in the headers.

    Opened explicitly around the handler: the aiokafka auto-instrumentation ends its span when
    getmany returns, before the message is processed. operation "receive" marks a message handed
    on to a batch handler (the batch's own processing follows in one span).
    """
    attributes: dict[str, str | int] = {
        "messaging.system": "kafka",
        "messaging.operation.type": operation,
        "messaging.operation.name": operation,
        "messaging.destination.name": topic,
        "messaging.destination.partition.id": str(partition),
        "messaging.kafka.message.offset": offset,
        **message_attributes(value),
    }
    if consumer_group:
        attributes["messaging.consumer.group.name"] = consumer_group
    if key is not None:
        attributes["messaging.kafka.message.key"] = key.decode(errors="replace")
    with tracer.start_as_current_span(
        f"{operation} {topic}",
        context=extract_context(headers),
        kind=trace.SpanKind.CONSUMER,
        attributes=attributes,
    ) as span:
        yield span


@contextmanager
def root_span(tracer: trace.Tracer, name: str, attributes: Mapping[str, str | int]) -> Iterator[trace.Span]:
    """A span that starts a trace of its own, detached from whatever span is current.

    For one unit of work inside a long-lived task (a rollout round of a run) whose task was
    created under another span (the StartRun call) and would otherwise join that trace forever.
    """
    with tracer.start_as_current_span(name, context=Context(), attributes=attributes) as span:
        yield span
