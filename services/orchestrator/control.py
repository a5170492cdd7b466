"""The gRPC control API: StartRun, PauseRun, ResumeRun, GetRunStatus, ListRuns."""

from __future__ import annotations

from typing import Any

import grpc

from gaelp.service import InvalidArgument, rpc
from gaelp.service.validation import excerpt, parse_json_object, require_identifier
from gaelp.v1 import orchestrator_pb2, orchestrator_pb2_grpc
from orchestrator.run_document import RunDocument
from orchestrator.runs import RunManager

MAX_CONFIG_CHARS = 65_536
START_KEYS = {"kind", "max_env_steps", "episodes"}
RUN_STATES = {"", "running", "paused", "completed", "failed"}
LIST_LIMIT_DEFAULT, LIST_LIMIT_MAX = 50, 1000


class OrchestratorServicer(orchestrator_pb2_grpc.OrchestratorServicer):
    def __init__(self, runs: RunManager) -> None:
        self.runs = runs

    @rpc
    async def StartRun(
        self, request: orchestrator_pb2.StartRunRequest, context: grpc.aio.ServicerContext
    ) -> orchestrator_pb2.RunStatus:
        """config_json: {"kind": "train"|"smoke", "max_env_steps": N, "episodes": N (smoke)}."""
        if request.run_id:
            require_identifier("run_id", request.run_id, max_length=64)
        config = _parse_config(request.config_json)
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
        return (await self.runs.pause(require_identifier("run_id", request.run_id))).status()

    @rpc
    async def ResumeRun(
        self, request: orchestrator_pb2.RunIdRequest, context: grpc.aio.ServicerContext
    ) -> orchestrator_pb2.RunStatus:
        return (await self.runs.resume(require_identifier("run_id", request.run_id))).status()

    @rpc
    async def GetRunStatus(
        self, request: orchestrator_pb2.RunIdRequest, context: grpc.aio.ServicerContext
    ) -> orchestrator_pb2.RunStatus:
        return self.runs.get(require_identifier("run_id", request.run_id)).status()

    @rpc
    async def ListRuns(
        self, request: orchestrator_pb2.ListRunsRequest, context: grpc.aio.ServicerContext
    ) -> orchestrator_pb2.ListRunsResponse:
        """Newest first; runs this process drives report live figures, others their stored state."""
        if request.state not in RUN_STATES:
            raise InvalidArgument(f"state must be one of {sorted(RUN_STATES - {''})} or empty")
        if not 0 <= request.limit <= LIST_LIMIT_MAX:
            raise InvalidArgument(f"limit must be in [0, {LIST_LIMIT_MAX}]")
        documents = await self.runs.store.recent(request.state, request.limit or LIST_LIMIT_DEFAULT)
        statuses = []
        for raw in documents:
            live = self.runs.runs.get(str(raw.get("run_id")))
            if live is not None:
                statuses.append(live.status())
            else:
                statuses.append(RunDocument.model_validate(raw).status("", 0.0, 0))
        return orchestrator_pb2.ListRunsResponse(runs=statuses)


def _integer(config: dict[str, Any], key: str, default: int, low: int, high: int) -> int:
    value = config.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidArgument(f"{key} must be an integer in [{low}, {high}]")
    return value


def _parse_config(text: str) -> dict[str, Any]:
    config = parse_json_object("config_json", text, max_bytes=MAX_CONFIG_CHARS)
    unknown = set(config) - START_KEYS
    if unknown:
        names = ", ".join(excerpt(key) for key in sorted(unknown)[:5])
        known = ", ".join(sorted(START_KEYS))
        raise InvalidArgument(f"config_json has unknown keys: {names} (known: {known})")
    return config
