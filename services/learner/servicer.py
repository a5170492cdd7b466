"""The Learner gRPC API: OpenRun, GetPolicy, WatchPolicy (server streaming) and GetLearnerStats.

Only OpenRun (the orchestrator, when it starts or resumes a run) and the run's first TransitionBatch
create a run's state; the read methods answer NOT_FOUND for any other run id, so a caller cannot
make the learner grow by asking about ids it invents.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc

from gaelp.service import NotFound, rpc, stream_rpc
from gaelp.service.validation import require_identifier, require_number
from gaelp.v1 import events_pb2, learner_pb2, learner_pb2_grpc
from learner.service import LearnerService


class LearnerServicer(learner_pb2_grpc.LearnerServicer):
    def __init__(self, learner: LearnerService) -> None:
        self.learner = learner

    @rpc
    async def OpenRun(
        self, request: learner_pb2.OpenRunRequest, context: grpc.aio.ServicerContext
    ) -> events_pb2.PolicyUpdate:
        """The run's newest policy; a run not open yet is started at version 0 (seeded)."""
        run_id = require_identifier("run_id", request.run_id)
        self.learner.run(run_id)
        return self.learner.policies[run_id]

    @rpc
    async def GetPolicy(
        self, request: learner_pb2.GetPolicyRequest, context: grpc.aio.ServicerContext
    ) -> events_pb2.PolicyUpdate:
        """The run's newest policy, of at least min_version."""
        run_id = require_identifier("run_id", request.run_id)
        require_number("min_version", request.min_version, minimum=0)
        policy = self._policy(run_id)
        if policy.version < request.min_version:
            raise NotFound(f"run {run_id} is at version {policy.version} < {request.min_version}")
        return policy

    @stream_rpc
    async def WatchPolicy(
        self, request: learner_pb2.WatchPolicyRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[events_pb2.PolicyUpdate]:
        """Every newer version of the run's policy as it is published (the newest when several)."""
        run_id = require_identifier("run_id", request.run_id)
        require_number("after_version", request.after_version, minimum=-1)
        self._policy(run_id)
        sent = request.after_version
        while True:
            policy = self.learner.policies[run_id]
            if policy.version > sent:
                sent = policy.version
                yield policy
                continue
            async with self.learner.policy_changed:
                await self.learner.policy_changed.wait()

    def _policy(self, run_id: str) -> events_pb2.PolicyUpdate:
        policy = self.learner.policies.get(run_id)
        if policy is None:
            raise NotFound(f"no run {run_id} at the learner (OpenRun opens one)")
        return policy

    @rpc
    async def GetLearnerStats(
        self, request: learner_pb2.GetLearnerStatsRequest, context: grpc.aio.ServicerContext
    ) -> events_pb2.LearnerStats:
        run_id = require_identifier("run_id", request.run_id)
        if run_id not in self.learner.runs:
            raise NotFound(f"no run {run_id}")
        trainer = self.learner.runs[run_id]
        stats = self.learner.stats.get(run_id)
        if stats is None:
            return events_pb2.LearnerStats(
                run_id=run_id, policy_version=trainer.version, algorithm=trainer.agent.algo
            )
        return stats
