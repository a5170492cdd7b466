"""`gaelp traces show --run R [--episode E]`: one episode's trace as a tree, from the trace files."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from gaelp.cli import targets
from gaelp.client.traces import build_tree, find_trace, read_spans, render


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    traces = subparsers.add_parser("traces", help="traces written by the 'file' telemetry exporter")
    verbs = traces.add_subparsers(dest="traces_command", required=True)
    show = verbs.add_parser("show", help="the trace of an episode (default: the run's latest) as a tree")
    show.add_argument("--run", required=True)
    show.add_argument("--episode", default="", help="episode id (default: the latest published)")
    show.add_argument("--dir", type=Path, default=None,
                      help="trace directory (default: <storage.data_dir>/runs/<run>/traces when it exists, "
                           "else telemetry.file_dir)")
    show.add_argument("--json", action="store_true", help="the spans as JSON lines")
    show.set_defaults(func=show_trace)


def trace_dir(args: argparse.Namespace) -> Path:
    if args.dir is not None:
        return Path(args.dir)
    config = targets.settings()
    per_run = Path(config.storage.data_dir) / "runs" / args.run / "traces"
    return per_run if per_run.is_dir() else Path(config.telemetry.file_dir)


@targets.one_line_errors
def show_trace(args: argparse.Namespace) -> int:
    trace = find_trace(read_spans(trace_dir(args)), args.run, args.episode)
    if args.json:
        for span in sorted(trace, key=lambda s: s.start_ns):
            print(json.dumps({"trace_id": span.trace_id, "span_id": span.span_id,
                              "parent_span_id": span.parent_span_id, "service": span.service,
                              "name": span.name, "duration_ms": span.duration_ms,
                              "attributes": span.attributes}))
        return 0
    roots, left_out = build_tree(trace, args.episode)
    services = sorted({span.service for span in trace})
    print(f"trace {trace[0].trace_id}: {len(trace)} spans from {len(services)} services "
          f"({', '.join(services)})")
    for line in render(roots):
        print(line)
    if left_out:
        print(f"({left_out} spans of the round's other episodes left out)")
    return 0
