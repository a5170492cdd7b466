"""Span exporters to files: OTLP JSON lines (the collector's file exporter format) and a flat debug form."""

from __future__ import annotations

import base64
import json
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from google.protobuf.json_format import MessageToDict
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult


def span_to_dict(span: ReadableSpan) -> dict[str, object]:
    context = span.get_span_context()
    assert context is not None  # a finished span has its context
    parent = span.parent
    return {
        "name": span.name,
        "kind": span.kind.name,
        "trace_id": format(context.trace_id, "032x"),
        "span_id": format(context.span_id, "016x"),
        "parent_span_id": format(parent.span_id, "016x") if parent else None,
        "service": span.resource.attributes.get("service.name"),
        "attributes": dict(span.attributes or {}),
        "links": [format(link.context.span_id, "016x") for link in span.links],
        "start_ns": span.start_time,
        "end_ns": span.end_time,
    }


class JsonLinesSpanExporter(SpanExporter):
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        lines = "".join(json.dumps(span_to_dict(span), default=str) + "\n" for span in spans)
        with self._lock, self.path.open("a") as handle:
            handle.write(lines)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        return None


def _hex_ids(value: Any) -> Any:
    """OTLP/JSON writes trace and span ids as hex, where protobuf's JSON mapping gives base64."""
    if isinstance(value, list):
        return [_hex_ids(item) for item in value]
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if key in {"traceId", "spanId", "parentSpanId"} and isinstance(item, str):
                out[key] = base64.b64decode(item).hex()
            else:
                out[key] = _hex_ids(item)
        return out
    return value


def otlp_json_line(spans: Sequence[ReadableSpan]) -> str:
    """One ExportTraceServiceRequest as a JSON line, as the collector's file exporter writes it."""
    request = MessageToDict(encode_spans(spans), use_integers_for_enums=True)
    return json.dumps(_hex_ids(request), separators=(",", ":")) + "\n"


class OtlpJsonLinesSpanExporter(SpanExporter):
    """Appends each exported batch to <directory>/<service>-<pid>.jsonl (one writer per file)."""

    def __init__(self, directory: str | Path, service_name: str) -> None:
        self.path = Path(directory) / f"{service_name}-{os.getpid()}.jsonl"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if not spans:
            return SpanExportResult.SUCCESS
        line = otlp_json_line(spans)
        with self._lock, self.path.open("a") as handle:
            handle.write(line)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        return None
