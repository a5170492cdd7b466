"""W3C trace context in Kafka headers: injected on produce, extracted as the parent on consume."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

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


@contextmanager
def process_span(
    tracer: trace.Tracer, topic: str, partition: int, offset: int, headers: Sequence[tuple[str, bytes]]
) -> Iterator[trace.Span]:
    """A CONSUMER span per message, child of the producer's span carried in the headers.

    Opened explicitly around the handler: the aiokafka auto-instrumentation ends its span when
    getmany returns, before the message is processed.
    """
    with tracer.start_as_current_span(
        f"{topic} process",
        context=extract_context(headers),
        kind=trace.SpanKind.CONSUMER,
        attributes={
            "messaging.system": "kafka",
            "messaging.operation.type": "process",
            "messaging.destination.name": topic,
            "messaging.destination.partition.id": str(partition),
            "messaging.kafka.offset": offset,
        },
    ) as span:
        yield span
