"""Traces from OTLP JSON lines files (the 'file' exporter, or a collector's file exporter).

Each line is one ExportTraceServiceRequest; a directory holds one file per service process.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gaelp.client.errors import ClientError

EPISODE_PUBLISH = "publish gaelp.episodes.v1"
EPISODE_PROCESS = "process gaelp.episodes.v1"


class TraceNotFound(ClientError):
    """No trace in the files matches the run (and episode)."""


@dataclass
class Span:
    trace_id: str
    span_id: str
    parent_span_id: str
    name: str
    service: str
    kind: int
    start_ns: int
    end_ns: int
    attributes: dict[str, Any]
    children: list[Span] = field(default_factory=list)

    @property
    def duration_ms(self) -> float:
        return (self.end_ns - self.start_ns) / 1e6


def _value(any_value: dict[str, Any]) -> Any:
    for key in ("stringValue", "boolValue", "doubleValue"):
        if key in any_value:
            return any_value[key]
    if "intValue" in any_value:
        return int(any_value["intValue"])  # OTLP/JSON writes 64-bit integers as strings
    if "arrayValue" in any_value:
        return [_value(v) for v in any_value["arrayValue"].get("values", [])]
    return None


def _attributes(items: list[dict[str, Any]]) -> dict[str, Any]:
    return {item["key"]: _value(item.get("value", {})) for item in items}


def parse_request(request: dict[str, Any]) -> list[Span]:
    spans = []
    for resource_spans in request.get("resourceSpans", []):
        resource = _attributes(resource_spans.get("resource", {}).get("attributes", []))
        service = str(resource.get("service.name", "?"))
        for scope_spans in resource_spans.get("scopeSpans", []):
            for raw in scope_spans.get("spans", []):
                spans.append(Span(
                    trace_id=raw["traceId"], span_id=raw["spanId"],
                    parent_span_id=raw.get("parentSpanId", ""),
                    name=raw.get("name", ""), service=service, kind=int(raw.get("kind", 0)),
                    start_ns=int(raw.get("startTimeUnixNano", 0)), end_ns=int(raw.get("endTimeUnixNano", 0)),
                    attributes=_attributes(raw.get("attributes", [])),
                ))
    return spans


def read_spans(directory: Path) -> list[Span]:
    """Every span of every *.jsonl file in the directory; a torn last line (a killed writer) is skipped."""
    if not directory.is_dir():
        raise TraceNotFound(f"no trace directory at {directory}")
    spans: list[Span] = []
    for path in sorted(directory.glob("*.jsonl")):
        for line in path.read_text(errors="replace").splitlines():
            try:
                request = json.loads(line)
            except json.JSONDecodeError:
                continue
            spans += parse_request(request)
    return spans


def find_trace(spans: list[Span], run_id: str, episode_id: str = "") -> list[Span]:
    """The spans of the trace that published the episode. Default: the run's latest episode whose
    trace also holds the episode consumer's spans (each service writes its spans in batches, so the
    very newest episodes may not have been consumed or written yet), else the latest episode."""
    publishes = [s for s in spans if s.name == EPISODE_PUBLISH and s.attributes.get("gaelp.run_id") == run_id
                 and (not episode_id or s.attributes.get("gaelp.episode_id") == episode_id)]
    if not publishes:
        wanted = f"episode {episode_id} of run {run_id}" if episode_id else f"run {run_id}"
        raise TraceNotFound(f"no published episode of {wanted} in the trace files")
    processed = {span.trace_id for span in spans if span.name == EPISODE_PROCESS}
    consumed = [s for s in publishes if s.trace_id in processed]
    chosen = max(consumed or publishes, key=lambda s: s.start_ns)
    return [s for s in spans if s.trace_id == chosen.trace_id]


def build_tree(trace: list[Span], episode_id: str = "") -> tuple[list[Span], int]:
    """Roots of the trace with their children; with an episode, other episodes' branches are left out.

    Returns the roots and how many spans were left out.
    """
    by_id = {s.span_id: s for s in trace}
    for span in trace:
        span.children = []
    left_out: set[str] = set()
    if episode_id:
        for span in trace:
            other = span.attributes.get("gaelp.episode_id")
            if span.name == EPISODE_PUBLISH and other and other != episode_id:
                left_out.add(span.span_id)
    roots = []
    for span in sorted(trace, key=lambda s: s.start_ns):
        parent = by_id.get(span.parent_span_id)
        if parent is None:
            roots.append(span)
        else:
            parent.children.append(span)

    def prune(span: Span) -> int:
        dropped = 0
        kept = []
        for child in span.children:
            if child.span_id in left_out:
                dropped += 1 + _count(child)
            else:
                dropped += prune(child)
                kept.append(child)
        span.children = kept
        return dropped

    return roots, sum(prune(root) for root in roots)


def _count(span: Span) -> int:
    return sum(1 + _count(child) for child in span.children)


SHOWN_ATTRIBUTES = {"messaging.destination.partition.id": "partition",
                    "messaging.kafka.message.offset": "offset",
                    "messaging.consumer.group.name": "group", "gaelp.episode_id": "episode"}


def render(roots: list[Span]) -> list[str]:
    """One line per span: indentation, service, span name, duration and its messaging coordinates."""
    lines: list[str] = []

    def walk(span: Span, depth: int) -> None:
        details = " ".join(f"{label}={span.attributes[key]}" for key, label in SHOWN_ATTRIBUTES.items()
                           if key in span.attributes)
        lines.append(f"{'  ' * depth}{span.service:<22} {span.name:<34} {span.duration_ms:9.3f} ms  {details}"
                     .rstrip())
        for child in sorted(span.children, key=lambda s: s.start_ns):
            walk(child, depth + 1)

    for root in roots:
        walk(root, 0)
    return lines
