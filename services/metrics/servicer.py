"""The Metrics gRPC methods: run summaries and graduation assessments read from the faust tables."""

from __future__ import annotations

import grpc

from gaelp.service import NotFound, rpc
from gaelp.service.validation import require_enum, require_identifier
from gaelp.v1 import common_pb2, events_pb2, metrics_pb2, metrics_pb2_grpc
from metrics.state import RunState
from metrics.streams import MetricsStreams
from metrics.views import run_summary

_PHASES = set(common_pb2.Phase.values())


class MetricsServicer(metrics_pb2_grpc.MetricsServicer):
    def __init__(self, streams: MetricsStreams) -> None:
        self.streams = streams

    @rpc
    async def GetRunSummary(
        self, request: metrics_pb2.GetRunSummaryRequest, context: grpc.aio.ServicerContext
    ) -> metrics_pb2.RunSummary:
        """A run with no episodes yet answers episodes=0 (pollers wait for the first event)."""
        run_id = require_identifier("run_id", request.run_id)
        run = self.streams.run_state(run_id) or RunState(run_id=run_id)
        return run_summary(run, self.streams.run_violations(run_id), self.streams.settings.metrics)

    @rpc
    async def GetAssessment(
        self, request: metrics_pb2.GetAssessmentRequest, context: grpc.aio.ServicerContext
    ) -> events_pb2.GraduationAssessment:
        """phase PHASE_UNSPECIFIED assesses the run's current phase (that of its latest episode)."""
        run_id = require_identifier("run_id", request.run_id)
        phase = require_enum("phase", request.phase, _PHASES)
        run = self.streams.run_state(run_id)
        if run is None:
            raise NotFound(f"no episodes of run {run_id!r} yet")
        phase = phase or common_pb2.Phase.ValueType(run.current_phase)
        if phase not in run.phases:
            raise NotFound(f"run {run_id!r} has no episodes in {common_pb2.Phase.Name(phase)}")
        return self.streams.assessment(run, phase)
