"""The gRPC control API: StartRun, PauseRun, ResumeRun, GetRunStatus, ListRuns.

Any replica answers for any run. A run driven here reports its live figures; any other run its
stored document. StartRun starts the run on the replica that receives it. PauseRun and ResumeRun
of a run another replica drives record the request next to the run's lease; the holder applies it
at its next renewal (due `leases.renew_interval_s` later, later on a busy host). The call waits up
to `leases.duration_s` (a holder that has not renewed by then has lost the run) for the stored state
to change and answers the state it then finds, with a detail saying so when the request is still
pending.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import grpc

from gaelp.service import FailedPrecondition, InvalidArgument, NotFound, rpc
from gaelp.service.validation import excerpt, parse_json_object, require_identifier
from gaelp.v1 import orchestrator_pb2, orchestrator_pb2_grpc
from orchestrator.curriculum import CurriculumScheduler
from orchestrator.leases import LeaseLost
from orchestrator.ownership import LeaseKeeper
from orchestrator.run_document import RunDocument
from orchestrator.runs import RunManager

MAX_CONFIG_CHARS = 65_536
START_KEYS = {"kind", "max_env_steps", "episodes"}
RUN_STATES = {"", "running", "paused", "awaiting_approval", "completed", "failed"}
LIST_LIMIT_DEFAULT, LIST_LIMIT_MAX = 50, 1000
REQUEST_POLL_S = 0.2


class OrchestratorServicer(orchestrator_pb2_grpc.OrchestratorServicer):
    def __init__(self, runs: RunManager, keeper: LeaseKeeper) -> None:
        self.runs = runs
        self.keeper = keeper

    @rpc
    async def StartRun(
        self, request: orchestrator_pb2.StartRunRequest, context: grpc.aio.ServicerContext
    ) -> orchestrator_pb2.RunStatus:
        """config_json: {"kind": "train"|"smoke", "max_env_steps": N, "episodes": N (smoke)}."""
        if request.run_id:
            require_identifier("run_id", request.run_id, max_length=64)
        config = parse_start_config(request.config_json)
        kind = config.get("kind", "train")
        if not isinstance(kind, str) or kind not in {"train", "smoke"}:
            raise InvalidArgument("kind must be 'train' or 'smoke'")
        max_env_steps = _integer(config, "max_env_steps", 0, 0, 10**12)
        episodes = _integer(config, "episodes", self.runs.config.smoke_episodes, 1, 10**9)
        run = await self.runs.start(request.run_id, kind, max_env_steps, episodes)
        return run.status()

    @rpc
    async def PauseRun(
        self, request: orchestrator_pb2.RunIdRequest, context: grpc.aio.ServicerContext
    ) -> orchestrator_pb2.RunStatus:
        run_id = require_identifier("run_id", request.run_id)
        if self.keeper.drives(run_id):
            with contextlib.suppress(LeaseLost):  # lost meanwhile: ask the new holder
                return (await self.runs.pause(run_id)).status()
        return await self._request_elsewhere(run_id, "running", "paused", context)

    @rpc
    async def ResumeRun(
        self, request: orchestrator_pb2.RunIdRequest, context: grpc.aio.ServicerContext
    ) -> orchestrator_pb2.RunStatus:
        run_id = require_identifier("run_id", request.run_id)
        if self.keeper.drives(run_id):
            with contextlib.suppress(LeaseLost):  # lost meanwhile: ask the new holder
                return (await self.runs.resume(run_id)).status()
        return await self._request_elsewhere(run_id, "paused", "running", context)

    @rpc
    async def GetRunStatus(
        self, request: orchestrator_pb2.RunIdRequest, context: grpc.aio.ServicerContext
    ) -> orchestrator_pb2.RunStatus:
        run_id = require_identifier("run_id", request.run_id)
        if self.keeper.drives(run_id):
            return self.runs.runs[run_id].status()
        return self._stored_status(await self._load(run_id))

    @rpc
    async def ListRuns(
        self, request: orchestrator_pb2.ListRunsRequest, context: grpc.aio.ServicerContext
    ) -> orchestrator_pb2.ListRunsResponse:
        """Newest first; runs this replica drives report live figures, others their stored state."""
        if request.state not in RUN_STATES:
            raise InvalidArgument(f"state must be one of {sorted(RUN_STATES - {''})} or empty")
        if not 0 <= request.limit <= LIST_LIMIT_MAX:
            raise InvalidArgument(f"limit must be in [0, {LIST_LIMIT_MAX}]")
        documents = await self.runs.store.recent(request.state, request.limit or LIST_LIMIT_DEFAULT)
        statuses = []
        for raw in documents:
            run_id = str(raw.get("run_id"))
            if self.keeper.drives(run_id):
                statuses.append(self.runs.runs[run_id].status())
            else:
                statuses.append(self._stored_status(raw))
        return orchestrator_pb2.ListRunsResponse(runs=statuses)

    async def _load(self, run_id: str) -> dict[str, Any]:
        raw = await self.runs.store.load(run_id)
        if raw is None:
            raise NotFound(f"no run {run_id}")
        return raw

    def _stored_status(self, raw: dict[str, Any]) -> orchestrator_pb2.RunStatus:
        document = RunDocument.model_validate(raw)
        curriculum = self.runs.config.curriculum
        scheduler = CurriculumScheduler(curriculum, self.runs.level_names, document.curriculum)
        return document.status(scheduler.task.name, scheduler.window_mean, curriculum.max_env_steps_per_task)

    async def _request_elsewhere(self, run_id: str, required: str, wanted: str,
                                 context: grpc.aio.ServicerContext) -> orchestrator_pb2.RunStatus:
        """Pause or resume a run another replica drives (or that awaits its take-over)."""
        raw = await self._load(run_id)
        if raw.get("state") != required:
            raise FailedPrecondition(f"run {run_id} is {raw.get('state')}, not {required}")
        await self.runs.store.request_state(run_id, wanted)
        remaining = context.time_remaining()
        wait_s = self.keeper.settings.duration_s
        if remaining is not None:
            wait_s = min(wait_s, remaining - 1.0)
        deadline = time.monotonic() + wait_s
        while raw.get("state") != wanted and time.monotonic() < deadline:
            await asyncio.sleep(REQUEST_POLL_S)
            raw = await self._load(run_id)
        status = self._stored_status(raw)
        if raw.get("state") != wanted:
            status.detail = (f"{wanted} requested; the replica driving the run applies it at its next "
                             "lease renewal")
        return status


def _integer(config: dict[str, Any], key: str, default: int, low: int, high: int) -> int:
    value = config.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidArgument(f"{key} must be an integer in [{low}, {high}]")
    return value


def parse_start_config(text: str) -> dict[str, Any]:
    """StartRun's config_json as a dict of known keys; InvalidArgument otherwise."""
    config = parse_json_object("config_json", text, max_bytes=MAX_CONFIG_CHARS)
    unknown = set(config) - START_KEYS
    if unknown:
        names = ", ".join(excerpt(key) for key in sorted(unknown)[:5])
        known = ", ".join(sorted(START_KEYS))
        raise InvalidArgument(f"config_json has unknown keys: {names} (known: {known})")
    return config
